//! `kubepki completion` and `kubepki man`: generated from the clap definitions, so they never
//! drift from the real flags.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

pub fn completion(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kubepki", &mut buf);
    write_stdout(&buf)
}

pub fn man(dir: Option<&Path>) -> Result<ExitCode> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        return write_stdout(&buf);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut written = 0;
    page(cmd, "kubepki", "kubepki", dir, &mut written)?;
    crate::out::outln!("wrote {written} man pages to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `cmd`'s page as `<name>.1`, then its subcommands' as `<name>-<sub>.1`. `bin` is the
/// command line that runs it ("kubepki certs check-expiration").
fn page(cmd: clap::Command, name: &str, bin: &str, dir: &Path, written: &mut usize) -> Result<()> {
    // The version for the page footer only: subcommands have no --version flag.
    let cmd = cmd
        .display_name(name.to_string())
        .bin_name(bin.to_string())
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(bin != "kubepki");
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(&path, buf).with_context(|| format!("{}: cannot write", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(
            sub.clone(),
            &format!("{name}-{}", sub.get_name()),
            &format!("{bin} {}", sub.get_name()),
            dir,
            written,
        )?;
    }
    Ok(())
}

fn write_stdout(buf: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}
