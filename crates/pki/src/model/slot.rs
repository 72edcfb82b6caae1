//! Credential slots: a leaf's certificate and key files, or a kubeconfig's embedded client
//! credentials, behind one interface (as kubeadm's `phases/certs/renewal/readwriter.go` puts
//! certificate files and kubeconfigs). An item knows its files, how to read its certificate,
//! check its key, and what to write for new credentials; what it is (issuer, usages, SANs,
//! who reads it) is the inventory's data. Operations walk items and never ask which kind
//! they hold.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::crypto::cert::Certificate;
use crate::crypto::files;
use crate::crypto::issue::CertTemplate;
use crate::crypto::key::PrivateKey;
use crate::error::{Error, KubeconfigProblem, ParamError, Result};
use crate::model::inventory::{
    CaId, KUBECONFIGS, KubeconfigSpec, LEAVES, LeafSpec, ReadBy, SanRule, Usage,
};
use crate::model::kubeconfig::{self, Kubeconfig, Source};
use crate::model::layout::{FileKind, Layout, NewFile};
use crate::model::params::ClusterParams;

/// A row of kubeadm's certificate table: a leaf certificate or a kubeconfig's client
/// certificate.
pub type Item = &'static dyn Slot;

/// Where the external-CA workflow keeps an item's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrFiles {
    /// The new key (for a kubeconfig: a partial kubeconfig holding it).
    pub key: PathBuf,
    pub csr: PathBuf,
    /// Where the CA puts the certificate it signed.
    pub crt: PathBuf,
}

impl CsrFiles {
    /// `key`, `<stem>.csr` and `<stem>.crt` in `dir`.
    fn in_dir(dir: &Path, key: String, stem: &str) -> CsrFiles {
        CsrFiles {
            key: dir.join(key),
            csr: dir.join(format!("{stem}.csr")),
            crt: dir.join(format!("{stem}.crt")),
        }
    }
}

/// New credentials as PEM: a certificate, its key, and the certificates of the CA that signed
/// it (what a kubeconfig embeds as `certificate-authority-data`).
#[derive(Clone, Copy, Debug)]
pub struct NewPems<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub ca: &'a str,
}

/// One credential slot of the inventory. See the module doc.
pub trait Slot: fmt::Debug + Sync {
    /// The name kubeadm prints.
    fn name(&self) -> &'static str;
    fn issuer(&self) -> CaId;
    fn usage(&self) -> Usage;
    /// kubeadm's SAN rule, and so the group of extra SANs that applies.
    fn san_rule(&self) -> SanRule {
        SanRule::None
    }
    fn read_by(&self) -> ReadBy;
    /// Whether the slot exists only from Kubernetes 1.29 (super-admin.conf).
    fn since_1_29(&self) -> bool {
        false
    }
    /// What a new certificate for this slot holds, with `params`.
    fn template(&self, params: &ClusterParams) -> Result<CertTemplate, ParamError>;

    /// The files holding the credentials, the one with the certificate first.
    fn files(&self, layout: &Layout) -> Vec<PathBuf>;
    /// The certificate (the first of a chain); `None` when its file is absent.
    fn read_cert(&self, layout: &Layout) -> Result<Option<Certificate>>;
    /// The private key is present, readable and `cert`'s.
    fn check_key(&self, layout: &Layout, cert: &Certificate) -> Result<()>;
    /// Whether the credentials are the kubelet's rotating certificate files, which the
    /// kubelet renews (kubelet.conf after bootstrap), rather than credentials kubepki writes.
    fn rotated_by_kubelet(&self, _layout: &Layout) -> Result<bool> {
        Ok(false)
    }
    /// The files for new credentials.
    fn new_files(&self, layout: &Layout, params: &ClusterParams, new: NewPems) -> Vec<NewFile>;
    /// The files with renewed credentials, everything else in them kept.
    fn renewed_files(&self, layout: &Layout, new: NewPems) -> Result<Vec<NewFile>>;

    /// Where `generate-csr` writes the key and CSR and the CA returns the certificate: the
    /// slot's own directory, or `csr_dir`.
    fn csr_files(&self, layout: &Layout, csr_dir: Option<&Path>) -> CsrFiles;
    /// The file `at` ([`CsrFiles::key`]) that holds the new key beside its CSR for the
    /// subject `cn`.
    fn csr_key_file(&self, at: &Path, params: &ClusterParams, cn: &str, key_pem: &str) -> NewFile;
    /// The key (PEM) in a file [`Slot::csr_key_file`] wrote.
    fn read_csr_key(&self, key_file: &Path) -> Result<Vec<u8>>;
    /// The files that install a certificate the CA returned, for the key in the file `key`.
    fn imported_files(&self, layout: &Layout, key: &Path, new: NewPems) -> Result<Vec<NewFile>>;
}

fn new_file(path: PathBuf, contents: impl Into<Vec<u8>>, kind: FileKind) -> NewFile {
    NewFile {
        path,
        contents: contents.into(),
        kind,
    }
}

impl LeafSpec {
    fn pair(&self, layout: &Layout, new: NewPems) -> Vec<NewFile> {
        vec![
            new_file(layout.leaf_cert(self), new.cert, FileKind::Certificate),
            new_file(layout.leaf_key(self), new.key, FileKind::PrivateKey),
        ]
    }
}

/// A `<base>.crt` and `<base>.key` in the cert dir.
impl Slot for LeafSpec {
    fn name(&self) -> &'static str {
        self.name
    }
    fn issuer(&self) -> CaId {
        self.issuer
    }
    fn usage(&self) -> Usage {
        self.usage
    }
    fn san_rule(&self) -> SanRule {
        self.sans
    }
    fn read_by(&self) -> ReadBy {
        self.read_by
    }
    fn template(&self, params: &ClusterParams) -> Result<CertTemplate, ParamError> {
        params.leaf_template(self)
    }

    fn files(&self, layout: &Layout) -> Vec<PathBuf> {
        vec![layout.leaf_cert(self), layout.leaf_key(self)]
    }
    fn read_cert(&self, layout: &Layout) -> Result<Option<Certificate>> {
        files::read_cert(&layout.leaf_cert(self))
    }
    fn check_key(&self, layout: &Layout, cert: &Certificate) -> Result<()> {
        let (crt, key) = (layout.leaf_cert(self), layout.leaf_key(self));
        match files::read_key(&key)? {
            None => Err(Error::not_found(
                key,
                format!("not found, though {} exists", crt.display()),
            )),
            Some(k) if !k.matches_public_key(cert.public_key_der()) => {
                Err(Error::KeyMismatch { cert: crt, key })
            }
            Some(_) => Ok(()),
        }
    }
    fn new_files(&self, layout: &Layout, _: &ClusterParams, new: NewPems) -> Vec<NewFile> {
        self.pair(layout, new)
    }
    fn renewed_files(&self, layout: &Layout, new: NewPems) -> Result<Vec<NewFile>> {
        Ok(self.pair(layout, new))
    }

    fn csr_files(&self, layout: &Layout, csr_dir: Option<&Path>) -> CsrFiles {
        let dir = csr_dir.unwrap_or(&layout.cert_dir);
        CsrFiles::in_dir(dir, format!("{}.key", self.base), self.base)
    }
    fn csr_key_file(&self, at: &Path, _: &ClusterParams, _: &str, key_pem: &str) -> NewFile {
        new_file(at.to_path_buf(), key_pem, FileKind::PrivateKey)
    }
    fn read_csr_key(&self, key_file: &Path) -> Result<Vec<u8>> {
        crate::fsio::read(key_file)
    }
    fn imported_files(&self, layout: &Layout, key: &Path, new: NewPems) -> Result<Vec<NewFile>> {
        let mut files = self.pair(layout, new);
        // A key generate-csr wrote in place stays as it is.
        files.retain(|f| f.path != key);
        Ok(files)
    }
}

/// A kubeconfig in the kubeconfig dir, its client certificate and key embedded, signed by
/// the cluster CA.
impl Slot for KubeconfigSpec {
    fn name(&self) -> &'static str {
        self.name
    }
    fn issuer(&self) -> CaId {
        CaId::Ca
    }
    fn usage(&self) -> Usage {
        Usage::Client
    }
    fn read_by(&self) -> ReadBy {
        self.read_by
    }
    fn since_1_29(&self) -> bool {
        self.since_1_29
    }
    fn template(&self, params: &ClusterParams) -> Result<CertTemplate, ParamError> {
        Ok(params.kubeconfig_template(self))
    }

    fn files(&self, layout: &Layout) -> Vec<PathBuf> {
        vec![layout.kubeconfig(self)]
    }
    fn read_cert(&self, layout: &Layout) -> Result<Option<Certificate>> {
        let path = layout.kubeconfig(self);
        if !crate::fsio::exists(&path)? {
            return Ok(None);
        }
        let creds = kubeconfig::read_credentials(&path)?;
        let chain = creds
            .client_chain()
            .map_err(|e| Error::kubeconfig(&path, KubeconfigProblem::ClientCert(e)))?;
        Ok(chain.into_iter().next())
    }
    fn check_key(&self, layout: &Layout, cert: &Certificate) -> Result<()> {
        let path = layout.kubeconfig(self);
        let creds = kubeconfig::read_credentials(&path)?;
        let err = |problem| Error::kubeconfig(&path, problem);
        let pem = creds
            .key_pem
            .ok_or_else(|| err(KubeconfigProblem::CertWithoutKey))?;
        let key =
            PrivateKey::from_pem(&pem).map_err(|e| err(KubeconfigProblem::InvalidClientKey(e)))?;
        if key.matches_public_key(cert.public_key_der()) {
            Ok(())
        } else {
            Err(err(KubeconfigProblem::KeyMismatch))
        }
    }
    fn rotated_by_kubelet(&self, layout: &Layout) -> Result<bool> {
        let path = layout.kubeconfig(self);
        Ok(!self.kubeadm_managed
            && crate::fsio::exists(&path)?
            && kubeconfig::read_credentials(&path).is_ok_and(|c| c.cert_source != Source::Embedded))
    }
    fn new_files(&self, layout: &Layout, params: &ClusterParams, new: NewPems) -> Vec<NewFile> {
        let yaml = Kubeconfig::embedded(
            &params.cluster_name,
            &params.server_url(self.server),
            new.ca,
            &params.common_name(self.common_name),
            new.cert,
            new.key,
        )
        .to_yaml();
        vec![new_file(
            layout.kubeconfig(self),
            yaml,
            FileKind::Kubeconfig,
        )]
    }
    fn renewed_files(&self, layout: &Layout, new: NewPems) -> Result<Vec<NewFile>> {
        let path = layout.kubeconfig(self);
        let text = crate::fsio::read_to_string(&path)?;
        let yaml = kubeconfig::replace_credentials(&text, &path, new.cert, new.key, new.ca)?;
        Ok(vec![new_file(path, yaml, FileKind::Kubeconfig)])
    }

    fn csr_files(&self, layout: &Layout, csr_dir: Option<&Path>) -> CsrFiles {
        let dir = csr_dir.unwrap_or(&layout.kubeconfig_dir);
        CsrFiles::in_dir(dir, self.name.into(), self.name)
    }
    fn csr_key_file(&self, at: &Path, params: &ClusterParams, cn: &str, key_pem: &str) -> NewFile {
        let server = params.server_url(self.server);
        let yaml = Kubeconfig::key_only(&params.cluster_name, &server, cn, key_pem).to_yaml();
        new_file(at.to_path_buf(), yaml, FileKind::Kubeconfig)
    }
    fn read_csr_key(&self, key_file: &Path) -> Result<Vec<u8>> {
        kubeconfig::read_client_key(key_file)
    }
    fn imported_files(&self, layout: &Layout, key: &Path, new: NewPems) -> Result<Vec<NewFile>> {
        let text = crate::fsio::read_to_string(key)?;
        let full = kubeconfig::update_credentials(&text, key, new.cert, new.key, new.ca, true)?;
        Ok(vec![new_file(
            layout.kubeconfig(self),
            full,
            FileKind::Kubeconfig,
        )])
    }
}

/// kubeadm's certificate list (what `check-expiration` and `renew all` cover), sorted by name
/// as kubeadm prints it. Etcd certificates only with local etcd; not kubelet.conf.
pub fn kubeadm_items(local_etcd: bool) -> Vec<Item> {
    let mut items: Vec<Item> = LEAVES
        .iter()
        .filter(|l| local_etcd || !l.local_etcd_only)
        .map(|l| l as Item)
        .chain(
            KUBECONFIGS
                .iter()
                .filter(|k| k.kubeadm_managed)
                .map(|k| k as Item),
        )
        .collect();
    items.sort_by_key(|i| i.name());
    items
}

/// Every item a CA signs here: kubeadm's list, then kubelet.conf (what `renew` and the
/// external CA workflow accept by name).
pub fn signable_items(local_etcd: bool) -> Vec<Item> {
    let mut v = kubeadm_items(local_etcd);
    v.extend(
        KUBECONFIGS
            .iter()
            .filter(|k| !k.kubeadm_managed)
            .map(|k| k as Item),
    );
    v
}

/// The items `names` names among `among`, in order; an unknown name is an error that lists
/// the known ones.
pub fn named(names: &[String], among: &[Item]) -> Result<Vec<Item>> {
    names
        .iter()
        .map(|n| {
            among
                .iter()
                .copied()
                .find(|i| i.name() == n)
                .ok_or_else(|| {
                    Error::Param(ParamError::UnknownCertificate {
                        given: n.clone(),
                        known: among.iter().map(|i| i.name()).collect(),
                    })
                })
        })
        .collect()
}

/// The item one of whose files is `path` (named as `layout` names it).
pub fn owner_of(layout: &Layout, path: &Path) -> Option<Item> {
    LEAVES
        .iter()
        .map(|l| l as Item)
        .chain(KUBECONFIGS.iter().map(|k| k as Item))
        .find(|i| i.files(layout).iter().any(|f| f == path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::issuer::Issuer;
    use crate::crypto::key::KeyAlgorithm;
    use crate::model::inventory::{self, Component};
    use std::time::Duration;
    use time::macros::datetime;

    const NOW: time::OffsetDateTime = datetime!(2026-11-23 12:00 UTC);
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    #[test]
    fn kubeadm_order_and_names() {
        let names: Vec<_> = kubeadm_items(true).iter().map(|i| i.name()).collect();
        assert_eq!(
            names,
            [
                "admin.conf",
                "apiserver",
                "apiserver-etcd-client",
                "apiserver-kubelet-client",
                "controller-manager.conf",
                "etcd-healthcheck-client",
                "etcd-peer",
                "etcd-server",
                "front-proxy-client",
                "scheduler.conf",
                "super-admin.conf"
            ]
        );
        assert_eq!(kubeadm_items(false).len(), 7);
        let signable = signable_items(false);
        assert_eq!(signable.last().unwrap().name(), "kubelet.conf");
        let got = named(&["kubelet.conf".into(), "apiserver".into()], &signable).unwrap();
        assert_eq!(got[0].name(), "kubelet.conf");
        assert_eq!(got[1].issuer(), CaId::Ca);
        let e = named(&["etcd-peer".into()], &signable)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "unknown certificate \"etcd-peer\"; expected one of: all, admin.conf, apiserver,"
            ),
            "{e}"
        );
    }

    /// What the inventory says about each item, through the slot: readers, SAN groups, usages.
    #[test]
    fn inventory_data_through_the_slot() {
        let by_name = |n: &str| *signable_items(true).iter().find(|i| i.name() == n).unwrap();
        let restart = |n: &str| by_name(n).read_by().restart();
        assert_eq!(
            restart("apiserver-etcd-client"),
            Some(Component::KubeApiserver)
        );
        assert_eq!(restart("scheduler.conf"), Some(Component::KubeScheduler));
        assert_eq!(restart("kubelet.conf"), Some(Component::Kubelet));
        assert_eq!(restart("admin.conf"), None);
        assert_eq!(by_name("etcd-peer").read_by(), ReadBy::EtcdConnections);
        assert_eq!(
            by_name("etcd-healthcheck-client").read_by(),
            ReadBy::EachUse
        );
        assert_eq!(by_name("apiserver").san_rule(), SanRule::ApiServer);
        assert_eq!(by_name("etcd-server").san_rule(), SanRule::EtcdServer);
        assert_eq!(by_name("admin.conf").san_rule(), SanRule::None);
        assert_eq!(by_name("admin.conf").usage(), Usage::Client);
        assert!(by_name("super-admin.conf").since_1_29());
        assert!(!by_name("apiserver").since_1_29());
    }

    /// A leaf and a kubeconfig written, read, checked and rewritten through the same calls.
    #[test]
    fn leaf_and_kubeconfig_behind_one_interface() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("pki"), dir.path());
        std::fs::create_dir(&layout.cert_dir).unwrap();
        let mut params = ClusterParams::new("n1".into(), [10, 0, 0, 5].into());
        params.cert_dir = layout.cert_dir.clone();
        params.kubeconfig_dir = layout.kubeconfig_dir.clone();
        let ca_t = ClusterParams::ca_template(inventory::ca(CaId::Ca));
        let ca_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = Issuer::new_root(
            &ca_t,
            ca_key,
            NOW,
            10 * YEAR,
            &layout.cert_dir.join("ca.crt"),
            &layout.cert_dir.join("ca.key"),
        )
        .unwrap();
        let issue = |item: Item| {
            let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
            let t = item.template(&params).unwrap();
            let cert = ca.sign(&t, key.public_key_der(), NOW, YEAR).unwrap().cert;
            (cert, key)
        };
        let write = |files: &[NewFile]| {
            for f in files {
                std::fs::write(&f.path, &f.contents).unwrap();
            }
        };
        let apiserver: Item = inventory::leaf("apiserver").unwrap();
        let admin: Item = inventory::kubeconfig("admin.conf").unwrap();
        for item in [apiserver, admin] {
            assert!(item.read_cert(&layout).unwrap().is_none());
            let (cert, key) = issue(item);
            let (cert_pem, key_pem, ca_pem) =
                (cert.to_pem(), key.to_pem().unwrap(), ca.bundle_pem());
            let new = NewPems {
                cert: &cert_pem,
                key: &key_pem,
                ca: &ca_pem,
            };
            let files = item.new_files(&layout, &params, new);
            assert_eq!(
                files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
                item.files(&layout)
            );
            write(&files);
            let read = item.read_cert(&layout).unwrap().unwrap();
            assert_eq!(read.der(), cert.der());
            item.check_key(&layout, &read).unwrap();
            assert!(!item.rotated_by_kubelet(&layout).unwrap());
            for f in item.files(&layout) {
                assert_eq!(owner_of(&layout, &f).unwrap().name(), item.name());
            }

            // Renewed: a new pair in the same files; the old certificate's key no longer fits.
            let (cert2, key2) = issue(item);
            let (cert_pem, key_pem) = (cert2.to_pem(), key2.to_pem().unwrap());
            let new = NewPems {
                cert: &cert_pem,
                key: &key_pem,
                ca: &ca_pem,
            };
            let renewed = item.renewed_files(&layout, new).unwrap();
            assert_eq!(renewed.iter().map(|f| f.kind).collect::<Vec<_>>(), {
                files.iter().map(|f| f.kind).collect::<Vec<_>>()
            });
            write(&renewed);
            let read2 = item.read_cert(&layout).unwrap().unwrap();
            assert_eq!(read2.der(), cert2.der());
            let e = item.check_key(&layout, &read).unwrap_err().to_string();
            assert!(e.contains("does not match"), "{}: {e}", item.name());
        }
        assert_eq!(
            admin.read_cert(&layout).unwrap().unwrap().common_name,
            "kubernetes-admin"
        );
        assert!(owner_of(&layout, &layout.cert_dir.join("ca.crt")).is_none());
        // A key gone: named, with the certificate that needs it.
        std::fs::remove_file(layout.cert_dir.join("apiserver.key")).unwrap();
        let cert = apiserver.read_cert(&layout).unwrap().unwrap();
        let e = apiserver.check_key(&layout, &cert).unwrap_err().to_string();
        assert!(e.contains("apiserver.key: not found, though"), "{e}");
    }

    /// The external CA workflow's files: beside the slot, or all in a CSR directory; a key
    /// already where it belongs is not written again.
    #[test]
    fn csr_files_and_imports() {
        let layout = Layout::new("/k/pki", "/k");
        let peer: Item = inventory::leaf("etcd-peer").unwrap();
        let admin: Item = inventory::kubeconfig("admin.conf").unwrap();
        assert_eq!(
            peer.csr_files(&layout, None),
            CsrFiles {
                key: "/k/pki/etcd/peer.key".into(),
                csr: "/k/pki/etcd/peer.csr".into(),
                crt: "/k/pki/etcd/peer.crt".into(),
            }
        );
        assert_eq!(
            admin.csr_files(&layout, Some(Path::new("/c"))),
            CsrFiles {
                key: "/c/admin.conf".into(),
                csr: "/c/admin.conf.csr".into(),
                crt: "/c/admin.conf.crt".into(),
            }
        );
        let new = NewPems {
            cert: "C",
            key: "K",
            ca: "",
        };
        let in_place = peer
            .imported_files(&layout, Path::new("/k/pki/etcd/peer.key"), new)
            .unwrap();
        assert_eq!(in_place.len(), 1);
        assert_eq!(in_place[0].path, Path::new("/k/pki/etcd/peer.crt"));
        let from_dir = peer
            .imported_files(&layout, Path::new("/c/etcd/peer.key"), new)
            .unwrap();
        assert_eq!(from_dir[1].path, Path::new("/k/pki/etcd/peer.key"));
        assert_eq!(from_dir[1].kind, FileKind::PrivateKey);
        assert_eq!(from_dir[1].contents, b"K");
    }
}
