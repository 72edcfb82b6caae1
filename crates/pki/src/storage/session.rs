//! A writing session: the only way to change a PKI.
//!
//! Opening one takes the cert dir lock (waiting for it, or failing at once), then brings an
//! interrupted run to an end (finishing a committed transaction, undoing a prepared one),
//! removes half-made backups and puts back static pod manifests an interrupted restart held out,
//! all before the caller reads anything. Every operation that
//! writes takes `&Session` and writes through [`Session::transaction`], so none can skip the
//! lock or the recovery. The session also owns where backups go and what they are called.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::format_description;

use crate::error::{Error, Result};
use crate::fsio;
use crate::model::layout::Layout;
use crate::storage::held;
use crate::storage::txn::{self, DirLock, Recovery, Transaction};

/// Backups go here, below the kubeconfig dir, unless the user names another directory.
pub const BACKUPS_DIR: &str = "kubepki-backups";

pub struct Session {
    layout: Layout,
    _lock: DirLock,
    recovery: Recovery,
    removed_backups: Vec<PathBuf>,
    put_back: Vec<PathBuf>,
}

impl Session {
    /// Opens a session on the PKI of `layout`, whose cert dir must exist.
    pub fn open(layout: &Layout, wait: bool) -> Result<Session> {
        let layout = layout.resolved()?;
        if !crate::fsio::exists(&layout.cert_dir)? {
            return Err(Error::io(
                &layout.cert_dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such directory; is --cert-dir right?",
                ),
            ));
        }
        Self::lock_and_recover(layout, wait)
    }

    /// As [`Session::open`], creating the cert dir (and its parents, mode 0755) first if it
    /// does not exist: for `init`.
    pub fn create(layout: &Layout, wait: bool) -> Result<Session> {
        let given = layout.absolute()?;
        if !crate::fsio::exists(&given.cert_dir)? {
            fsio::create_dirs(&given.cert_dir, fsio::DIR_MODE)?;
        }
        Self::lock_and_recover(given.resolved()?, wait)
    }

    fn lock_and_recover(layout: Layout, wait: bool) -> Result<Session> {
        let lock = DirLock::acquire(&layout.cert_dir, wait)?;
        let recovery = txn::recover(&layout)?;
        let removed_backups =
            crate::storage::backup::remove_incomplete(&layout.kubeconfig_dir.join(BACKUPS_DIR))?;
        let put_back = held::recover_held(&held::hold_dir(&layout.kubeconfig_dir))?;
        Ok(Session {
            layout,
            _lock: lock,
            recovery,
            removed_backups,
            put_back,
        })
    }

    /// The PKI's directories, absolute and resolved ([`Layout::resolved`]).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What opening the session found and did about an interrupted run.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Half-made backups (of kubepki versions before transactions named them) removed.
    pub fn removed_backups(&self) -> &[PathBuf] {
        &self.removed_backups
    }

    /// Static pod manifests an interrupted restart had held out, put back where they were.
    pub fn put_back_manifests(&self) -> &[PathBuf] {
        &self.put_back
    }

    /// Starts a transaction for `operation` ("init", "renew", ...).
    pub fn transaction(&self, operation: &str) -> Result<Transaction<'_>> {
        Transaction::begin(&self.layout, operation)
    }

    /// A new backup directory: `<kubeconfig-dir>/kubepki-backups/<UTC time>`, or `-2`, `-3`,
    /// ... if that exists (two runs in one second).
    pub fn new_backup_dir(&self, now: OffsetDateTime) -> PathBuf {
        fresh(
            self.layout
                .kubeconfig_dir
                .join(BACKUPS_DIR)
                .join(stamp(now)),
        )
    }

    /// Where a restore keeps what it replaces: beside the backup it restores.
    pub fn before_restore_dir(&self, backup: &Path, now: OffsetDateTime) -> PathBuf {
        // `.` or `bk/` would otherwise put it inside the backup being restored.
        let backup = &std::path::absolute(backup).unwrap_or_else(|_| backup.to_path_buf());
        let name = backup
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "backup".into());
        fresh(fsio::parent(backup).join(format!("{name}.before-restore-{}", stamp(now))))
    }
}

/// Whether an interrupted run left a journal (for commands that only read).
pub fn interrupted(layout: &Layout) -> bool {
    crate::fsio::exists(&layout.cert_dir.join(txn::JOURNAL)).unwrap_or(true)
}

/// A UTC time as a compact, sortable name: 20261201T010203Z.
fn stamp(now: OffsetDateTime) -> String {
    now.to_offset(time::UtcOffset::UTC)
        .format(&format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// `base`, else `base-2`, `base-3`, ...: the first that does not exist.
fn fresh(base: PathBuf) -> PathBuf {
    if !base.exists() {
        return base;
    }
    (2u32..)
        .map(|i| {
            let mut name = base.clone().into_os_string();
            name.push(format!("-{i}"));
            PathBuf::from(name)
        })
        .find(|p| !p.exists())
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_session_at_a_time_and_absolute_paths() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("pki"), d.path());
        assert!(Session::open(&layout, false).is_err(), "no cert dir yet");
        let s = Session::create(&layout, false).unwrap();
        assert!(s.layout().cert_dir.is_absolute());
        assert!(matches!(
            Session::open(&layout, false),
            Err(Error::Locked { .. })
        ));
        drop(s);
        let s = Session::open(&layout, false).unwrap();
        let now = time::macros::datetime!(2026-12-01 01:02:03 UTC);
        let b = s.new_backup_dir(now);
        assert_eq!(b, d.path().join("kubepki-backups/20261201T010203Z"));
        std::fs::create_dir_all(&b).unwrap();
        assert_eq!(
            s.new_backup_dir(now),
            d.path().join("kubepki-backups/20261201T010203Z-2")
        );
        // A restore from inside the backup (`.`) keeps the old files beside it, not in it.
        let cwd = std::env::current_dir().unwrap();
        let before = s.before_restore_dir(Path::new("."), now);
        assert_eq!(before.parent(), cwd.parent(), "{}", before.display());
    }
}
