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

use crate::error::{Error, JournalProblem, KubeconfigProblem, Result};
use crate::fsio::op;
use crate::fsio::sha256_hex;
use crate::fsio::{self, PRIVATE_DIR_MODE, json_path, parent, sync_dir};
use crate::model::layout::Layout;

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
    if crate::fsio::exists(dir)? {
        return Err(Error::Exists {
            path: dir.to_path_buf(),
        });
    }
    fsio::create_dirs(parent(dir), PRIVATE_DIR_MODE)?;
    let manifest = Manifest {
        kubepki_backup: FORMAT,
        created: created.to_string(),
        operation: operation.to_string(),
        transaction: transaction.to_string(),
        cert_dir: absolute(&layout.cert_dir)?,
        kubeconfig_dir: Some(absolute(&layout.kubeconfig_dir)?),
        files: Vec::new(),
    };
    let res = copy_all(staging, dir, files, manifest);
    if res.is_err() {
        let _ = fs::remove_dir_all(staging);
    }
    res
}

/// The copy itself: `manifest` (without files yet) gets one entry per file.
fn copy_all(
    staging: &Path,
    dir: &Path,
    files: &[PathBuf],
    mut manifest: Manifest,
) -> Result<Manifest> {
    fsio::create_dirs(staging, PRIVATE_DIR_MODE).map_err(|e| shown_at(e, staging, dir))?;
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
    if !crate::fsio::exists(parent)? {
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
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::journal(&mp, JournalProblem::NotAManifest(e)))?;
    for f in &m.files {
        if f.stored.is_absolute()
            || f.stored
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(Error::journal(
                &mp,
                JournalProblem::EscapesBackup(f.stored.clone()),
            ));
        }
        read_checked(dir, f)?;
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
/// the mode kubepki gives them; each must hold what its slot holds, and every key must match
/// its certificate once restored. Anything else refuses the whole backup. Stored files are
/// read without following symbolic links. `layout` must be absolute and the one the backup
/// was made of.
pub fn plan_restore(dir: &Path, m: &Manifest, layout: &Layout) -> Result<Vec<RestoreFile>> {
    let mp = dir.join(MANIFEST);
    let managed = layout.managed_files();
    let mut out: Vec<RestoreFile> = Vec::new();
    for f in &m.files {
        let Some((_, kind)) = managed.iter().find(|(p, _)| *p == f.original) else {
            return Err(Error::journal(
                &mp,
                JournalProblem::Unmanaged {
                    file: f.original.clone(),
                    cert_dir: layout.cert_dir.clone(),
                    kubeconfig_dir: layout.kubeconfig_dir.clone(),
                },
            ));
        };
        if out.iter().any(|r| r.original == f.original) {
            return Err(Error::journal(
                &mp,
                JournalProblem::Twice(f.original.clone()),
            ));
        }
        let stored = dir.join(&f.stored);
        let contents = read_checked(dir, f)?;
        kind.check(&stored, &contents)?;
        out.push(RestoreFile {
            original: f.original.clone(),
            contents,
            mode: kind.mode(),
        });
    }
    check_pairs(&out, layout)?;
    Ok(out)
}

/// Every key restored matches its certificate (restored too, or on disk), and every
/// kubeconfig's embedded client key its certificate.
fn check_pairs(files: &[RestoreFile], layout: &Layout) -> Result<()> {
    let content = |p: &Path| -> Result<Option<Vec<u8>>> {
        match files.iter().find(|f| f.original == p) {
            Some(f) => Ok(Some(f.contents.clone())),
            None if crate::fsio::exists(p)? => fsio::read(p).map(Some),
            None => Ok(None),
        }
    };
    for f in files {
        if let Some(other) = layout.pair_of(&f.original) {
            let (cert, key) = if f.original.extension().is_some_and(|e| e == "crt") {
                (f.original.clone(), other)
            } else {
                (other, f.original.clone())
            };
            if let (Some(c), Some(k)) = (content(&cert)?, content(&key)?) {
                let c = crate::crypto::cert::Certificate::from_pem_chain(&c).map_err(|reason| {
                    Error::BadCertificate {
                        path: cert.clone(),
                        reason,
                    }
                })?;
                let k = crate::crypto::key::PrivateKey::from_pem(&k).map_err(|reason| {
                    Error::BadKey {
                        path: key.clone(),
                        reason,
                    }
                })?;
                if !k.matches_public_key(c[0].public_key_der()) {
                    return Err(Error::KeyMismatch { cert, key });
                }
            }
        } else if layout
            .managed_files()
            .iter()
            .any(|(p, k)| *p == f.original && *k == crate::model::layout::FileKind::Kubeconfig)
        {
            let text = String::from_utf8_lossy(&f.contents);
            let creds = crate::model::kubeconfig::parse_credentials(&text, &f.original)?;
            if let (crate::model::kubeconfig::Source::Embedded, Some(k)) =
                (&creds.cert_source, &creds.key_pem)
            {
                let bad = |problem| Error::kubeconfig(&f.original, problem);
                let c = creds
                    .client_chain()
                    .map_err(|e| bad(KubeconfigProblem::ClientCert(e)))?;
                let k = crate::crypto::key::PrivateKey::from_pem(k)
                    .map_err(|e| bad(KubeconfigProblem::ClientKey(e)))?;
                if !k.matches_public_key(c[0].public_key_der()) {
                    return Err(bad(KubeconfigProblem::KeyMismatch));
                }
            }
        }
    }
    Ok(())
}

/// A file stored in backup `dir`, read as [`read_stored`] does, with the checksum the manifest
/// records for it.
fn read_checked(dir: &Path, f: &BackupFile) -> Result<Vec<u8>> {
    let b = read_stored(dir, &f.stored)?;
    if sha256_hex(&b) != f.sha256 {
        return Err(Error::journal(
            dir.join(&f.stored),
            JournalProblem::Checksum,
        ));
    }
    Ok(b)
}

/// A file stored in backup `dir`, read without following a symbolic link anywhere below
/// `dir`: a backup whose entries were replaced by links could otherwise restore any file of
/// the system into the PKI.
fn read_stored(dir: &Path, stored: &Path) -> Result<Vec<u8>> {
    let mut p = dir.to_path_buf();
    for c in stored.components() {
        p.push(c);
        let m = fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if m.file_type().is_symlink() {
            return Err(Error::journal(p, JournalProblem::Symlink));
        }
    }
    fsio::read(&p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::txn::Transaction;
    use std::os::unix::fs::PermissionsExt;

    fn pki() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("pki"), d.path());
        fs::create_dir_all(layout.cert_dir.join("etcd")).unwrap();
        (d, layout)
    }

    /// A self-signed certificate and its key, as PEM.
    fn pair(cn: &str) -> (Vec<u8>, Vec<u8>) {
        use crate::crypto::issue::{CertTemplate, Signer, issue};
        use crate::crypto::key::{KeyAlgorithm, PrivateKey};
        let k = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let t = CertTemplate {
            common_name: cn.into(),
            ..Default::default()
        };
        let c = issue(
            &t,
            k.public_key_der(),
            Signer::SelfSigned(&k),
            now,
            now + time::Duration::days(1),
        )
        .unwrap();
        (c.to_pem().into_bytes(), k.to_pem().unwrap().into_bytes())
    }

    #[test]
    fn backup_and_restore_round_trip() {
        let (d, layout) = pki();
        let (crt, key) = (
            layout.cert_dir.join("apiserver.crt"),
            layout.cert_dir.join("apiserver.key"),
        );
        let (c1, k1) = pair("one");
        let (c2, k2) = pair("two");
        fs::write(&crt, &c1).unwrap();
        fs::write(&key, &k1).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let bdir = d.path().join("backups/1");
        let mut t = Transaction::begin(&layout, "renew").unwrap();
        t.replace(&crt, &c2, 0o644).unwrap();
        t.replace(&key, &k2, 0o600).unwrap();
        let m = t
            .back_up(
                &bdir,
                &[crt.clone(), key.clone()],
                &layout,
                "2026-01-01T00:00:00Z",
            )
            .unwrap();
        t.commit().unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(bdir.join(&m.files[1].stored).ends_with("pki/apiserver.key"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&bdir).unwrap().mode() & 0o777, 0o700);

        let m = load(&bdir).unwrap();
        let files = plan_restore(&bdir, &m, &layout).unwrap();
        let mut r = Transaction::begin(&layout, "restore").unwrap();
        for f in &files {
            r.replace(&f.original, &f.contents, f.mode).unwrap();
        }
        r.commit().unwrap();
        assert_eq!(fs::read(&crt).unwrap(), c1);
        assert_eq!(fs::read(&key).unwrap(), k1);
        // kubepki's mode for a key, not the one the backup recorded.
        assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);

        // Restoring only the old certificate beside the new key would break the pair.
        let mut half = m.clone();
        half.files.retain(|f| f.original == crt);
        fs::write(&key, &k2).unwrap();
        assert!(matches!(
            plan_restore(&bdir, &half, &layout),
            Err(Error::KeyMismatch { .. })
        ));

        // A stored file replaced by a symbolic link is refused, whatever it points to.
        let stored = bdir.join(&m.files[0].stored);
        let other = d.path().join("other");
        fs::write(&other, &c1).unwrap();
        fs::remove_file(&stored).unwrap();
        std::os::unix::fs::symlink(&other, &stored).unwrap();
        let e = plan_restore(&bdir, &m, &layout).unwrap_err().to_string();
        assert!(e.contains("symbolic link inside the backup"), "{e}");

        // A tampered backup is refused before anything is staged.
        fs::remove_file(&stored).unwrap();
        fs::write(&stored, "evil").unwrap();
        assert!(matches!(load(&bdir), Err(Error::Journal { .. })));
    }

    #[test]
    fn a_dropped_transaction_removes_its_backup() {
        let (d, layout) = pki();
        let a = layout.cert_dir.join("apiserver.crt");
        fs::write(&a, "A").unwrap();
        let bdir = d.path().join("backups/1");
        let mut t = Transaction::begin(&layout, "renew").unwrap();
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
        let mut t = Transaction::begin(&layout, "renew").unwrap();
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
        fs::write(&a, pair("a").0).unwrap();
        let bdir = d.path().join("backups/1");
        let mut t = Transaction::begin(&layout, "renew").unwrap();
        let mut m = t
            .back_up(&bdir, std::slice::from_ref(&a), &layout, "x")
            .unwrap();
        t.replace(&a, &pair("b").0, 0o644).unwrap();
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
