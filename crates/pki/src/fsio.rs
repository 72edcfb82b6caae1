//! Writing files safely: temp file in the target directory, fsync, then an atomic no-clobber
//! link into place, then fsync of the directory. A [`NewFiles`] set is all-or-nothing: every
//! file is staged before any becomes visible, and a failure removes what was placed.

use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

pub const CERT_MODE: u32 = 0o644;
pub const KEY_MODE: u32 = 0o600;
pub const KUBECONFIG_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o755;

/// A set of new files written together. Dropping an uncommitted set removes its temp files
/// and the directories it created.
#[derive(Default)]
pub struct NewFiles {
    staged: Vec<(NamedTempFile, PathBuf)>,
    created_dirs: Vec<PathBuf>,
}

impl NewFiles {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.staged.iter().map(|(_, p)| p.as_path())
    }

    /// Writes `contents` to a temp file beside `path`, with `mode`, fsynced.
    pub fn stage(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        if crate::layout::exists(path)? {
            return Err(Error::Exists {
                path: path.to_path_buf(),
            });
        }
        if self.staged.iter().any(|(_, p)| p == path) {
            return Err(Error::Exists {
                path: path.to_path_buf(),
            });
        }
        let dir = parent(path);
        self.create_dirs(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".kubepki-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(path, e))?;
        let f = tmp.as_file_mut();
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| Error::io(path, e))?;
        f.write_all(contents).map_err(|e| Error::io(path, e))?;
        f.sync_all().map_err(|e| Error::io(path, e))?;
        self.staged.push((tmp, path.to_path_buf()));
        Ok(())
    }

    fn create_dirs(&mut self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.as_os_str().is_empty() && !crate::layout::exists(d)? {
            missing.push(d.to_path_buf());
            d = parent(d);
        }
        for m in missing.into_iter().rev() {
            fs::create_dir(&m).map_err(|e| Error::io(&m, e))?;
            fs::set_permissions(&m, Permissions::from_mode(DIR_MODE))
                .map_err(|e| Error::io(&m, e))?;
            self.created_dirs.push(m);
        }
        Ok(())
    }

    /// Links every staged file into place without replacing anything. On failure, the files
    /// already placed are removed again and the error names the file that failed.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        let mut placed: Vec<PathBuf> = Vec::new();
        let staged = std::mem::take(&mut self.staged);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (tmp, path) in staged {
            if let Err(e) = tmp.persist_noclobber(&path) {
                for p in &placed {
                    let _ = fs::remove_file(p);
                }
                let kind = e.error.kind();
                return Err(if kind == std::io::ErrorKind::AlreadyExists {
                    Error::Exists { path }
                } else {
                    Error::io(path, e.error)
                });
            }
            let d = parent(&path).to_path_buf();
            if !dirs.contains(&d) {
                dirs.push(d);
            }
            placed.push(path);
        }
        for d in dirs {
            sync_dir(&d)?;
        }
        self.created_dirs.clear();
        Ok(placed)
    }
}

impl Drop for NewFiles {
    fn drop(&mut self) {
        // Temp files delete themselves; then remove directories we created, deepest first.
        self.staged.clear();
        for d in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or link in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Writes one new file atomically; fails if it exists.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut set = NewFiles::new();
    set.stage(path, contents, mode)?;
    set.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("x/a.key");
        let b = d.path().join("x/y/b.crt");
        let mut set = NewFiles::new();
        set.stage(&a, b"A", KEY_MODE).unwrap();
        set.stage(&b, b"B", CERT_MODE).unwrap();
        assert!(!a.exists(), "nothing is visible before commit");
        set.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"A");
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&b).unwrap().mode() & 0o777, 0o644);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(d.path().join("x"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // Staging over an existing file fails; an abandoned set leaves no trace.
        let mut set = NewFiles::new();
        set.stage(&d.path().join("z/new.crt"), b"N", CERT_MODE)
            .unwrap();
        assert!(matches!(
            set.stage(&a, b"A2", KEY_MODE),
            Err(Error::Exists { .. })
        ));
        drop(set);
        assert!(!d.path().join("z").exists());
        assert_eq!(fs::read(&a).unwrap(), b"A");
    }

    #[test]
    fn commit_never_replaces_a_file_that_appeared_meanwhile() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        let mut set = NewFiles::new();
        set.stage(&a, b"A", CERT_MODE).unwrap();
        set.stage(&b, b"B", CERT_MODE).unwrap();
        fs::write(&b, b"theirs").unwrap();
        assert!(matches!(set.commit(), Err(Error::Exists { .. })));
        assert!(!a.exists(), "the placed file is rolled back");
        assert_eq!(fs::read(&b).unwrap(), b"theirs");
    }
}
