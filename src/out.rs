//! Standard output and standard error that never panic.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (Rust ignores SIGPIPE, so the
//! write fails with EPIPE), which would abort `certs renew` half-way, possibly with a static pod
//! manifest moved out. Every message of this binary goes through [`outln!`] or [`errln!`]
//! instead: a line that cannot be written is dropped and the work goes on; the exit status
//! reports the operation. `main.rs` denies `print!`/`println!`/`eprint!`/`eprintln!` so that no
//! print site can bypass this.
//!
//! Output that *is* the product of a command (a report, a kubeconfig, a list) is written with
//! [`data`], which returns the error: such a command did not do its job if its output was lost.
//! (A closed stdout or stderr needs nothing here: the Rust runtime reopens fds 0-2 on
//! /dev/null at start.)

use std::fmt;
use std::io::Write;

/// Writes one line to stdout, ignoring any error.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(&mut ::std::io::stdout().lock(), ::std::format_args!($($arg)*))
    };
}

/// Writes one line to stderr, ignoring any error.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::line(&mut ::std::io::stderr().lock(), ::std::format_args!($($arg)*))
    };
}

pub(crate) use {errln, outln};

/// `args` and a newline, then a flush; a failure is dropped on purpose (see the module doc).
pub fn line(w: &mut impl Write, args: fmt::Arguments<'_>) {
    let _ = w
        .write_fmt(args)
        .and_then(|()| w.write_all(b"\n"))
        .and_then(|()| w.flush());
}

/// Writes a command's product to stdout; an error says so (the caller's exit status is 1).
pub fn data(bytes: &[u8]) -> anyhow::Result<()> {
    let mut w = std::io::stdout().lock();
    w.write_all(bytes)
        .and_then(|()| w.flush())
        .map_err(|e| anyhow::anyhow!("cannot write the output to standard output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails like a pipe whose reader has gone.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_failed_line_is_dropped() {
        line(&mut Broken, format_args!("x {}", 1));
        let mut v = Vec::new();
        line(&mut v, format_args!("x {}", 1));
        assert_eq!(v, b"x 1\n");
    }
}
