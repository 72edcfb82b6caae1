//! Replacing existing files all-or-nothing, surviving SIGKILL at any point.
//!
//! 1. Every new file is written to a temp file beside its target and fsynced.
//! 2. A journal naming each (temp, target) pair is written atomically into the cert dir.
//! 3. Each temp is renamed over its target; directories are fsynced.
//! 4. The journal is removed.
//!
//! A run killed before step 2 leaves only temp files: [`recover`] deletes them (wholly old).
//! A run killed after step 2 leaves the journal: [`recover`] finishes the renames (wholly new).
//! Every step that touches the disk goes through [`op`], so a test can kill the process after
//! any chosen number of operations.

use std::collections::BTreeSet;
use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const JOURNAL: &str = ".kubepki-journal";
const TEMP_PREFIX: &str = ".kubepki-";

static OPS: AtomicU64 = AtomicU64::new(0);

/// Counts one disk operation. With `KUBEPKI_TEST_KILL_AFTER_OPS=N` the process SIGKILLs
/// itself right after operation N: the crash-safety test hook.
pub fn op() {
    let n = OPS.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(limit) = std::env::var("KUBEPKI_TEST_KILL_AFTER_OPS")
        && limit.parse::<u64>().ok() == Some(n)
    {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Disk operations counted so far in this process.
pub fn ops_done() -> u64 {
    OPS.load(Ordering::SeqCst)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Exclusive lock on a directory (flock on the directory itself: no lock file appears).
pub struct DirLock {
    _lock: nix::fcntl::Flock<File>,
}

impl DirLock {
    /// Takes the lock, failing at once if another kubepki holds it, or waiting when `wait`.
    pub fn acquire(dir: &Path, wait: bool) -> Result<Self> {
        let f = File::open(dir).map_err(|e| Error::io(dir, e))?;
        let arg = if wait {
            nix::fcntl::FlockArg::LockExclusive
        } else {
            nix::fcntl::FlockArg::LockExclusiveNonblock
        };
        match nix::fcntl::Flock::lock(f, arg) {
            Ok(l) => Ok(DirLock { _lock: l }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Locked {
                path: dir.to_path_buf(),
            }),
            Err((_, e)) => Err(Error::io(dir, std::io::Error::from(e))),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: PathBuf,
    staged: PathBuf,
    sha256: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Journal {
    kubepki_journal: u32,
    operation: String,
    entries: Vec<Entry>,
}

/// A set of files to replace (or create) together.
pub struct Replacement {
    journal_dir: PathBuf,
    operation: String,
    entries: Vec<Entry>,
    committed: bool,
}

impl Replacement {
    /// `journal_dir` holds the journal: the cert dir, which every kubepki run locks first.
    pub fn new(journal_dir: &Path, operation: &str) -> Self {
        Replacement {
            journal_dir: journal_dir.to_path_buf(),
            operation: operation.to_string(),
            entries: Vec::new(),
            committed: false,
        }
    }

    pub fn targets(&self) -> impl Iterator<Item = &Path> {
        self.entries.iter().map(|e| e.target.as_path())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes `contents` to a temp file beside `target`, with `mode`, fsynced.
    pub fn stage(&mut self, target: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let dir = parent(target);
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".new")
            .tempfile_in(dir)
            .map_err(|e| Error::io(target, e))?;
        op();
        let (mut f, path) = tmp.keep().map_err(|e| Error::io(target, e.error))?;
        let staged = path.clone();
        let res = (|| -> std::io::Result<()> {
            f.set_permissions(Permissions::from_mode(mode))?;
            f.write_all(contents)?;
            op();
            f.sync_all()?;
            op();
            Ok(())
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&staged);
            return Err(Error::io(target, e));
        }
        self.entries.push(Entry {
            target: target.to_path_buf(),
            staged,
            sha256: crate::txn::sha256_hex(contents),
        });
        Ok(())
    }

    /// Journal, swap, forget. On an error before the journal exists, staged files are removed
    /// and nothing changed; after, the swap is finished by [`recover`].
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        if self.entries.is_empty() {
            self.committed = true;
            return Ok(Vec::new());
        }
        let journal = Journal {
            kubepki_journal: 1,
            operation: self.operation.clone(),
            entries: self.entries.clone(),
        };
        let text = serde_json::to_vec_pretty(&journal).expect("journal serializes");
        write_atomic(&self.journal_dir.join(JOURNAL), &text, 0o600)?;
        self.committed = true;
        finish(&self.journal_dir, &journal)?;
        Ok(self.entries.iter().map(|e| e.target.clone()).collect())
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.committed {
            for e in &self.entries {
                let _ = fs::remove_file(&e.staged);
            }
        }
    }
}

fn finish(journal_dir: &Path, j: &Journal) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for e in &j.entries {
        if crate::layout::exists(&e.staged)? {
            fs::rename(&e.staged, &e.target).map_err(|err| Error::io(&e.target, err))?;
            op();
        } else {
            // Renamed before the interruption: the target must hold the new content.
            let now = fs::read(&e.target).map_err(|err| Error::io(&e.target, err))?;
            if sha256_hex(&now) != e.sha256 {
                return Err(Error::Journal {
                    path: journal_dir.join(JOURNAL),
                    reason: format!(
                        "{} changed outside kubepki during an interrupted {}; restore it from the backup",
                        e.target.display(),
                        j.operation
                    ),
                });
            }
        }
        dirs.insert(parent(&e.target).to_path_buf());
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    let jp = journal_dir.join(JOURNAL);
    fs::remove_file(&jp).map_err(|e| Error::io(&jp, e))?;
    op();
    sync_dir(journal_dir)
}

/// What [`recover`] found and did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    Clean,
    /// An interrupted operation was completed: these files now hold its new content.
    RolledForward {
        operation: String,
        files: Vec<PathBuf>,
    },
    /// Leftover temp files of an operation interrupted before its journal were removed.
    RolledBack {
        removed: Vec<PathBuf>,
    },
}

/// Brings `dirs` back to a consistent state after an interrupted run. `journal_dir` must be
/// locked by the caller.
pub fn recover(journal_dir: &Path, dirs: &[&Path]) -> Result<Recovery> {
    let jp = journal_dir.join(JOURNAL);
    if crate::layout::exists(&jp)? {
        let bytes = fs::read(&jp).map_err(|e| Error::io(&jp, e))?;
        let j: Journal = serde_json::from_slice(&bytes).map_err(|e| Error::Journal {
            path: jp.clone(),
            reason: format!("unreadable ({e}); inspect it and the backup before removing it"),
        })?;
        finish(journal_dir, &j)?;
        return Ok(Recovery::RolledForward {
            operation: j.operation,
            files: j.entries.into_iter().map(|e| e.target).collect(),
        });
    }
    let mut removed = Vec::new();
    let mut seen = BTreeSet::new();
    for d in dirs {
        if !seen.insert(d.to_path_buf()) || !crate::layout::exists(d)? {
            continue;
        }
        for entry in fs::read_dir(d).map_err(|e| Error::io(d, e))? {
            let entry = entry.map_err(|e| Error::io(d, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX)
                && name != JOURNAL
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                op();
                removed.push(entry.path());
            }
        }
    }
    if removed.is_empty() {
        Ok(Recovery::Clean)
    } else {
        for d in dirs {
            if crate::layout::exists(d)? {
                sync_dir(d)?;
            }
        }
        Ok(Recovery::RolledBack { removed })
    }
}

/// Writes a file via temp + fsync + rename + directory fsync (replacing it if present).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    op();
    let f = tmp.as_file_mut();
    f.set_permissions(Permissions::from_mode(mode))
        .and_then(|_| f.write_all(contents))
        .map_err(|e| Error::io(path, e))?;
    op();
    f.sync_all().map_err(|e| Error::io(path, e))?;
    op();
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    op();
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io(dir, e))?;
    nix::unistd::fsync(f.as_fd()).map_err(|e| Error::io(dir, std::io::Error::from(e)))?;
    op();
    Ok(())
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_leaves_no_trace() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::write(&a, "old").unwrap();
        let mut r = Replacement::new(d.path(), "test");
        r.stage(&a, b"new", 0o600).unwrap();
        r.stage(&d.path().join("b"), b"B", 0o644).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"old");
        r.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: BTreeSet<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(recover(d.path(), &[d.path()]).unwrap(), Recovery::Clean);
    }

    #[test]
    fn abandoned_replacement_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::write(&a, "old").unwrap();
        let mut r = Replacement::new(d.path(), "test");
        r.stage(&a, b"new", 0o600).unwrap();
        drop(r);
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn recovery_rolls_forward_from_a_journal() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, "oldA").unwrap();
        fs::write(&b, "oldB").unwrap();
        // Simulate a crash after the journal and the first rename.
        let sa = d.path().join(".kubepki-x.new");
        let sb = d.path().join(".kubepki-y.new");
        fs::write(&sb, "newB").unwrap();
        fs::write(&a, "newA").unwrap();
        let j = Journal {
            kubepki_journal: 1,
            operation: "renew".into(),
            entries: vec![
                Entry {
                    target: a.clone(),
                    staged: sa,
                    sha256: sha256_hex(b"newA"),
                },
                Entry {
                    target: b.clone(),
                    staged: sb,
                    sha256: sha256_hex(b"newB"),
                },
            ],
        };
        fs::write(d.path().join(JOURNAL), serde_json::to_vec(&j).unwrap()).unwrap();
        let r = recover(d.path(), &[d.path()]).unwrap();
        assert!(matches!(r, Recovery::RolledForward { .. }));
        assert_eq!(fs::read(&a).unwrap(), b"newA");
        assert_eq!(fs::read(&b).unwrap(), b"newB");
        assert!(!d.path().join(JOURNAL).exists());
    }

    #[test]
    fn recovery_removes_orphan_temps() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".kubepki-abc.new"), "x").unwrap();
        fs::write(d.path().join("keep"), "x").unwrap();
        let r = recover(d.path(), &[d.path()]).unwrap();
        assert!(matches!(r, Recovery::RolledBack { ref removed } if removed.len() == 1));
        assert!(d.path().join("keep").exists());
    }

    #[test]
    fn second_lock_fails_fast() {
        let d = tempfile::tempdir().unwrap();
        let _l = DirLock::acquire(d.path(), false).unwrap();
        assert!(matches!(
            DirLock::acquire(d.path(), false),
            Err(Error::Locked { .. })
        ));
    }
}
