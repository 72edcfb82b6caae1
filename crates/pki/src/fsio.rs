//! File-system primitives every write and read goes through: bounded reads of files kubepki
//! did not write, directories with explicit modes (whatever the umask), directory fsync,
//! no-clobber renames, and paths that survive a round trip through JSON even when they are
//! not UTF-8.

use std::fs::{self, File, Permissions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

pub const CERT_MODE: u32 = 0o644;
pub const KEY_MODE: u32 = 0o600;
pub const KUBECONFIG_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o755;
/// Backups hold private keys: only root may enter.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// The largest file kubepki reads. A certificate, key or kubeconfig is a few KiB; a CA bundle
/// or a kubeadm config file some hundreds at most. Anything larger (or endless, like
/// /dev/zero) is refused instead of filling memory.
pub const MAX_READ: u64 = 4 << 20;

/// The name prefix of every temp file kubepki makes beside the files it writes.
pub const TEMP_PREFIX: &str = ".kubepki-";

static OPS: AtomicU64 = AtomicU64::new(0);

/// Counts one disk operation. In test builds (feature `test-hooks`),
/// `KUBEPKI_TEST_KILL_AFTER_OPS=N` makes the process SIGKILL itself right after operation N:
/// the crash-safety tests' hook.
pub fn op() {
    let _n = OPS.fetch_add(1, Ordering::SeqCst) + 1;
    #[cfg(feature = "test-hooks")]
    if let Ok(limit) = std::env::var("KUBEPKI_TEST_KILL_AFTER_OPS")
        && limit.parse::<u64>().ok() == Some(_n)
    {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// A file's SHA-256, in hex: journals and backups check contents with it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a path exists, without following a final symlink's absence into "missing":
/// a dangling symlink is reported as an error, since replacing it could write elsewhere.
pub fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Io {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, "dangling symbolic link"),
            }),
            Err(e) => Err(Error::io(path, e)),
        },
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Why [`read_regular`] read nothing.
#[derive(Debug)]
pub enum ReadFailure {
    Io(std::io::Error),
    /// A device, FIFO, socket or directory.
    NotRegular,
    /// Larger than the limit (or grew past it while read).
    TooLarge(u64),
}

impl ReadFailure {
    fn into_error(self, path: &Path) -> Error {
        let msg = |kind, m: String| std::io::Error::new(kind, m);
        Error::io(
            path,
            match self {
                ReadFailure::Io(e) => e,
                ReadFailure::NotRegular => msg(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (a device, FIFO, socket or directory); kubepki reads only regular files".into(),
                ),
                ReadFailure::TooLarge(limit) => msg(
                    std::io::ErrorKind::InvalidData,
                    format!("larger than {} MiB; not a PKI file", limit >> 20),
                ),
            },
        )
    }
}

/// Reads a regular file of at most `limit` bytes, following symlinks. Refuses devices, FIFOs,
/// sockets and directories (opened without blocking, so a FIFO cannot hang the read), and
/// files that grow past the limit while read.
pub fn read_regular(path: &Path, limit: u64) -> std::result::Result<Vec<u8>, ReadFailure> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadFailure::Io)?;
    let meta = f.metadata().map_err(ReadFailure::Io)?;
    if !meta.is_file() {
        return Err(ReadFailure::NotRegular);
    }
    if meta.len() > limit {
        return Err(ReadFailure::TooLarge(limit));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(ReadFailure::Io)?;
    if buf.len() as u64 > limit {
        return Err(ReadFailure::TooLarge(limit));
    }
    Ok(buf)
}

/// [`read_regular`] of at most [`MAX_READ`] bytes, failures naming the file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    read_regular(path, MAX_READ).map_err(|f| f.into_error(path))
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        )
    })
}

/// The directory of `path` ("." for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename, link or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io(dir, e))?;
    nix::unistd::fsync(f.as_fd()).map_err(|e| Error::io(dir, std::io::Error::from(e)))?;
    op();
    Ok(())
}

/// Creates `dir` and its missing parents with `mode` exactly (the umask does not apply),
/// fsyncing each parent that gained an entry. Returns the directories it created, outermost
/// first.
pub fn create_dirs(dir: &Path, mode: u32) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !crate::fsio::exists(d)? {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    missing.reverse();
    let mut made = Vec::new();
    for m in missing {
        match fs::DirBuilder::new().mode(mode).create(&m) {
            Ok(()) => {}
            // Another process made it meanwhile (two runs starting on a new PKI): fine, if a
            // directory; it is theirs, so its mode is left alone.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && m.is_dir() => continue,
            Err(e) => return Err(Error::io(&m, e)),
        }
        fs::set_permissions(&m, Permissions::from_mode(mode)).map_err(|e| Error::io(&m, e))?;
        op();
        sync_dir(parent(&m))?;
        made.push(m);
    }
    Ok(made)
}

/// Writes a small file atomically: a temp file beside it, fsync, rename over `path`, fsync of
/// the directory. For records outside a transaction (a held manifest's origin).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
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

/// Renames `from` to `to` unless `to` exists (atomically: renameat2 RENAME_NOREPLACE).
pub fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without RENAME_NOREPLACE: a hard link fails on an existing target too.
        Err(nix::errno::Errno::EINVAL) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Serde for paths that are not always UTF-8: a JSON string when the path is UTF-8, else
/// `{"bytes": [..]}`, so a journal or manifest never fails to record a path (and never
/// records a lossy one that names another file).
pub mod json_path {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes { bytes: Vec<u8> },
    }

    fn to_repr(p: &Path) -> Repr {
        match p.to_str() {
            Some(s) => Repr::Text(s.to_string()),
            None => Repr::Bytes {
                bytes: p.as_os_str().as_bytes().to_vec(),
            },
        }
    }

    fn from_repr(r: Repr) -> PathBuf {
        match r {
            Repr::Text(s) => PathBuf::from(s),
            Repr::Bytes { bytes } => PathBuf::from(OsString::from_vec(bytes)),
        }
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        to_repr(p).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Repr::deserialize(d).map(from_repr)
    }

    /// The same, for `Vec<PathBuf>`.
    pub mod vec {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
            v.iter()
                .map(|p| to_repr(p))
                .collect::<Vec<_>>()
                .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
            Ok(Vec::<Repr>::deserialize(d)?
                .into_iter()
                .map(from_repr)
                .collect())
        }
    }

    /// The same, for `Option<PathBuf>`.
    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
            v.as_deref().map(to_repr).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
            Ok(Option::<Repr>::deserialize(d)?.map(from_repr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn reads_are_bounded_and_regular_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a");
        fs::write(&f, "x").unwrap();
        assert_eq!(read(&f).unwrap(), b"x");
        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.starts_with("/dev/zero: not a regular file"), "{e}");
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read(&fifo).is_err(), "a FIFO is refused, not waited on");
        assert!(read(d.path()).is_err());
        let big = d.path().join("big");
        fs::File::create(&big)
            .unwrap()
            .set_len(MAX_READ + 1)
            .unwrap();
        assert!(read(&big).unwrap_err().to_string().contains("larger than"));
    }

    #[test]
    fn directories_get_their_mode_whatever_the_umask() {
        // The test process's umask (022 or stricter) would take bits off 0777.
        let d = tempfile::tempdir().unwrap();
        let made = create_dirs(&d.path().join("a/b"), 0o777).unwrap();
        assert_eq!(made.len(), 2);
        for p in ["a", "a/b"] {
            assert_eq!(
                fs::metadata(d.path().join(p)).unwrap().mode() & 0o777,
                0o777
            );
        }
    }

    #[test]
    fn noreplace_never_clobbers() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, "A").unwrap();
        fs::write(&b, "B").unwrap();
        assert!(rename_noreplace(&a, &b).is_err());
        assert_eq!(fs::read(&b).unwrap(), b"B");
        fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"A");
    }

    #[test]
    fn non_utf8_paths_round_trip_through_json() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct S {
            #[serde(with = "json_path")]
            p: PathBuf,
        }
        let weird = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff\xfe/pki"));
        let text = serde_json::to_string(&S { p: weird.clone() }).unwrap();
        let back: S = serde_json::from_str(&text).unwrap();
        assert_eq!(back.p, weird);
        let plain: S = serde_json::from_str(r#"{"p":"/etc/kubernetes"}"#).unwrap();
        assert_eq!(plain.p, PathBuf::from("/etc/kubernetes"));
    }
}
