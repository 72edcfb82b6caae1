//! Catching SIGINT, SIGTERM and SIGHUP while a static pod manifest is held out of the
//! manifests directory (the library's `storage::held`): the holder puts the manifest back, then
//! exits with 128+n. Outside a hold the signals act as they always did.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Result;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// True while no manifest is held: a signal then acts as it would without kubepki's handler.
static UNGUARDED: AtomicBool = AtomicBool::new(true);
/// The last termination signal caught while a manifest was held (0: none).
static CAUGHT: AtomicUsize = AtomicUsize::new(0);

/// Catching SIGINT, SIGTERM and SIGHUP while a manifest is held. Armed by [`Guard::arm`]; a
/// signal caught meanwhile is reported by [`Guard::caught`] and by [`Guard::disarm`].
pub struct Guard(());

impl Guard {
    pub fn arm() -> Result<Guard> {
        install()?;
        CAUGHT.store(0, Ordering::SeqCst);
        UNGUARDED.store(false, Ordering::SeqCst);
        Ok(Guard(()))
    }

    /// The signal caught so far, if any.
    pub fn caught(&self) -> Option<i32> {
        caught()
    }

    /// Signals act normally again; returns the one caught while armed, if any (one arriving
    /// from now on terminates the process as usual).
    pub fn disarm(self) -> Option<i32> {
        drop(self);
        caught()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        UNGUARDED.store(true, Ordering::SeqCst);
    }
}

fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        n => i32::try_from(n).ok(),
    }
}

/// The signal's name, e.g. SIGTERM.
pub fn signal_name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig)
        .map(str::to_string)
        .unwrap_or_else(|| format!("signal {sig}"))
}

/// Installs the handlers once. A signal the process inherited as ignored (nohup's SIGHUP, a
/// background job's SIGINT) stays ignored: the handler would otherwise turn it deadly.
fn install() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let ignored = ignored_signals();
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                if ignored & (1u64 << (sig - 1)) != 0 {
                    continue;
                }
                // Order matters: the default action (when unguarded) runs first.
                signal_hook::flag::register_conditional_default(sig, &UNGUARDED)
                    .and_then(|_| signal_hook::flag::register_usize(sig, &CAUGHT, sig as usize))
                    .map_err(|e| format!("cannot handle {}: {e}", signal_name(sig)))?;
            }
            Ok(())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The process's ignored signals (`SigIgn` of /proc/self/status), as a bit mask; none if it
/// cannot be read.
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .unwrap_or(0)
}
