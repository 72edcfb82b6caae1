//! Static pod manifests held out of the kubelet's manifests directory while their pod restarts,
//! and putting them back, also after the process that held them was killed.
//!
//! A held manifest lives in the hold directory (`<kubeconfig-dir>/kubepki-held-manifests`, so
//! the same on every run whatever `--manifests-dir` or the working directory) beside a record,
//! `<file>.origin`, holding the absolute path it came from as raw bytes (a non-UTF-8 path
//! survives). The record is written atomically and fsynced *before* the manifest moves, so at
//! every instant either the manifest is in place or a record says where it goes back.
//!
//! A [`crate::storage::session::Session`] puts back what an interrupted run held before
//! anything else happens; the binary catches SIGINT, SIGTERM and SIGHUP while it holds one.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, HeldProblem, Result};
use crate::fsio;

const HOLD_DIR: &str = "kubepki-held-manifests";
const ORIGIN: &str = ".origin";
/// Temp files `fsio::write_atomic` leaves when killed while writing a record.
use crate::fsio::TEMP_PREFIX;

/// Where manifests wait while their pod is down: outside the manifests directory, so the
/// kubelet does not see them, and on the same file system in kubeadm's layout.
pub fn hold_dir(kubeconfig_dir: &Path) -> PathBuf {
    kubeconfig_dir.join(HOLD_DIR)
}

fn record_of(held: &Path) -> PathBuf {
    let mut name = held.file_name().unwrap_or_default().to_os_string();
    name.push(ORIGIN);
    held.with_file_name(name)
}

/// Moves `from` to `to` without ever replacing a file at `to`: a hard link (which fails if `to`
/// exists), then the old name goes. Killed in between, both names are the same file.
fn move_no_clobber(from: &Path, to: &Path) -> Result<()> {
    std::fs::hard_link(from, to).map_err(|e| Error::io(to, e))?;
    fsio::op();
    std::fs::remove_file(from).map_err(|e| Error::io(from, e))?;
    fsio::op();
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

use crate::fsio::parent;

fn held_error(path: &Path, problem: HeldProblem) -> Error {
    Error::HeldManifest {
        path: path.to_path_buf(),
        problem,
    }
}

/// A manifest out of its directory. [`Held::put_back`] returns it; dropping a `Held` that was
/// not put back (an early return) puts it back too, as best it can.
pub struct Held {
    held: PathBuf,
    origin: PathBuf,
    done: bool,
}

/// Moves `manifest` into `hold_dir`, first recording where it came from. The caller holds the
/// cert dir lock (so no other kubepki run recovers it meanwhile).
pub fn hold(manifest: &Path, hold_dir: &Path) -> Result<Held> {
    let origin = std::path::absolute(manifest).map_err(|e| Error::io(manifest, e))?;
    let Some(name) = origin.file_name() else {
        return Err(held_error(manifest, HeldProblem::NotAFileName));
    };
    // Manifests can carry secrets (flags, env): root-only, whatever the umask.
    fsio::create_dirs(hold_dir, fsio::PRIVATE_DIR_MODE)?;
    let held = hold_dir.join(name);
    if std::fs::symlink_metadata(&held).is_ok() {
        return Err(held_error(&held, HeldProblem::StillHeld));
    }
    let record = record_of(&held);
    fsio::write_atomic(&record, origin.as_os_str().as_bytes(), 0o600)?;
    if let Err(e) = move_no_clobber(&origin, &held) {
        // Undo what was done: the manifest never left (or is linked under both names).
        if same_file(&held, &origin) {
            let _ = std::fs::remove_file(&held);
        }
        if std::fs::symlink_metadata(&held).is_err() {
            let _ = std::fs::remove_file(&record);
        }
        return Err(e);
    }
    fsio::sync_dir(parent(&origin))?;
    fsio::sync_dir(hold_dir)?;
    Ok(Held {
        held,
        origin,
        done: false,
    })
}

impl Held {
    /// Moves the manifest back where it was (never over a file that appeared there meanwhile)
    /// and removes its record.
    pub fn put_back(mut self) -> Result<PathBuf> {
        self.done = true;
        put_back(&self.held, &self.origin)?;
        Ok(self.origin.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.done {
            let _ = put_back(&self.held, &self.origin);
        }
    }
}

fn put_back(held: &Path, origin: &Path) -> Result<()> {
    if std::fs::symlink_metadata(origin).is_ok() {
        if !same_file(held, origin) {
            return Err(held_error(
                held,
                HeldProblem::BothExist(origin.to_path_buf()),
            ));
        }
        // Killed between link and unlink: both names are the same file already.
        std::fs::remove_file(held).map_err(|e| Error::io(held, e))?;
        fsio::op();
    } else {
        move_no_clobber(held, origin)?;
    }
    fsio::sync_dir(parent(origin))?;
    let dir = parent(held);
    let record = record_of(held);
    std::fs::remove_file(&record).map_err(|e| Error::io(&record, e))?;
    fsio::op();
    fsio::sync_dir(dir)?;
    // Empty now unless other manifests are held; then it stays.
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// Puts back every manifest an interrupted kubepki run left in `hold_dir` (see [`hold_dir`]),
/// each to the absolute path recorded beside it, and returns where they went. Call it at the
/// start of every writing command, while holding the cert dir lock. A held manifest without a
/// record, or whose place is taken by another file, is an error naming both.
pub fn recover_held(hold_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(hold_dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::io(hold_dir, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(hold_dir, e)),
    };
    let is = |p: &Path, f: fn(&[u8]) -> bool| f(p.file_name().unwrap_or_default().as_bytes());
    let mut back = Vec::new();
    for held in entries.iter().filter(|p| {
        !is(p, |n| {
            n.starts_with(TEMP_PREFIX.as_bytes()) || n.ends_with(ORIGIN.as_bytes())
        })
    }) {
        let record = record_of(held);
        let bytes = fsio::read(&record).map_err(|e| {
            held_error(
                held,
                HeldProblem::RecordUnreadable {
                    record: record.clone(),
                    source: Box::new(e),
                },
            )
        })?;
        let origin = PathBuf::from(OsStr::from_bytes(&bytes));
        if !origin.is_absolute() || origin.file_name() != held.file_name() {
            return Err(held_error(
                &record,
                HeldProblem::RecordCorrupt(held.clone()),
            ));
        }
        put_back(held, &origin)?;
        back.push(origin);
    }
    // What is left: a record written just before its manifest moved (the run was killed in
    // between, so the manifest never left), or a record's temp file.
    for stale in entries.iter().filter(|p| {
        is(p, |n| {
            n.starts_with(TEMP_PREFIX.as_bytes()) || n.ends_with(ORIGIN.as_bytes())
        })
    }) {
        match std::fs::remove_file(stale) {
            Ok(()) => fsio::op(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(stale, e)),
        }
    }
    let _ = std::fs::remove_dir(hold_dir);
    Ok(back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifests(root: &Path, name: &[u8]) -> PathBuf {
        let d = root.join(OsStr::from_bytes(name));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn hold_records_and_put_back_restores_a_non_utf8_path() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifests(tmp.path(), b"man\xffifests");
        let f = m.join("kube-apiserver.yaml");
        std::fs::write(&f, b"pod").unwrap();
        let hd = hold_dir(&tmp.path().join("etc"));
        let h = hold(&f, &hd).unwrap();
        assert!(!f.exists());
        let rec = std::fs::read(hd.join("kube-apiserver.yaml.origin")).unwrap();
        assert_eq!(rec, f.as_os_str().as_bytes());
        assert_eq!(h.put_back().unwrap(), f);
        assert_eq!(std::fs::read(&f).unwrap(), b"pod");
        assert!(!hd.exists(), "the hold directory goes once empty");
    }

    #[test]
    fn recover_puts_back_where_the_record_says() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifests(tmp.path(), b"m\xfe");
        let f = m.join("kube-scheduler.yaml");
        std::fs::write(&f, b"pod").unwrap();
        let hd = hold_dir(&tmp.path().join("etc"));
        std::mem::forget(hold(&f, &hd).unwrap()); // as if killed
        assert!(!f.exists());
        // A stale record of a manifest that never left, and a record's temp file.
        std::fs::write(
            hd.join("etcd.yaml.origin"),
            m.join("etcd.yaml").as_os_str().as_bytes(),
        )
        .unwrap();
        std::fs::write(hd.join(".kubepki-x"), b"").unwrap();
        assert_eq!(recover_held(&hd).unwrap(), vec![f.clone()]);
        assert_eq!(std::fs::read(&f).unwrap(), b"pod");
        assert!(!hd.exists());
        assert_eq!(recover_held(&hd).unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn recover_never_replaces_a_manifest_and_says_which() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifests(tmp.path(), b"m");
        let f = m.join("kube-apiserver.yaml");
        std::fs::write(&f, b"old").unwrap();
        let hd = hold_dir(&tmp.path().join("etc"));
        std::mem::forget(hold(&f, &hd).unwrap());
        std::fs::write(&f, b"new").unwrap();
        let e = recover_held(&hd).unwrap_err().to_string();
        assert!(
            e.contains("kube-apiserver.yaml is held") && e.contains("exists too"),
            "{e}"
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        // Killed between the link and the unlink of a put-back: one file under two names.
        std::fs::remove_file(&f).unwrap();
        std::fs::hard_link(hd.join("kube-apiserver.yaml"), &f).unwrap();
        assert_eq!(recover_held(&hd).unwrap(), vec![f.clone()]);
        assert_eq!(std::fs::read(&f).unwrap(), b"old");
        assert!(!hd.exists());
    }

    #[test]
    fn a_held_manifest_without_a_record_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let hd = hold_dir(tmp.path());
        std::fs::create_dir_all(&hd).unwrap();
        std::fs::write(hd.join("kube-apiserver.yaml"), b"pod").unwrap();
        let e = recover_held(&hd).unwrap_err().to_string();
        assert!(
            e.contains("kube-apiserver.yaml is held") && e.contains(".origin"),
            "{e}"
        );
        std::fs::write(
            hd.join("kube-apiserver.yaml.origin"),
            b"relative/kube-apiserver.yaml",
        )
        .unwrap();
        let e = recover_held(&hd).unwrap_err().to_string();
        assert!(e.contains("not the absolute path"), "{e}");
    }

    #[test]
    fn dropping_a_held_manifest_puts_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifests(tmp.path(), b"m");
        let f = m.join("kube-apiserver.yaml");
        std::fs::write(&f, b"pod").unwrap();
        let hd = hold_dir(tmp.path());
        drop(hold(&f, &hd).unwrap());
        assert_eq!(std::fs::read(&f).unwrap(), b"pod");
    }
}
