//! Every certificate on a node, as the agent reports it: the kubeadm inventory, every
//! certificate of every bundle, every kubeconfig's embedded client certificate and CA, the
//! kubelet's client and serving certificates, and any extra files or directories.
//!
//! A file is read again only when its (device, inode, size, mtime, ctime) changed. Reading is
//! bounded: only regular files (never a FIFO or device, so nothing endless), at most
//! [`MAX_FILE`] bytes, at most [`MAX_DIR_ENTRIES`] names per directory, directories not
//! followed through symlinks. Whatever fails is reported per file with a stable reason; the
//! rest is still reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::crypto::cert::{Certificate, Name, decimal};
use crate::crypto::pem;
use crate::fsio::{ReadFailure, read_regular};
use crate::model::inventory;
use crate::model::kubeconfig::{EmbeddedKind, embedded_pems};
use crate::model::layout::Layout;
use crate::model::slot;

/// Largest file read (a CA bundle of a few thousand certificates fits).
pub const MAX_FILE: u64 = 4 << 20;
/// Most names read from one directory.
pub const MAX_DIR_ENTRIES: usize = 4096;

/// What to watch on a node.
#[derive(Clone, Debug)]
pub struct Watch {
    /// The cert dir (walked two levels deep: pki/ and pki/etcd/) and the kubeconfig dir.
    pub layout: Layout,
    /// The kubelet's certificate directory (/var/lib/kubelet/pki).
    pub kubelet_pki_dir: PathBuf,
    /// Extra files: certificates, bundles or kubeconfigs.
    pub files: Vec<PathBuf>,
    /// Extra directories (not recursive).
    pub dirs: Vec<PathBuf>,
}

/// Why a file yielded nothing (or less than all it holds). `reason()` is a stable label value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    NotFound,
    PermissionDenied,
    /// A directory, FIFO, socket or device.
    NotRegularFile,
    SymlinkLoop,
    TooLarge,
    /// A directory with more than [`MAX_DIR_ENTRIES`] names: only that many were looked at.
    TooManyFiles,
    Io(String),
    /// No PEM block at all.
    NotPem,
    /// A CERTIFICATE block that is not a certificate Go would read.
    InvalidCertificate(String),
    InvalidKubeconfig(String),
    /// PEM blocks, but none of them a certificate.
    NoCertificate,
}

impl ReadError {
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::NotFound => "not_found",
            ReadError::PermissionDenied => "permission_denied",
            ReadError::NotRegularFile => "not_regular_file",
            ReadError::SymlinkLoop => "symlink_loop",
            ReadError::TooLarge => "too_large",
            ReadError::TooManyFiles => "too_many_files",
            ReadError::Io(_) => "io",
            ReadError::NotPem => "not_pem",
            ReadError::InvalidCertificate(_) => "invalid_certificate",
            ReadError::InvalidKubeconfig(_) => "invalid_kubeconfig",
            ReadError::NoCertificate => "no_certificate",
        }
    }

    fn from_io(e: &std::io::Error) -> ReadError {
        match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            std::io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
            _ if e.raw_os_error() == Some(nix::libc::ELOOP) => ReadError::SymlinkLoop,
            _ => ReadError::Io(e.to_string()),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("no such file"),
            ReadError::PermissionDenied => f.write_str("permission denied"),
            ReadError::NotRegularFile => {
                f.write_str("not a regular file (a directory, FIFO, socket or device)")
            }
            ReadError::SymlinkLoop => f.write_str("too many levels of symbolic links"),
            ReadError::TooLarge => write!(f, "larger than {} MiB", MAX_FILE >> 20),
            ReadError::TooManyFiles => {
                write!(
                    f,
                    "more than {MAX_DIR_ENTRIES} entries; the rest were not read"
                )
            }
            ReadError::Io(e) => write!(f, "cannot read: {e}"),
            ReadError::NotPem => f.write_str("no PEM block"),
            ReadError::InvalidCertificate(e) => write!(f, "invalid certificate: {e}"),
            ReadError::InvalidKubeconfig(e) => write!(f, "invalid kubeconfig: {e}"),
            ReadError::NoCertificate => f.write_str("PEM, but no CERTIFICATE block"),
        }
    }
}

/// One certificate as read (what the metrics need, not its DER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// In a kubeconfig: which part embeds it, and that cluster's or user's name.
    pub embedded: Option<(EmbeddedKind, String)>,
    pub subject: Name,
    pub issuer: Name,
    /// Decimal, as Go's big.Int prints it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// basicConstraints says CA.
    pub is_ca: bool,
}

/// One file: the certificates read from it and, if something failed, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    pub path: PathBuf,
    pub certs: Vec<Seen>,
    pub error: Option<ReadError>,
}

/// What kubepki knows of a certificate beyond the file: its kubeadm name and role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// kubeadm's name ("apiserver", "admin.conf", "ca", "kubelet-client"); "" outside the
    /// inventory.
    pub name: String,
    pub ca: bool,
    /// Signed by (or, for a CA, is) a CA whose key is not on this node.
    pub externally_managed: bool,
    /// `certs renew` can renew it here: in kubeadm's list, its CA key present.
    pub renewable: bool,
}

/// The inventory's names for the files of a node, and their roles as of one scan.
#[derive(Clone, Debug, Default)]
struct Roles {
    by_path: HashMap<PathBuf, Role>,
}

impl Roles {
    fn of(layout: &Layout, kubelet_pki_dir: &Path) -> Roles {
        let mut by_path = HashMap::new();
        let mut external = BTreeMap::new();
        for ca in inventory::kubeadm_cas(true) {
            let has_cert = layout.ca_cert(ca).exists();
            let ext = has_cert && !layout.ca_key(ca).exists();
            external.insert(ca.id, (has_cert, ext));
            by_path.insert(
                layout.ca_cert(ca),
                Role {
                    name: ca.name.into(),
                    ca: true,
                    externally_managed: ext,
                    renewable: false,
                },
            );
        }
        let kubeadm: BTreeSet<&str> = slot::kubeadm_items(true).iter().map(|i| i.name()).collect();
        for item in slot::signable_items(true) {
            let (has_ca, ext) = external
                .get(&item.issuer())
                .copied()
                .unwrap_or((false, false));
            let role = Role {
                name: item.name().into(),
                ca: false,
                externally_managed: ext,
                renewable: has_ca && !ext && kubeadm.contains(item.name()),
            };
            for f in item.files(layout) {
                by_path.insert(f, role.clone());
            }
        }
        for (file, name) in [
            ("kubelet-client-current.pem", "kubelet-client"),
            ("kubelet-server-current.pem", "kubelet-serving"),
            ("kubelet.crt", "kubelet-serving"),
        ] {
            by_path.insert(
                kubelet_pki_dir.join(file),
                Role {
                    name: name.into(),
                    ..Role::default()
                },
            );
        }
        Roles { by_path }
    }
}

/// One scan's result: every file looked at, sorted by path.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub files: Vec<Arc<FileReport>>,
    roles: Roles,
}

impl Snapshot {
    /// kubepki's knowledge of `seen`, found in `file`.
    pub fn role(&self, file: &FileReport, seen: &Seen) -> Role {
        match self.roles.by_path.get(&file.path) {
            // A kubeconfig's embedded CA is a CA, whatever the file's role.
            Some(r) if matches!(seen.embedded, Some((EmbeddedKind::Cluster, _))) => Role {
                name: r.name.clone(),
                ca: true,
                externally_managed: r.externally_managed,
                renewable: false,
            },
            Some(r) => r.clone(),
            None => Role {
                ca: seen.is_ca,
                ..Role::default()
            },
        }
    }

    /// Every certificate with its file, in file order.
    pub fn certificates(&self) -> impl Iterator<Item = (&FileReport, &Seen)> {
        self.files
            .iter()
            .flat_map(|f| f.certs.iter().map(move |c| (f.as_ref(), c)))
    }

    pub fn errors(&self) -> impl Iterator<Item = (&Path, &ReadError)> {
        self.files
            .iter()
            .filter_map(|f| f.error.as_ref().map(|e| (f.path.as_path(), e)))
    }
}

/// A file's identity and version: when any of these changes, it is read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Keeps what it read, so that an unchanged file costs one stat.
#[derive(Default)]
pub struct Scanner {
    cache: HashMap<PathBuf, (Stamp, Arc<FileReport>)>,
    /// How many times a file was read and parsed (for tests and benchmarks).
    pub reads: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Certificates,
    Kubeconfig,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str().unwrap_or("");
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "crt" | "pem" | "cer" => Some(Kind::Certificates),
        "conf" | "kubeconfig" => Some(Kind::Kubeconfig),
        _ if name == "kubeconfig" => Some(Kind::Kubeconfig),
        _ => None,
    }
}

/// The kubelet's dated copies (`kubelet-client-2026-01-01-00-00-00.pem`): the `-current`
/// symlink names the one in use; the others are history.
fn kubelet_history(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ["kubelet-client-", "kubelet-server-"].iter().any(|p| {
        name.strip_prefix(p)
            .and_then(|r| r.strip_suffix(".pem"))
            .is_some_and(|r| r != "current" && r.starts_with(|c: char| c.is_ascii_digit()))
    })
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// Looks at every watched file now; reads only those that changed since the last scan.
    pub fn scan(&mut self, watch: &Watch) -> Snapshot {
        let mut wanted: BTreeMap<PathBuf, Option<ReadError>> = BTreeMap::new();
        let roles = Roles::of(&watch.layout, &watch.kubelet_pki_dir);
        // Inventory files are looked for by name; absent ones are not errors (workers have
        // few of them).
        for p in roles.by_path.keys() {
            if kind_of(p).is_some() && std::fs::symlink_metadata(p).is_ok() {
                wanted.insert(p.clone(), None);
            }
        }
        let mut dir_errors = Vec::new();
        let l = &watch.layout;
        walk(&l.cert_dir, 2, false, &mut wanted, &mut dir_errors);
        walk(&l.kubeconfig_dir, 1, false, &mut wanted, &mut dir_errors);
        walk(
            &watch.kubelet_pki_dir,
            1,
            false,
            &mut wanted,
            &mut dir_errors,
        );
        for d in &watch.dirs {
            walk(d, 1, true, &mut wanted, &mut dir_errors);
        }
        for f in &watch.files {
            wanted.entry(f.clone()).or_insert(None);
        }
        wanted.retain(|p, _| !kubelet_history(p));

        let mut files = Vec::with_capacity(wanted.len() + dir_errors.len());
        for path in wanted.keys() {
            files.push(self.file(path, watch));
        }
        self.cache.retain(|p, _| wanted.contains_key(p));
        for (path, error) in dir_errors {
            files.push(Arc::new(FileReport {
                path,
                certs: Vec::new(),
                error: Some(error),
            }));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Snapshot { files, roles }
    }

    fn file(&mut self, path: &Path, watch: &Watch) -> Arc<FileReport> {
        let fail = |e: ReadError| {
            Arc::new(FileReport {
                path: path.to_path_buf(),
                certs: Vec::new(),
                error: Some(e),
            })
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.cache.remove(path);
                return fail(ReadError::from_io(&e));
            }
        };
        if !meta.is_file() {
            self.cache.remove(path);
            return fail(ReadError::NotRegularFile);
        }
        let stamp = Stamp::of(&meta);
        if let Some((s, r)) = self.cache.get(path)
            && *s == stamp
        {
            return r.clone();
        }
        self.reads += 1;
        let kind = if watch.layout.kubeconfig_dir.join("kubelet.conf") == path {
            Kind::Kubeconfig
        } else {
            kind_of(path).unwrap_or(Kind::Certificates)
        };
        let report = Arc::new(match read_regular(path, MAX_FILE) {
            Err(ReadFailure::Io(e)) => FileReport {
                path: path.to_path_buf(),
                certs: Vec::new(),
                error: Some(ReadError::from_io(&e)),
            },
            Err(ReadFailure::NotRegular) => FileReport {
                path: path.to_path_buf(),
                certs: Vec::new(),
                error: Some(ReadError::NotRegularFile),
            },
            Err(ReadFailure::TooLarge(_)) => FileReport {
                path: path.to_path_buf(),
                certs: Vec::new(),
                error: Some(ReadError::TooLarge),
            },
            Ok(bytes) => parse(path, &bytes, kind),
        });
        self.cache
            .insert(path.to_path_buf(), (stamp, report.clone()));
        report
    }
}

/// Adds the certificate and kubeconfig files under `dir` (down to `depth` levels, never
/// through a symlinked directory) to `out`. A missing directory is an error only if `explicit`.
fn walk(
    dir: &Path,
    depth: u32,
    explicit: bool,
    out: &mut BTreeMap<PathBuf, Option<ReadError>>,
    errors: &mut Vec<(PathBuf, ReadError)>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return,
        Err(e) => {
            errors.push((dir.to_path_buf(), ReadError::from_io(&e)));
            return;
        }
    };
    for (n, entry) in entries.enumerate() {
        if n == MAX_DIR_ENTRIES {
            errors.push((dir.to_path_buf(), ReadError::TooManyFiles));
            break;
        }
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if depth > 1 {
                walk(&path, depth - 1, explicit, out, errors);
            }
        } else if kind_of(&path).is_some() {
            out.entry(path).or_insert(None);
        }
    }
}

fn parse(path: &Path, bytes: &[u8], kind: Kind) -> FileReport {
    let (certs, error) = match kind {
        Kind::Certificates => certificates(bytes, None),
        Kind::Kubeconfig => match std::str::from_utf8(bytes) {
            Err(_) => (
                Vec::new(),
                Some(ReadError::InvalidKubeconfig("not UTF-8 text".into())),
            ),
            Ok(text) => match embedded_pems(text, path) {
                Err(e) => (
                    Vec::new(),
                    Some(ReadError::InvalidKubeconfig(
                        e.to_string()
                            .trim_start_matches(&format!("{}: ", path.display()))
                            .to_string(),
                    )),
                ),
                Ok(parts) => {
                    let mut all = Vec::new();
                    let mut first_error = None;
                    for (k, name, pem) in parts {
                        let (c, e) = certificates(&pem, Some((k, name)));
                        all.extend(c);
                        first_error = first_error.or(e);
                    }
                    (all, first_error)
                }
            },
        },
    };
    FileReport {
        path: path.to_path_buf(),
        certs,
        error,
    }
}

/// Every CERTIFICATE block, found as Go's pem.Decode finds blocks (text around them is
/// skipped, other blocks such as a private key are passed over). The certificates that parse
/// are kept even when another does not.
fn certificates(
    bytes: &[u8],
    embedded: Option<(EmbeddedKind, String)>,
) -> (Vec<Seen>, Option<ReadError>) {
    let mut from = 0;
    let mut any_block = false;
    let mut certs = Vec::new();
    let mut error = None;
    while let Some(block) = pem::decode(bytes, from) {
        from = block.end.max(from + 1);
        any_block = true;
        if block.label != "CERTIFICATE" {
            continue;
        }
        match Certificate::from_der(&block.der) {
            Ok(c) => certs.push(Seen {
                embedded: embedded.clone(),
                serial: decimal(&c.serial),
                not_before: c.not_before,
                not_after: c.not_after,
                is_ca: c.is_ca,
                subject: c.subject,
                issuer: c.issuer,
            }),
            Err(e) => {
                error.get_or_insert(ReadError::InvalidCertificate(e.to_string()));
            }
        }
    }
    if error.is_none() && certs.is_empty() {
        error = Some(if any_block {
            ReadError::NoCertificate
        } else {
            ReadError::NotPem
        });
    }
    (certs, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_print_in_decimal_as_go_does() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(decimal(&[0xff; 8]), u64::MAX.to_string());
        assert_eq!(
            decimal(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0]),
            "18446744073709551616"
        );
    }

    #[test]
    fn only_the_kubelets_dated_copies_are_history() {
        for (name, history) in [
            ("kubelet-client-2026-11-30-10-00-00.pem", true),
            ("kubelet-server-2026-11-30-10-00-00.pem", true),
            ("kubelet-client-current.pem", false),
            ("kubelet.crt", false),
            ("kubelet-client-other.pem", false),
        ] {
            assert_eq!(kubelet_history(Path::new(name)), history, "{name}");
        }
    }

    #[test]
    fn text_between_blocks_is_skipped_as_go_skips_it() {
        use crate::crypto::issuer::Issuer;
        use crate::crypto::key::{KeyAlgorithm, PrivateKey};
        use crate::model::inventory::CaId;
        use crate::model::params::ClusterParams;
        let t = ClusterParams::ca_template(inventory::ca(CaId::Ca));
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let now = OffsetDateTime::now_utc();
        let year = std::time::Duration::from_secs(365 * 86400);
        let ca = Issuer::new_root(&t, key, now, year, Path::new("c"), Path::new("k")).unwrap();
        let pem = ca.cert().to_pem();
        let text = format!("# a comment\n{pem}garbage\n{pem}");
        let (certs, err) = certificates(text.as_bytes(), None);
        assert_eq!((certs.len(), err), (2, None));
        assert_eq!(certificates(b"junk", None).1, Some(ReadError::NotPem));
    }
}
