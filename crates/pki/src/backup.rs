//! Backups of files about to be replaced, and putting a backup back.
//!
//! A backup directory mirrors each file's absolute path (`etc/kubernetes/pki/apiserver.crt`)
//! and holds `MANIFEST.json` with the PKI's directories, original paths, modes and SHA-256
//! sums, and the transaction that made it. It is built under a temporary name
//! (`.kubepki-backup-<transaction>` beside it), the manifest last, and renamed into place
//! complete; the transaction's journal names both, so a run killed while copying leaves
//! nothing behind once recovered. Backups hold private keys: every directory is 0700 and
//! every file 0600, whatever the umask.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{self, PRIVATE_DIR_MODE, json_path, parent, sync_dir};
use crate::layout::Layout;
use crate::txn::{op, sha256_hex};

pub const MANIFEST: &str = "MANIFEST.json";
pub(crate) const STAGING_PREFIX: &str = ".kubepki-backup-";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    #[serde(with = "json_path")]
    pub original: PathBuf,
    #[serde(with = "json_path")]
    pub stored: PathBuf,
    pub mode: u32,
    pub sha256: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Manifest {
    pub kubepki_backup: u32,
    pub created: String,
    pub operation: String,
    /// The transaction that made the backup (empty in backups of format 1).
    #[serde(default)]
    pub transaction: String,
    /// Where the cert dir was: the journal of a restore lives there.
    #[serde(with = "json_path")]
    pub cert_dir: PathBuf,
    /// Where the kubeconfig dir was (absent in backups of format 1).
    #[serde(default, with = "json_path::opt")]
    pub kubeconfig_dir: Option<PathBuf>,
    pub files: Vec<BackupFile>,
}

const FORMAT: u32 = 2;

/// Copies `files` into `staging`, then renames it to `dir`. Fails, removing what it wrote, if
/// `dir` exists or any copy fails (a full disk, say); the originals are only read. Called by a
/// transaction, whose journal names `dir` and `staging` first.
pub(crate) fn create(
    dir: &Path,
    staging: &Path,
    files: &[PathBuf],
    operation: &str,
    transaction: &str,
    layout: &Layout,
    created: &str,
) -> Result<Manifest> {
    if crate::layout::exists(dir)? {
        return Err(Error::Exists {
            path: dir.to_path_buf(),
        });
    }
    fsio::create_dirs(parent(dir), PRIVATE_DIR_MODE)?;
    let res = copy_all(staging, dir, files, operation, transaction, layout, created);
    if res.is_err() {
        let _ = fs::remove_dir_all(staging);
    }
    res
}

fn copy_all(
    staging: &Path,
    dir: &Path,
    files: &[PathBuf],
    operation: &str,
    transaction: &str,
    layout: &Layout,
    created: &str,
) -> Result<Manifest> {
    fsio::create_dirs(staging, PRIVATE_DIR_MODE).map_err(|e| shown_at(e, staging, dir))?;
    let mut manifest = Manifest {
        kubepki_backup: FORMAT,
        created: created.to_string(),
        operation: operation.to_string(),
        transaction: transaction.to_string(),
        cert_dir: absolute(&layout.cert_dir)?,
        kubeconfig_dir: Some(absolute(&layout.kubeconfig_dir)?),
        files: Vec::new(),
    };
    let mut made_dirs = vec![staging.to_path_buf()];
    for f in files {
        let original = absolute(f)?;
        let bytes = fsio::read(&original)?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(&original)
                .map_err(|e| Error::io(&original, e))?
                .permissions()
                .mode()
                & 0o7777
        };
        let stored: PathBuf = original
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let dest = staging.join(&stored);
        // Errors name the file where it would end up, not the temporary directory.
        let shown = dir.join(&stored);
        for d in fsio::create_dirs(parent(&dest), PRIVATE_DIR_MODE)
            .map_err(|e| shown_at(e, staging, dir))?
        {
            made_dirs.push(d);
        }
        write_private(&dest, &bytes).map_err(|e| Error::io(&shown, e))?;
        manifest.files.push(BackupFile {
            original,
            stored,
            mode,
            sha256: sha256_hex(&bytes),
        });
    }
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_private(&staging.join(MANIFEST), &text).map_err(|e| Error::io(dir.join(MANIFEST), e))?;
    // Every directory of the copy is durable before the backup counts as made.
    for d in made_dirs.iter().rev() {
        sync_dir(d).map_err(|e| shown_at(e, staging, dir))?;
    }
    // Renaming a directory never replaces a non-empty one: a `dir` made meanwhile is kept.
    fs::rename(staging, dir).map_err(|e| Error::io(dir, e))?;
    op();
    sync_dir(parent(dir))?;
    Ok(manifest)
}

/// A new file, 0600, fsynced.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    out.write_all(bytes)?;
    op();
    out.sync_all()?;
    op();
    Ok(())
}

/// An error about a path inside the staging directory, named where it would end up.
fn shown_at(e: Error, staging: &Path, dir: &Path) -> Error {
    match e {
        Error::Io { path, source } => {
            let shown = path
                .strip_prefix(staging)
                .map(|rel| dir.join(rel))
                .unwrap_or(path);
            Error::Io {
                path: shown,
                source,
            }
        }
        e => e,
    }
}

/// Whether `dir` is a complete backup made by transaction `id`.
pub(crate) fn made_by(dir: &Path, id: &str) -> bool {
    fsio::read(&dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .is_some_and(|m| !id.is_empty() && m.transaction == id)
}

/// Deletes the temporary directories of backups interrupted while being made in `parent`
/// by kubepki versions before transactions named them (the caller holds the cert dir lock,
/// so none is in progress; they are partial copies of files that are still in place).
pub fn remove_incomplete(parent: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if !crate::layout::exists(parent)? {
        return Ok(removed);
    }
    for entry in fs::read_dir(parent).map_err(|e| Error::io(parent, e))? {
        let entry = entry.map_err(|e| Error::io(parent, e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            op();
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        sync_dir(parent)?;
    }
    Ok(removed)
}

pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

/// Reads and checks a backup: every file present with the recorded checksum.
pub fn load(dir: &Path) -> Result<Manifest> {
    let mp = dir.join(MANIFEST);
    let bytes = fsio::read(&mp)?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Journal {
        path: mp.clone(),
        reason: format!("not a kubepki backup manifest: {e}"),
    })?;
    for f in &m.files {
        if f.stored.is_absolute()
            || f.stored
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(Error::Journal {
                path: mp.clone(),
                reason: format!("stored path {} escapes the backup", f.stored.display()),
            });
        }
        let p = dir.join(&f.stored);
        let b = fsio::read(&p)?;
        if sha256_hex(&b) != f.sha256 {
            return Err(Error::Journal {
                path: p,
                reason: "does not match the checksum in the backup manifest".into(),
            });
        }
    }
    Ok(m)
}

/// One file a restore puts back.
#[derive(Debug, Clone)]
pub struct RestoreFile {
    pub original: PathBuf,
    pub contents: Vec<u8>,
    /// The mode kubepki gives that kind of file (not the one the manifest records).
    pub mode: u32,
}

/// What a restore into `layout` would write. Only files kubepki manages in the PKI of
/// `layout` (its certificates, keys and kubeconfigs, by their exact paths) are restored, with
/// the mode kubepki gives them; anything else in the manifest refuses the whole backup.
/// `layout` must be absolute and is the one the backup was made from.
pub fn plan_restore(dir: &Path, m: &Manifest, layout: &Layout) -> Result<Vec<RestoreFile>> {
    let mp = dir.join(MANIFEST);
    let managed = layout.managed_files();
    let mut out = Vec::new();
    for f in &m.files {
        let Some((_, mode)) = managed.iter().find(|(p, _)| *p == f.original) else {
            return Err(Error::Journal {
                path: mp.clone(),
                reason: format!(
                    "names {}, which is not a file kubepki manages in {} or {}; nothing was restored",
                    f.original.display(),
                    layout.cert_dir.display(),
                    layout.kubeconfig_dir.display()
                ),
            });
        };
        if out.iter().any(|r: &RestoreFile| r.original == f.original) {
            return Err(Error::Journal {
                path: mp.clone(),
                reason: format!("names {} twice", f.original.display()),
            });
        }
        out.push(RestoreFile {
            original: f.original.clone(),
            contents: fsio::read(&dir.join(&f.stored))?,
            mode: *mode,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::Transaction;
    use std::os::unix::fs::PermissionsExt;

    fn pki() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("pki"), d.path());
        fs::create_dir_all(layout.cert_dir.join("etcd")).unwrap();
        (d, layout)
    }

    #[test]
    fn backup_and_restore_round_trip() {
        let (d, layout) = pki();
        let a = layout.cert_dir.join("apiserver.key");
        let b = layout.cert_dir.join("etcd/server.crt");
        fs::write(&a, "A").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&b, "B").unwrap();
        let bdir = d.path().join("backups/1");
        let mut t = Transaction::begin(&layout.cert_dir, "renew").unwrap();
        t.replace(&a, b"A2", 0o600).unwrap();
        let m = t
            .back_up(
                &bdir,
                &[a.clone(), b.clone()],
                &layout,
                "2026-01-01T00:00:00Z",
            )
            .unwrap();
        t.commit().unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(
            bdir.join(&m.files[1].stored)
                .ends_with("pki/etcd/server.crt")
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&bdir).unwrap().mode() & 0o777, 0o700);

        fs::write(&b, "B2").unwrap();
        let m = load(&bdir).unwrap();
        let files = plan_restore(&bdir, &m, &layout).unwrap();
        let mut r = Transaction::begin(&layout.cert_dir, "restore").unwrap();
        for f in &files {
            r.replace(&f.original, &f.contents, f.mode).unwrap();
        }
        r.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"A");
        assert_eq!(fs::read(&b).unwrap(), b"B");

        // A tampered backup is refused before anything is staged.
        fs::write(bdir.join(&m.files[0].stored), "evil").unwrap();
        assert!(matches!(load(&bdir), Err(Error::Journal { .. })));
    }

    #[test]
    fn a_dropped_transaction_removes_its_backup() {
        let (d, layout) = pki();
        let a = layout.cert_dir.join("apiserver.crt");
        fs::write(&a, "A").unwrap();
        let bdir = d.path().join("backups/1");
        let mut t = Transaction::begin(&layout.cert_dir, "renew").unwrap();
        t.back_up(&bdir, std::slice::from_ref(&a), &layout, "x")
            .unwrap();
        assert!(bdir.join(MANIFEST).is_file());
        drop(t);
        assert!(!bdir.exists());
        assert_eq!(fs::read_dir(d.path().join("backups")).unwrap().count(), 0);
    }

    #[test]
    fn failed_backup_leaves_nothing() {
        let (d, layout) = pki();
        let bdir = d.path().join("b");
        let missing = d.path().join("nope.crt");
        let mut t = Transaction::begin(&layout.cert_dir, "renew").unwrap();
        assert!(t.back_up(&bdir, &[missing], &layout, "x").is_err());
        drop(t);
        assert!(!bdir.exists());
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["pki"], "no staging left");
    }

    #[test]
    fn restore_refuses_files_kubepki_does_not_manage() {
        let (d, layout) = pki();
        let a = layout.cert_dir.join("apiserver.crt");
        fs::write(&a, "A").unwrap();
        let bdir = d.path().join("backups/1");
        let mut t = Transaction::begin(&layout.cert_dir, "renew").unwrap();
        let mut m = t
            .back_up(&bdir, std::slice::from_ref(&a), &layout, "x")
            .unwrap();
        t.replace(&a, b"A2", 0o644).unwrap();
        t.commit().unwrap();
        for evil in [
            d.path().join("OUTSIDE"),
            layout.cert_dir.join("evil.crt"),
            PathBuf::from("/etc/passwd"),
        ] {
            m.files[0].original = evil.clone();
            m.files[0].mode = 0o4755;
            let e = plan_restore(&bdir, &m, &layout).unwrap_err().to_string();
            assert!(e.contains("not a file kubepki manages"), "{e}");
        }
    }

    #[test]
    fn interrupted_legacy_backups_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let staged = d.path().join(".kubepki-backup-abc");
        fs::create_dir_all(staged.join("etc")).unwrap();
        fs::write(staged.join("etc/x"), "x").unwrap();
        fs::create_dir(d.path().join("20260101T000000Z")).unwrap();
        assert_eq!(remove_incomplete(d.path()).unwrap(), vec![staged.clone()]);
        assert!(!staged.exists() && d.path().join("20260101T000000Z").exists());
        assert!(
            remove_incomplete(&d.path().join("absent"))
                .unwrap()
                .is_empty()
        );
    }
}
