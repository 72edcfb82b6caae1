//! Where each inventory entry lives on disk, and what each file kubepki manages holds.

use std::io;
use std::path::{Path, PathBuf};

use crate::crypto::key::PrivateKey;
use crate::error::{Error, KubeconfigProblem, Result};
use crate::model::inventory::{CaSpec, KubeconfigSpec, LeafSpec, SA_KEY, SA_PUB};

/// What a file kubepki manages holds, and so its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Certificate,
    PrivateKey,
    PublicKey,
    Kubeconfig,
    /// kubepki's record of a CA rotation in progress.
    RotationState,
    /// A static pod manifest (the controller-manager's, whose signer flags a rotation of
    /// `ca` changes).
    Manifest,
}

impl FileKind {
    pub fn mode(self) -> u32 {
        use crate::fsio::{CERT_MODE, KEY_MODE, KUBECONFIG_MODE};
        match self {
            FileKind::Certificate | FileKind::PublicKey => CERT_MODE,
            FileKind::PrivateKey | FileKind::RotationState | FileKind::Manifest => KEY_MODE,
            FileKind::Kubeconfig => KUBECONFIG_MODE,
        }
    }

    /// Checks that `bytes` is what this kind of file holds (as kubepki and Go read it).
    pub fn check(self, path: &Path, bytes: &[u8]) -> Result<()> {
        match self {
            FileKind::Certificate => {
                crate::crypto::cert::Certificate::from_pem_chain(bytes).map_err(|reason| {
                    Error::BadCertificate {
                        path: path.to_path_buf(),
                        reason,
                    }
                })?;
            }
            FileKind::PrivateKey => {
                PrivateKey::from_pem(bytes).map_err(|reason| Error::BadKey {
                    path: path.to_path_buf(),
                    reason,
                })?;
            }
            FileKind::PublicKey => {
                crate::crypto::key::public_key_from_pem(bytes).map_err(|reason| {
                    Error::BadPublicKey {
                        path: path.to_path_buf(),
                        reason,
                    }
                })?;
            }
            FileKind::Kubeconfig => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| Error::kubeconfig(path, KubeconfigProblem::NotUtf8))?;
                crate::model::kubeconfig::parse_credentials(text, path)?;
            }
            FileKind::RotationState => {
                // JSON; what it says is checked by the rotation that reads it.
                serde_json::from_slice::<serde_json::Value>(bytes)
                    .map_err(|e| Error::io(path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
            }
            FileKind::Manifest => {
                std::str::from_utf8(bytes).map_err(|_| {
                    Error::io(
                        path,
                        io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// A file to write: where, what, and what it holds (so its mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub kind: FileKind,
}

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
    /// During a rotation: the other CA certificate of the pair (the new one in the trust
    /// phase, the old one in the switch phase).
    pub fn rotation_cert(&self, ca: &CaSpec) -> PathBuf {
        self.cert_dir.join(format!("{}.rotation.crt", ca.base))
    }
    /// The key of [`Layout::rotation_cert`].
    pub fn rotation_key(&self, ca: &CaSpec) -> PathBuf {
        self.cert_dir.join(format!("{}.rotation.key", ca.base))
    }
    /// During a rotation of the service-account key: the other private key of the pair.
    pub fn sa_rotation_key(&self) -> PathBuf {
        self.cert_dir.join("sa.rotation.key")
    }
    /// The controller-manager's signing certificate during a rotation of `ca` (its
    /// `--cluster-signing-cert-file` must hold exactly one certificate, `ca.crt` then holds two).
    pub fn signer_cert(&self) -> PathBuf {
        self.cert_dir.join("ca-signer.crt")
    }
    pub fn signer_key(&self) -> PathBuf {
        self.cert_dir.join("ca-signer.key")
    }
    /// The record of rotations in progress.
    pub fn rotation_state(&self) -> PathBuf {
        self.cert_dir.join("kubepki-rotation.json")
    }
    /// The controller-manager's static pod manifest.
    pub fn controller_manager_manifest(&self) -> PathBuf {
        self.kubeconfig_dir
            .join("manifests")
            .join("kube-controller-manager.yaml")
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

    /// The same layout with each directory as the file system names it (absolute, symbolic
    /// links resolved) when it exists, else absolute: two spellings of one directory (a link,
    /// `a/../a`, another working directory) give one layout, so a journal or backup written
    /// through one spelling is recognised through another.
    pub fn resolved(&self) -> Result<Layout> {
        let res = |p: &Path| match std::fs::canonicalize(p) {
            Ok(c) => Ok(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::path::absolute(p).map_err(|e| Error::io(p, e))
            }
            Err(e) => Err(Error::io(p, e)),
        };
        Ok(Layout {
            cert_dir: res(&self.cert_dir)?,
            kubeconfig_dir: res(&self.kubeconfig_dir)?,
        })
    }

    /// Every file kubepki manages in this PKI, with what it holds.
    pub fn managed_files(&self) -> Vec<(PathBuf, FileKind)> {
        use FileKind::*;
        let mut v = Vec::new();
        for ca in crate::model::inventory::CAS {
            v.push((self.ca_cert(ca), Certificate));
            v.push((self.ca_key(ca), PrivateKey));
            v.push((self.rotation_cert(ca), Certificate));
            v.push((self.rotation_key(ca), PrivateKey));
        }
        v.push((self.signer_cert(), Certificate));
        v.push((self.signer_key(), PrivateKey));
        v.push((self.sa_rotation_key(), PrivateKey));
        v.push((self.rotation_state(), RotationState));
        v.push((self.controller_manager_manifest(), Manifest));
        for l in crate::model::inventory::LEAVES {
            v.push((self.leaf_cert(l), Certificate));
            v.push((self.leaf_key(l), PrivateKey));
        }
        v.push((self.sa_key(), PrivateKey));
        v.push((self.sa_pub(), PublicKey));
        for k in crate::model::inventory::KUBECONFIGS {
            v.push((self.kubeconfig(k), Kubeconfig));
        }
        v
    }

    /// The file holding the key of the certificate in `cert`, or the certificate of the key in
    /// `key` (the other half of a pair), if `path` is one half of a pair.
    pub fn pair_of(&self, path: &Path) -> Option<PathBuf> {
        let cas = crate::model::inventory::CAS
            .iter()
            .flat_map(|c| {
                [
                    (self.ca_cert(c), self.ca_key(c)),
                    (self.rotation_cert(c), self.rotation_key(c)),
                ]
            })
            .chain([(self.signer_cert(), self.signer_key())]);
        let leaves = crate::model::inventory::LEAVES
            .iter()
            .map(|l| (self.leaf_cert(l), self.leaf_key(l)));
        cas.chain(leaves).find_map(|(c, k)| {
            if c == path {
                Some(k)
            } else if k == path {
                Some(c)
            } else {
                None
            }
        })
    }

    /// Whether a transaction may remove `path`: only the files a CA rotation creates and drops
    /// (the other half of a pair, the controller-manager's signer files, the rotation record),
    /// never a CA, leaf, key or kubeconfig a cluster runs on.
    pub fn removable(&self, path: &Path) -> bool {
        let mut v = vec![
            self.signer_cert(),
            self.signer_key(),
            self.sa_rotation_key(),
            self.rotation_state(),
        ];
        for ca in crate::model::inventory::CAS {
            v.push(self.rotation_cert(ca));
            v.push(self.rotation_key(ca));
        }
        v.iter().any(|p| p == path)
    }

    /// Whether `path` (absolute, like this layout) is one of [`Layout::managed_files`].
    pub fn manages(&self, path: &Path) -> bool {
        self.managed_files().iter().any(|(p, _)| p == path)
    }
}
