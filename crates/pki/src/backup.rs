//! Backups of files about to be replaced, and putting a backup back.
//!
//! A backup directory mirrors each file's absolute path (`etc/kubernetes/pki/apiserver.crt`)
//! and holds `MANIFEST.json` with original paths, modes and SHA-256 sums. It is built under a
//! temporary name (`.kubepki-backup-*` beside it), the manifest last, and renamed into place
//! complete: a run killed while copying leaves only the temporary directory, which
//! [`remove_incomplete`] deletes on the next run.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::txn::{self, Replacement, op, sha256_hex};

pub const MANIFEST: &str = "MANIFEST.json";
const STAGING_PREFIX: &str = ".kubepki-backup-";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub original: PathBuf,
    pub stored: PathBuf,
    pub mode: u32,
    pub sha256: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Manifest {
    pub kubepki_backup: u32,
    pub created: String,
    pub operation: String,
    /// Where the cert dir was: the journal of a restore lives there.
    pub cert_dir: PathBuf,
    pub files: Vec<BackupFile>,
}

/// Copies `files` into the new directory `dir`. Fails, removing what it wrote, if `dir`
/// exists or any copy fails (a full disk, say); the originals are only read. `dir` appears
/// only once complete.
pub fn create(
    dir: &Path,
    cert_dir: &Path,
    files: &[PathBuf],
    operation: &str,
    created: &str,
) -> Result<Manifest> {
    if crate::layout::exists(dir)? {
        return Err(Error::Exists {
            path: dir.to_path_buf(),
        });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(parent)
        .map_err(|e| Error::io(dir, e))?
        .keep();
    op();
    let res = copy_all(&staging, dir, cert_dir, files, operation, created);
    if res.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    res
}

fn copy_all(
    staging: &Path,
    dir: &Path,
    cert_dir: &Path,
    files: &[PathBuf],
    operation: &str,
    created: &str,
) -> Result<Manifest> {
    fs::set_permissions(staging, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))?;
    op();
    let mut manifest = Manifest {
        kubepki_backup: 1,
        created: created.to_string(),
        operation: operation.to_string(),
        cert_dir: absolute(cert_dir)?,
        files: Vec::new(),
    };
    for f in files {
        let original = absolute(f)?;
        let bytes = fs::read(&original).map_err(|e| Error::io(&original, e))?;
        let mode = fs::metadata(&original)
            .map_err(|e| Error::io(&original, e))?
            .permissions()
            .mode()
            & 0o7777;
        let stored: PathBuf = original
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let dest = staging.join(&stored);
        // Errors name the file where it would end up, not the temporary directory.
        let shown = dir.join(&stored);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(&shown, e))?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&dest)
            .map_err(|e| Error::io(&shown, e))?;
        out.write_all(&bytes).map_err(|e| Error::io(&shown, e))?;
        op();
        out.sync_all().map_err(|e| Error::io(&shown, e))?;
        op();
        manifest.files.push(BackupFile {
            original,
            stored,
            mode,
            sha256: sha256_hex(&bytes),
        });
    }
    let text = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    txn::write_atomic(&staging.join(MANIFEST), &text, 0o600).map_err(|e| match e {
        Error::Io { source, .. } => Error::io(dir.join(MANIFEST), source),
        e => e,
    })?;
    // Renaming a directory never replaces a non-empty one: a `dir` made meanwhile is kept.
    fs::rename(staging, dir).map_err(|e| Error::io(dir, e))?;
    op();
    if let Some(parent) = dir.parent() {
        txn::sync_dir(parent)?;
    }
    Ok(manifest)
}

/// Deletes the temporary directories of backups interrupted while being made in `parent`
/// (the caller holds the cert dir lock, so none is in progress). Returns what it removed.
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
        txn::sync_dir(parent)?;
    }
    Ok(removed)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

/// Reads and checks a backup: every file present with the recorded checksum.
pub fn load(dir: &Path) -> Result<Manifest> {
    let mp = dir.join(MANIFEST);
    let bytes = fs::read(&mp).map_err(|e| Error::io(&mp, e))?;
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
        let b = fs::read(&p).map_err(|e| Error::io(&p, e))?;
        if sha256_hex(&b) != f.sha256 {
            return Err(Error::Journal {
                path: p,
                reason: "does not match the checksum in the backup manifest".into(),
            });
        }
    }
    Ok(m)
}

/// Stages every backed-up file over its original into `r` (the caller commits).
pub fn stage_restore(dir: &Path, m: &Manifest, r: &mut Replacement) -> Result<()> {
    for f in &m.files {
        let p = dir.join(&f.stored);
        let b = fs::read(&p).map_err(|e| Error::io(&p, e))?;
        r.stage(&f.original, &b, f.mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_and_restore_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let pki = d.path().join("pki");
        fs::create_dir_all(pki.join("etcd")).unwrap();
        let a = pki.join("apiserver.key");
        let b = pki.join("etcd/server.crt");
        fs::write(&a, "A").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&b, "B").unwrap();
        let bdir = d.path().join("backups/1");
        let m = create(
            &bdir,
            &pki,
            &[a.clone(), b.clone()],
            "renew",
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(
            bdir.join(&m.files[1].stored)
                .ends_with("pki/etcd/server.crt")
        );
        // A second backup into the same directory is refused.
        assert!(matches!(
            create(&bdir, &pki, std::slice::from_ref(&a), "renew", "x"),
            Err(Error::Exists { .. })
        ));

        fs::write(&a, "A2").unwrap();
        fs::write(&b, "B2").unwrap();
        let m = load(&bdir).unwrap();
        let mut r = Replacement::new(&pki, "restore");
        stage_restore(&bdir, &m, &mut r).unwrap();
        r.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"A");
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read(&b).unwrap(), b"B");

        // A tampered backup is refused before anything is staged.
        fs::write(bdir.join(&m.files[0].stored), "evil").unwrap();
        assert!(matches!(load(&bdir), Err(Error::Journal { .. })));
    }

    #[test]
    fn failed_backup_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let bdir = d.path().join("b");
        let missing = d.path().join("nope.crt");
        assert!(create(&bdir, d.path(), &[missing], "renew", "x").is_err());
        assert!(!bdir.exists());
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            0,
            "no staging left"
        );
    }

    #[test]
    fn interrupted_backups_are_removed() {
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
