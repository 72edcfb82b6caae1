//! Writing a set of files all-or-nothing, surviving SIGKILL at any point.
//!
//! A [`Transaction`] (opened from a [`crate::storage::session::Session`], which holds the lock):
//! 1. Before it creates anything, a *prepared* journal names the transaction, the directories
//!    it stages in and the backup it makes. Its temp files carry the transaction's id.
//! 2. Every new file is written to a temp file beside its target and fsynced; the backup, if
//!    any, is made complete; the staging directories are fsynced.
//! 3. The journal is rewritten as *committed*, naming each (temp, target) pair by absolute
//!    path with the new content's SHA-256.
//! 4. Each temp is renamed onto its target (new files never replace anything); the
//!    directories are fsynced; the journal is removed.
//!
//! [`recover`] brings an interrupted run to an end: a committed journal is finished (wholly
//! new), a prepared one is undone by removing exactly the temp files and backup it names
//! (wholly old). Temp files no journal accounts for are reported and kept: they could hold
//! the only copy of a key. Every step that touches the disk goes through [`crate::fsio::op`], so a test
//! build can kill the process after any chosen number of operations.

use std::collections::BTreeSet;
use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Foreign, JournalProblem, Result, SlotProblem};
use crate::fsio::{self, TEMP_PREFIX, json_path, op, parent, sha256_hex, sync_dir};
use crate::model::layout::Layout;

pub const JOURNAL: &str = ".kubepki-journal";
/// Temp files of the journal itself: only paths and checksums, never key material.
const JOURNAL_TEMP_PREFIX: &str = ".kubepki-journal.";

/// A random id for a transaction: its temp files and backup staging carry it.
fn new_id() -> String {
    let mut b = [0u8; 8];
    // The system RNG does not fail on Linux; a fixed id would still be unique per lock holder.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
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
    #[serde(with = "json_path")]
    target: PathBuf,
    #[serde(with = "json_path")]
    staged: PathBuf,
    sha256: String,
    /// A new file: the rename must not replace anything.
    #[serde(default)]
    create: bool,
    /// The target is removed at commit (nothing is staged; `staged` is the name a staged file
    /// would have had, so the journal keeps one shape).
    #[serde(default)]
    remove: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum State {
    Prepared,
    /// Journals of format 1 had no state: they were written at commit.
    #[default]
    Committed,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct BackupRecord {
    #[serde(with = "json_path")]
    dir: PathBuf,
    #[serde(with = "json_path")]
    staging: PathBuf,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Journal {
    kubepki_journal: u32,
    #[serde(default)]
    id: String,
    operation: String,
    /// The PKI the transaction wrote (absent in format 1): a journal found in another PKI
    /// (copied or moved with it) is not acted on.
    #[serde(default, with = "json_path::opt")]
    cert_dir: Option<PathBuf>,
    #[serde(default, with = "json_path::opt")]
    kubeconfig_dir: Option<PathBuf>,
    #[serde(default)]
    state: State,
    /// Where temp files of this transaction may be.
    #[serde(default, with = "json_path::vec")]
    dirs: Vec<PathBuf>,
    #[serde(default)]
    backup: Option<BackupRecord>,
    entries: Vec<Entry>,
}

const FORMAT: u32 = 2;

/// A set of files to replace or create together. Dropped uncommitted, it removes what it
/// staged and the backup it made: nothing changed.
pub struct Transaction<'s> {
    /// Borrows the session that opened it (`Session::transaction`): the lock is held for as
    /// long as it writes.
    _session: std::marker::PhantomData<&'s ()>,
    layout: Layout,
    journal_dir: PathBuf,
    /// Directories this transaction created, outermost first (removed again on rollback).
    created_dirs: Vec<PathBuf>,
    journal: Journal,
    /// Whether a prepared journal is on disk.
    prepared_on_disk: bool,
    committed: bool,
    next: u32,
}

impl Transaction<'_> {
    /// A transaction on the PKI of `layout`, whose (locked) cert dir holds the journal.
    /// Crate-private: a Session opens transactions, so that nobody writes without the lock
    /// and recovery.
    pub(crate) fn begin(layout: &Layout, operation: &str) -> Result<Self> {
        let layout = layout.absolute()?;
        Ok(Transaction {
            _session: std::marker::PhantomData,
            journal_dir: layout.cert_dir.clone(),
            created_dirs: Vec::new(),
            journal: Journal {
                kubepki_journal: FORMAT,
                id: new_id(),
                operation: operation.to_string(),
                cert_dir: Some(layout.cert_dir.clone()),
                kubeconfig_dir: Some(layout.kubeconfig_dir.clone()),
                state: State::Prepared,
                dirs: Vec::new(),
                backup: None,
                entries: Vec::new(),
            },
            prepared_on_disk: false,
            committed: false,
            next: 0,
            layout,
        })
    }

    pub fn id(&self) -> &str {
        &self.journal.id
    }

    pub fn is_empty(&self) -> bool {
        self.journal.entries.is_empty()
    }

    /// Records `dir` as a place of temp files before the first one is made there.
    fn note_dir(&mut self, dir: &Path) -> Result<()> {
        if !self.journal.dirs.iter().any(|d| d == dir) {
            self.journal.dirs.push(dir.to_path_buf());
            self.write_prepared()?;
        }
        Ok(())
    }

    fn write_prepared(&mut self) -> Result<()> {
        write_journal(&self.journal_dir, &self.journal)?;
        self.prepared_on_disk = true;
        Ok(())
    }

    /// Stages `contents` for `target`, which must not exist (a new file: it is placed without
    /// replacing anything, even a file that appears meanwhile).
    pub fn create(&mut self, target: &Path, contents: &[u8], mode: u32) -> Result<()> {
        if crate::fsio::exists(target)? {
            return Err(Error::Exists {
                path: target.to_path_buf(),
            });
        }
        self.stage(target, contents, mode, true)
    }

    /// Stages `contents` to replace `target` (or to create it). Only a file kubepki manages
    /// in this PKI is ever replaced, and only a regular file: renaming over a symbolic link
    /// would replace the link and leave the file it points to stale.
    pub fn replace(&mut self, target: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let abs = absolute(target)?;
        if !self.layout.manages(&abs) {
            return Err(Error::slot(
                abs,
                SlotProblem::NotManaged {
                    cert_dir: self.layout.cert_dir.clone(),
                    kubeconfig_dir: self.layout.kubeconfig_dir.clone(),
                },
            ));
        }
        if fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::slot(abs, SlotProblem::Symlink));
        }
        self.stage(&abs, contents, mode, false)
    }

    /// Removes `target` at commit, after backing it up like a replaced file. Only a file a CA
    /// rotation creates ([`Layout::removable`]), only a regular one, and only with the content
    /// it has now (recovery removes it only if it still has).
    pub fn remove(&mut self, target: &Path) -> Result<()> {
        let abs = absolute(target)?;
        if !self.layout.removable(&abs) {
            return Err(Error::slot(
                abs,
                SlotProblem::NotManaged {
                    cert_dir: self.layout.cert_dir.clone(),
                    kubeconfig_dir: self.layout.kubeconfig_dir.clone(),
                },
            ));
        }
        if fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::slot(abs, SlotProblem::Symlink));
        }
        if self.journal.entries.iter().any(|e| e.target == abs) {
            return Err(Error::Exists { path: abs });
        }
        self.next += 1;
        let staged = parent(&abs).join(format!(
            "{TEMP_PREFIX}{}-{}.new",
            self.journal.id, self.next
        ));
        let sha256 = sha256_hex(&fsio::read(&abs)?);
        self.journal.entries.push(Entry {
            target: abs,
            staged,
            sha256,
            create: false,
            remove: true,
        });
        Ok(())
    }

    fn stage(&mut self, target: &Path, contents: &[u8], mode: u32, create: bool) -> Result<()> {
        let target = absolute(target)?;
        if self.journal.entries.iter().any(|e| e.target == target) {
            return Err(Error::Exists { path: target });
        }
        let dir = parent(&target).to_path_buf();
        if !crate::fsio::exists(&dir)? {
            let made = fsio::create_dirs(&dir, fsio::DIR_MODE)?;
            self.created_dirs.extend(made);
        }
        // The journal lives in the cert dir; if it cannot be written, say which file could not.
        self.note_dir(&dir).map_err(|e| match e {
            Error::Io { path, source } => Error::io(
                &target,
                std::io::Error::new(
                    source.kind(),
                    format!("cannot be written ({}: {source})", path.display()),
                ),
            ),
            e => e,
        })?;
        self.next += 1;
        let staged = dir.join(format!(
            "{TEMP_PREFIX}{}-{}.new",
            self.journal.id, self.next
        ));
        let res = (|| -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&staged)?;
            op();
            f.set_permissions(Permissions::from_mode(mode))?;
            f.write_all(contents)?;
            op();
            f.sync_all()?;
            op();
            Ok(())
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&staged);
            return Err(Error::io(&target, e));
        }
        self.journal.entries.push(Entry {
            target,
            staged,
            sha256: sha256_hex(contents),
            create,
            remove: false,
        });
        Ok(())
    }

    /// Copies `files` into the new backup directory `dir` before anything is replaced; a
    /// transaction dropped before its commit removes the backup again.
    pub fn back_up(
        &mut self,
        dir: &Path,
        files: &[PathBuf],
        dirs: &crate::model::layout::Layout,
        created: &str,
    ) -> Result<crate::storage::backup::Manifest> {
        let dir = absolute(dir)?;
        if crate::fsio::exists(&dir)? {
            return Err(Error::Exists { path: dir });
        }
        let staging = parent(&dir).join(format!(
            "{}{}",
            crate::storage::backup::STAGING_PREFIX,
            self.journal.id
        ));
        self.journal.backup = Some(BackupRecord {
            dir: dir.clone(),
            staging: staging.clone(),
        });
        self.write_prepared()?;
        crate::storage::backup::create(
            &dir,
            &staging,
            files,
            &self.journal.operation,
            &self.journal.id,
            dirs,
            created,
        )
    }

    /// Journal, swap, forget. Until the committed journal is in place a failure changes
    /// nothing (the drop removes what was staged); after, [`recover`] finishes the swap.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        if self.journal.entries.is_empty() {
            return Ok(Vec::new());
        }
        // A new file that appeared since it was staged (another tool, not kubepki: the lock
        // keeps kubepki runs apart) is never replaced: give up before anything moves.
        for e in self.journal.entries.iter().filter(|e| e.create) {
            if crate::fsio::exists(&e.target)? {
                return Err(Error::Exists {
                    path: e.target.clone(),
                });
            }
        }
        // The staged files' directory entries must be durable before a journal names them.
        for d in &self.journal.dirs {
            sync_dir(d)?;
        }
        self.journal.state = State::Committed;
        let mut renamed = false;
        let written = replace_journal(&self.journal_dir, &self.journal, || renamed = true);
        self.committed = renamed;
        if let Err(e) = written {
            if !renamed {
                self.journal.state = State::Prepared;
            }
            return Err(e);
        }
        finish(&self.journal_dir, &self.journal)?;
        Ok(self
            .journal
            .entries
            .iter()
            .map(|e| e.target.clone())
            .collect())
    }

    /// Removes what this uncommitted transaction made. The prepared journal goes last, and
    /// only once everything it names is gone: otherwise the next recovery finishes the job.
    fn roll_back(&mut self) -> Result<()> {
        for e in &self.journal.entries {
            remove_if_present(&e.staged)?;
        }
        if let Some(b) = &self.journal.backup {
            remove_backup(b, &self.journal.id)?;
        }
        if self.prepared_on_disk {
            remove_if_present(&self.journal_dir.join(JOURNAL))?;
            sync_dir(&self.journal_dir)?;
        }
        // Directories made for staging go too, if nothing else appeared in them.
        for d in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.roll_back();
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

fn remove_if_present(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Ok(()) => {
            op();
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

/// Removes a backup that belongs to transaction `id`: its staging directory, and the
/// finished directory if its manifest says it is this transaction's.
fn remove_backup(b: &BackupRecord, id: &str) -> Result<()> {
    let mut removed = false;
    if crate::fsio::exists(&b.staging)? {
        fs::remove_dir_all(&b.staging).map_err(|e| Error::io(&b.staging, e))?;
        op();
        removed = true;
    }
    if crate::storage::backup::made_by(&b.dir, id) {
        fs::remove_dir_all(&b.dir).map_err(|e| Error::io(&b.dir, e))?;
        op();
        removed = true;
    }
    if removed {
        sync_dir(parent(&b.dir))?;
    }
    Ok(())
}

fn journal_bytes(j: &Journal) -> Vec<u8> {
    // Paths are recorded byte-exact (json_path); nothing here can fail to serialize.
    serde_json::to_vec_pretty(j).unwrap_or_default()
}

fn write_journal(dir: &Path, j: &Journal) -> Result<()> {
    replace_journal(dir, j, || {})
}

/// Writes the journal atomically: temp file, fsync, rename over the old one, directory
/// fsync. `renamed` runs right after the rename, before the directory fsync: from then on
/// the new journal is what a recovery sees, whatever happens next.
fn replace_journal(dir: &Path, j: &Journal, renamed: impl FnOnce()) -> Result<()> {
    let path = dir.join(JOURNAL);
    let tmp = dir.join(format!("{JOURNAL_TEMP_PREFIX}{}.tmp", j.id));
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        op();
        f.write_all(&journal_bytes(j))?;
        op();
        f.sync_all()?;
        op();
        fs::rename(&tmp, &path)?;
        op();
        Ok(())
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&path, e));
    }
    renamed();
    sync_dir(dir)
}

/// Moves every staged file of a committed journal onto its target, then removes the journal.
fn finish(journal_dir: &Path, j: &Journal) -> Result<()> {
    let jp = journal_dir.join(JOURNAL);
    let mut dirs = BTreeSet::new();
    for e in &j.entries {
        if e.remove {
            // Absent: removed before the interruption. Present, it must be what was journaled.
            if crate::fsio::exists(&e.target)? {
                if sha256_hex(&fsio::read(&e.target)?) != e.sha256 {
                    return Err(Error::journal(
                        &jp,
                        JournalProblem::ChangedOutside {
                            target: e.target.clone(),
                            operation: j.operation.clone(),
                            backup: j.backup.as_ref().map(|b| b.dir.clone()),
                            journal: jp.clone(),
                        },
                    ));
                }
                remove_if_present(&e.target)?;
            }
        } else if crate::fsio::exists(&e.staged)? {
            let moved = if e.create {
                fsio::rename_noreplace(&e.staged, &e.target)
            } else {
                fs::rename(&e.staged, &e.target)
            };
            moved.map_err(|err| {
                if err.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::journal(
                        &jp,
                        JournalProblem::TargetAppeared {
                            target: e.target.clone(),
                            operation: j.operation.clone(),
                            cert_dir: journal_dir.to_path_buf(),
                        },
                    )
                } else {
                    Error::io(&e.target, err)
                }
            })?;
            op();
        } else {
            // Renamed before the interruption: the target must hold the new content.
            let now = fsio::read(&e.target)?;
            if sha256_hex(&now) != e.sha256 {
                return Err(Error::journal(
                    &jp,
                    JournalProblem::ChangedOutside {
                        target: e.target.clone(),
                        operation: j.operation.clone(),
                        backup: j.backup.as_ref().map(|b| b.dir.clone()),
                        journal: jp.clone(),
                    },
                ));
            }
        }
        dirs.insert(parent(&e.target).to_path_buf());
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    fs::remove_file(&jp).map_err(|e| Error::io(&jp, e))?;
    op();
    sync_dir(journal_dir)
}

/// What [`recover`] found and did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    /// An interrupted operation was completed: these files now hold its new content.
    RolledForward {
        operation: String,
        files: Vec<PathBuf>,
    },
    /// An operation interrupted before its commit was undone: these temp files (and its
    /// backup, if any) were removed.
    RolledBack {
        operation: String,
        removed: Vec<PathBuf>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Recovery {
    pub outcome: Outcome,
    /// Temp files in the PKI directories that no journal accounts for (left by an older
    /// kubepki, or by a run whose journal was removed by hand). Kept: one could hold the only
    /// copy of a key; the caller reports them.
    pub unaccounted: Vec<PathBuf>,
}

/// Brings the PKI of `layout` (absolute, its cert dir locked by the caller) back to a
/// consistent state after an interrupted run, and lists the temp files no journal accounts for.
pub fn recover(layout: &Layout) -> Result<Recovery> {
    let journal_dir = layout.cert_dir.as_path();
    let etcd = layout.cert_dir.join("etcd");
    let dirs = [
        layout.cert_dir.as_path(),
        etcd.as_path(),
        layout.kubeconfig_dir.as_path(),
    ];
    let jp = journal_dir.join(JOURNAL);
    let outcome = if crate::fsio::exists(&jp)? {
        let bytes = fsio::read(&jp)?;
        let j: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| Error::journal(&jp, JournalProblem::Unreadable(e)))?;
        check_shape(&jp, &j, layout)?;
        match j.state {
            State::Committed => {
                finish(journal_dir, &j)?;
                Outcome::RolledForward {
                    operation: j.operation,
                    files: j.entries.into_iter().map(|e| e.target).collect(),
                }
            }
            State::Prepared => Outcome::RolledBack {
                removed: undo_prepared(journal_dir, &j)?,
                operation: j.operation,
            },
        }
    } else {
        Outcome::Clean
    };
    // A journal's own temp file holds no key material.
    for e in read_dir(journal_dir)? {
        if name_of(&e).starts_with(JOURNAL_TEMP_PREFIX)
            && fs::symlink_metadata(&e).is_ok_and(|m| m.is_file())
        {
            remove_if_present(&e)?;
        }
    }
    let mut unaccounted = Vec::new();
    let mut seen = BTreeSet::new();
    for d in dirs {
        if !seen.insert(d.to_path_buf()) || !crate::fsio::exists(d)? {
            continue;
        }
        for p in read_dir(d)? {
            let name = name_of(&p);
            if name.starts_with(TEMP_PREFIX)
                && name != JOURNAL
                && !name.starts_with(crate::storage::backup::STAGING_PREFIX)
                && fs::symlink_metadata(&p).is_ok_and(|m| m.is_file())
            {
                unaccounted.push(p);
            }
        }
    }
    Ok(Recovery {
        outcome,
        unaccounted,
    })
}

fn read_dir(d: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(d).map_err(|e| Error::io(d, e))? {
        out.push(e.map_err(|e| Error::io(d, e))?.path());
    }
    out.sort();
    Ok(out)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Refuses a journal kubepki could not have written for this PKI before acting on it: it was
/// written for this very PKI (not one it was copied or moved from), every staged file is a
/// kubepki temp file of this transaction beside its target, every replaced file is one kubepki
/// manages here, and the backup staging directory is this transaction's, beside the backup. A
/// journal crafted by someone who can write only the cert dir then cannot make recovery move,
/// replace or delete files elsewhere.
fn check_shape(jp: &Path, j: &Journal, layout: &Layout) -> Result<()> {
    let bad = |what: Foreign| Error::journal(jp, JournalProblem::NeverWritten(what));
    if let (Some(c), Some(k)) = (&j.cert_dir, &j.kubeconfig_dir)
        && (*c != layout.cert_dir || *k != layout.kubeconfig_dir)
    {
        return Err(Error::journal(
            jp,
            JournalProblem::OtherPki {
                operation: j.operation.clone(),
                cert_dir: c.clone(),
                kubeconfig_dir: k.clone(),
            },
        ));
    }
    if !j.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(Foreign::Transaction(j.id.clone())));
    }
    let prefix = if j.id.is_empty() {
        TEMP_PREFIX.to_string()
    } else {
        format!("{TEMP_PREFIX}{}-", j.id)
    };
    for e in &j.entries {
        let name = e
            .staged
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !e.target.is_absolute()
            || e.target.file_name().is_none()
            || e.staged.parent() != e.target.parent()
            || !name.starts_with(&prefix)
            || !name.ends_with(".new")
            || (!e.create && !layout.manages(&e.target))
            || (e.remove && (e.create || !layout.removable(&e.target)))
        {
            return Err(bad(Foreign::Pair {
                staged: e.staged.clone(),
                target: e.target.clone(),
            }));
        }
    }
    if let Some(b) = &j.backup {
        let want = format!("{}{}", crate::storage::backup::STAGING_PREFIX, j.id);
        if j.id.is_empty()
            || b.staging.file_name() != Some(std::ffi::OsStr::new(&want))
            || b.staging.parent() != b.dir.parent()
            || !b.dir.is_absolute()
        {
            return Err(bad(Foreign::Backup {
                dir: b.dir.clone(),
                staging: b.staging.clone(),
            }));
        }
    }
    Ok(())
}

/// Undoes a transaction that never committed: its temp files (named with its id, in the
/// directories it recorded) and its backup go, then the journal.
fn undo_prepared(journal_dir: &Path, j: &Journal) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let prefix = format!("{TEMP_PREFIX}{}-", j.id);
    for d in &j.dirs {
        if !crate::fsio::exists(d)? {
            continue;
        }
        for p in read_dir(d)? {
            if !j.id.is_empty() && name_of(&p).starts_with(&prefix) {
                remove_if_present(&p)?;
                removed.push(p);
            }
        }
        sync_dir(d)?;
    }
    if let Some(b) = &j.backup {
        remove_backup(b, &j.id)?;
    }
    let jp = journal_dir.join(JOURNAL);
    fs::remove_file(&jp).map_err(|e| Error::io(&jp, e))?;
    op();
    sync_dir(journal_dir)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Path) -> BTreeSet<String> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A PKI below a temp dir: the cert dir `pki`, kubeconfigs beside it.
    fn pki() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("pki"), d.path());
        fs::create_dir(&layout.cert_dir).unwrap();
        (d, layout)
    }

    fn journal(layout: &Layout, id: &str, state: State, entries: Vec<Entry>) -> Journal {
        Journal {
            kubepki_journal: FORMAT,
            id: id.into(),
            operation: "renew".into(),
            cert_dir: Some(layout.cert_dir.clone()),
            kubeconfig_dir: Some(layout.kubeconfig_dir.clone()),
            state,
            dirs: vec![layout.cert_dir.clone()],
            backup: None,
            entries,
        }
    }

    #[test]
    fn commit_replaces_and_leaves_no_trace() {
        let (_d, l) = pki();
        let a = l.cert_dir.join("apiserver.crt");
        fs::write(&a, "old").unwrap();
        let mut t = Transaction::begin(&l, "test").unwrap();
        t.replace(&a, b"new", 0o600).unwrap();
        t.create(&l.cert_dir.join("b"), b"B", 0o644).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert!(l.cert_dir.join(JOURNAL).exists(), "prepared before staging");
        t.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            names(&l.cert_dir),
            ["apiserver.crt", "b"].map(String::from).into()
        );
        let r = recover(&l).unwrap();
        assert_eq!(r.outcome, Outcome::Clean);
        assert!(r.unaccounted.is_empty());
    }

    #[test]
    fn abandoned_transaction_changes_nothing() {
        let (_d, l) = pki();
        let a = l.cert_dir.join("apiserver.crt");
        fs::write(&a, "old").unwrap();
        let mut t = Transaction::begin(&l, "test").unwrap();
        t.replace(&a, b"new", 0o600).unwrap();
        t.create(&l.cert_dir.join("etcd/server.crt"), b"N", 0o644)
            .unwrap();
        drop(t);
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert_eq!(
            names(&l.cert_dir),
            ["apiserver.crt"].map(String::from).into()
        );
    }

    #[test]
    fn only_managed_regular_files_are_replaced() {
        let (d, l) = pki();
        let mut t = Transaction::begin(&l, "test").unwrap();
        let e = t
            .replace(&d.path().join("elsewhere"), b"x", 0o600)
            .unwrap_err();
        assert!(e.to_string().contains("not a file kubepki manages"), "{e}");
        let target = d.path().join("real.conf");
        fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, l.kubeconfig_dir.join("admin.conf")).unwrap();
        let e = t
            .replace(&l.kubeconfig_dir.join("admin.conf"), b"x", 0o600)
            .unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn create_never_replaces() {
        let (_d, l) = pki();
        let (a, b) = (l.cert_dir.join("a"), l.cert_dir.join("b"));
        let mut t = Transaction::begin(&l, "init").unwrap();
        t.create(&a, b"A", 0o644).unwrap();
        t.create(&b, b"B", 0o644).unwrap();
        fs::write(&b, "theirs").unwrap();
        assert!(matches!(t.commit(), Err(Error::Exists { .. })));
        assert!(!a.exists(), "nothing placed");
        assert_eq!(fs::read(&b).unwrap(), b"theirs");
        assert_eq!(names(&l.cert_dir), ["b"].map(String::from).into());
    }

    /// A committed journal from a run killed after its first rename.
    #[test]
    fn recovery_rolls_forward_a_committed_journal() {
        let (_d, l) = pki();
        let (a, b) = (
            l.cert_dir.join("apiserver.crt"),
            l.cert_dir.join("apiserver.key"),
        );
        fs::write(&a, "newA").unwrap();
        fs::write(&b, "oldB").unwrap();
        let sb = l.cert_dir.join(".kubepki-0f-2.new");
        fs::write(&sb, "newB").unwrap();
        let j = journal(
            &l,
            "0f",
            State::Committed,
            vec![
                Entry {
                    target: a.clone(),
                    staged: l.cert_dir.join(".kubepki-0f-1.new"),
                    sha256: sha256_hex(b"newA"),
                    create: false,
                    remove: false,
                },
                Entry {
                    target: b.clone(),
                    staged: sb,
                    sha256: sha256_hex(b"newB"),
                    create: false,
                    remove: false,
                },
            ],
        );
        write_journal(&l.cert_dir, &j).unwrap();
        let r = recover(&l).unwrap();
        assert!(matches!(r.outcome, Outcome::RolledForward { .. }));
        assert_eq!(fs::read(&b).unwrap(), b"newB");
        assert_eq!(
            names(&l.cert_dir),
            ["apiserver.crt", "apiserver.key"].map(String::from).into()
        );
    }

    /// A prepared journal: only its own temps go; a temp nobody accounts for stays.
    #[test]
    fn recovery_rolls_back_a_prepared_journal_and_keeps_the_unknown() {
        let (_d, l) = pki();
        let mut t = Transaction::begin(&l, "init").unwrap();
        t.create(&l.cert_dir.join("ca.key"), b"K", 0o600).unwrap();
        std::mem::forget(t); // as if killed: no drop runs
        fs::write(l.cert_dir.join(".kubepki-abc.new"), "someone's key").unwrap();
        let r = recover(&l).unwrap();
        assert!(
            matches!(r.outcome, Outcome::RolledBack { ref removed, .. } if removed.len() == 1),
            "{r:?}"
        );
        assert_eq!(r.unaccounted, [l.cert_dir.join(".kubepki-abc.new")]);
        assert_eq!(
            names(&l.cert_dir),
            [".kubepki-abc.new"].map(String::from).into()
        );
    }

    /// A journal that names files outside its pattern (staged elsewhere, a replaced file
    /// kubepki does not manage, a backup staging directory that is not the transaction's, or
    /// another PKI's files) is refused, and nothing is touched.
    #[test]
    fn a_crafted_or_copied_journal_moves_and_deletes_nothing() {
        let (d, l) = pki();
        let victim = d.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), "x").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let evil = elsewhere.path().join(".kubepki-ab-1.new");
        fs::write(&evil, "evil").unwrap();
        fs::write(d.path().join(".kubepki-ab-1.new"), "evil").unwrap();
        let entry = |target: PathBuf, staged: PathBuf| Entry {
            target,
            staged,
            sha256: sha256_hex(b"evil"),
            create: false,
            remove: false,
        };
        let mut other_pki = journal(&l, "ab", State::Committed, vec![]);
        other_pki.cert_dir = Some(elsewhere.path().join("pki"));
        let mut backup_elsewhere = journal(&l, "ab", State::Prepared, vec![]);
        backup_elsewhere.backup = Some(BackupRecord {
            dir: d.path().join("b"),
            staging: victim.clone(),
        });
        let cases = [
            journal(
                &l,
                "ab",
                State::Committed,
                vec![entry(l.cert_dir.join("apiserver.crt"), evil.clone())],
            ),
            journal(
                &l,
                "ab",
                State::Committed,
                vec![entry(
                    d.path().join("shadow"),
                    d.path().join(".kubepki-ab-1.new"),
                )],
            ),
            backup_elsewhere,
            other_pki,
        ];
        for j in cases {
            write_journal(&l.cert_dir, &j).unwrap();
            let e = recover(&l).unwrap_err().to_string();
            assert!(
                e.contains("which kubepki never writes") || e.contains("not this one"),
                "{e}"
            );
            assert!(evil.exists() && victim.join("keep").exists());
            assert!(!d.path().join("shadow").exists());
            assert!(!l.cert_dir.join("apiserver.crt").exists());
        }
    }

    /// Format-1 journals (no state, no id) are committed ones.
    #[test]
    fn reads_format_1_journals() {
        let j: Journal = serde_json::from_str(
            r#"{"kubepki_journal":1,"operation":"renew","entries":[{"target":"/a","staged":"/b","sha256":"00"}]}"#,
        )
        .unwrap();
        assert_eq!(j.state, State::Committed);
        assert!(!j.entries[0].create);
        assert!(j.cert_dir.is_none());
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

    #[test]
    fn a_removal_happens_at_commit_and_only_to_a_managed_file() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path().join("pki"), d.path());
        fs::create_dir_all(&l.cert_dir).unwrap();
        let s = crate::storage::session::Session::open(&l, false).unwrap();
        let l = s.layout().clone();
        let signer = l.signer_key();
        fs::write(&signer, "key").unwrap();
        let mut t = s.transaction("test").unwrap();
        t.remove(&signer).unwrap();
        assert!(signer.exists(), "removed before the commit");
        assert!(matches!(
            t.remove(&d.path().join("elsewhere")),
            Err(Error::WrongForSlot { .. })
        ));
        t.commit().unwrap();
        assert!(!signer.exists());
        // Dropped uncommitted: nothing removed.
        fs::write(&signer, "key").unwrap();
        let mut t = s.transaction("test").unwrap();
        t.remove(&signer).unwrap();
        drop(t);
        assert!(signer.exists());
        // Never a file a cluster runs on, even one kubepki manages.
        let admin = l.kubeconfig_dir.join("admin.conf");
        fs::write(&admin, "x").unwrap();
        let mut t = s.transaction("test").unwrap();
        assert!(t.remove(&admin).is_err());
        drop(t);
        drop(s);
        // A crafted journal naming one is refused, and so is a removal of changed content.
        for (target, sha) in [
            (admin.clone(), sha256_hex(b"x")),
            (signer.clone(), sha256_hex(b"other")),
        ] {
            let mut j = journal(&l, "ab", State::Committed, vec![]);
            j.entries.push(Entry {
                staged: target.with_file_name(".kubepki-ab-1.new"),
                target: target.clone(),
                sha256: sha,
                create: false,
                remove: true,
            });
            write_journal(&l.cert_dir, &j).unwrap();
            assert!(recover(&l).is_err(), "{}", target.display());
            assert!(target.exists());
            fs::remove_file(l.cert_dir.join(JOURNAL)).unwrap();
        }
    }
}
