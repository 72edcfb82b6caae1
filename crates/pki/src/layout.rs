//! Where each inventory entry lives on disk, and reading those files with errors that name them.

use std::io;
use std::path::{Path, PathBuf};

use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::inventory::{CaSpec, Item, KubeconfigSpec, LeafSpec, SA_KEY, SA_PUB};
use crate::key::PrivateKey;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub cert_dir: PathBuf,
    pub kubeconfig_dir: PathBuf,
}

impl Layout {
    pub fn new(cert_dir: impl Into<PathBuf>, kubeconfig_dir: impl Into<PathBuf>) -> Self {
        Layout {
            cert_dir: cert_dir.into(),
            kubeconfig_dir: kubeconfig_dir.into(),
        }
    }

    pub fn ca_cert(&self, ca: &CaSpec) -> PathBuf {
        self.cert_dir.join(format!("{}.crt", ca.base))
    }
    pub fn ca_key(&self, ca: &CaSpec) -> PathBuf {
        self.cert_dir.join(format!("{}.key", ca.base))
    }
    pub fn leaf_cert(&self, leaf: &LeafSpec) -> PathBuf {
        self.cert_dir.join(format!("{}.crt", leaf.base))
    }
    pub fn leaf_key(&self, leaf: &LeafSpec) -> PathBuf {
        self.cert_dir.join(format!("{}.key", leaf.base))
    }
    pub fn kubeconfig(&self, kc: &KubeconfigSpec) -> PathBuf {
        self.kubeconfig_dir.join(kc.name)
    }
    pub fn sa_key(&self) -> PathBuf {
        self.cert_dir.join(SA_KEY)
    }
    pub fn sa_pub(&self) -> PathBuf {
        self.cert_dir.join(SA_PUB)
    }
    /// The same layout with absolute paths (relative ones resolved against the working
    /// directory now, so that journals and backups name the same files from anywhere).
    pub fn absolute(&self) -> Result<Layout> {
        let abs = |p: &Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
        Ok(Layout {
            cert_dir: abs(&self.cert_dir)?,
            kubeconfig_dir: abs(&self.kubeconfig_dir)?,
        })
    }

    /// Every file kubepki manages in this PKI, with the mode kubepki gives it.
    pub fn managed_files(&self) -> Vec<(PathBuf, u32)> {
        use crate::fsio::{CERT_MODE, KEY_MODE, KUBECONFIG_MODE};
        let mut v = Vec::new();
        for ca in crate::inventory::CAS {
            v.push((self.ca_cert(ca), CERT_MODE));
            v.push((self.ca_key(ca), KEY_MODE));
        }
        for l in crate::inventory::LEAVES {
            v.push((self.leaf_cert(l), CERT_MODE));
            v.push((self.leaf_key(l), KEY_MODE));
        }
        v.push((self.sa_key(), KEY_MODE));
        v.push((self.sa_pub(), CERT_MODE));
        for k in crate::inventory::KUBECONFIGS {
            v.push((self.kubeconfig(k), KUBECONFIG_MODE));
        }
        v
    }

    /// The file whose certificate a kubeadm table row reports.
    pub fn item_file(&self, item: Item) -> PathBuf {
        match item {
            Item::Leaf(l) => self.leaf_cert(l),
            Item::Kubeconfig(k) => self.kubeconfig(k),
        }
    }
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

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    if !exists(path)? {
        return Ok(None);
    }
    crate::fsio::read(path).map(Some)
}

/// Reads a certificate file (leaf first if it holds a chain); `None` when absent.
pub fn read_cert_chain(path: &Path) -> Result<Option<Vec<Certificate>>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    Certificate::from_pem_chain(&bytes)
        .map(Some)
        .map_err(|reason| Error::BadCertificate {
            path: path.to_path_buf(),
            reason,
        })
}

pub fn read_cert(path: &Path) -> Result<Option<Certificate>> {
    Ok(read_cert_chain(path)?.map(|mut chain| chain.swap_remove(0)))
}

/// The certificate of a file that holds a certificate and its key together (the kubelet's
/// rotated pair); `None` when absent.
pub fn read_cert_with_key(path: &Path) -> Result<Option<Certificate>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    Certificate::from_pem_with_key(&bytes)
        .map(|mut chain| Some(chain.swap_remove(0)))
        .map_err(|reason| Error::BadCertificate {
            path: path.to_path_buf(),
            reason,
        })
}

/// A CA file as kubeconfigs embed it (`certificate-authority-data`): its certificates,
/// re-encoded, and nothing else from the file.
pub fn read_ca_bundle_pem(path: &Path) -> Result<String> {
    let chain = read_cert_chain(path)?.ok_or_else(|| {
        Error::io(
            path,
            io::Error::new(io::ErrorKind::NotFound, "CA certificate not found"),
        )
    })?;
    Ok(chain.iter().map(Certificate::to_pem).collect())
}

pub fn read_key(path: &Path) -> Result<Option<PrivateKey>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    PrivateKey::from_pem(&bytes)
        .map(Some)
        .map_err(|reason| Error::BadKey {
            path: path.to_path_buf(),
            reason,
        })
}
