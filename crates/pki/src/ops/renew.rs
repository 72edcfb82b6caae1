//! `certs renew`: kubeadm's renewal (attributes from the existing certificate, fresh keys,
//! kubeconfigs refreshed from ca.crt) without its gaps: only what expires within a window if
//! asked, extra SANs, a chosen validity, a backup first, and an all-or-nothing swap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rayon::prelude::*;
use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::issue::{self, CertTemplate, Signer};
use crate::crypto::key::{KeyAlgorithm, PrivateKey};
use crate::error::{Error, Result};
use crate::format::dates::format_date;
use crate::format::duration;
use crate::fsio;
use crate::model::check;
use crate::model::inventory::{self, CaId, Item};
use crate::model::kubeconfig::{self, Source};
use crate::model::layout::{self, Layout};
use crate::model::params::BACKDATE;
use crate::ops::expiry::read_item_cert;
use crate::storage::session::Session;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// kubeadm's `all`: every certificate kubeadm renews (not kubelet.conf).
    All,
    Named(Vec<String>),
}

/// SANs to add on renewal, per certificate that carries SANs.
#[derive(Clone, Debug, Default)]
pub struct ExtraSans {
    pub apiserver: Vec<String>,
    pub etcd_server: Vec<String>,
    pub etcd_peer: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub selection: Selection,
    pub expiring_within: Option<Duration>,
    pub validity: Duration,
    pub extra_sans: ExtraSans,
    /// None: keep each certificate's current key algorithm.
    pub key_algorithm: Option<KeyAlgorithm>,
    pub local_etcd: bool,
}

impl Request {
    /// Refuses what would break a working PKI before anything is locked or read.
    pub fn validate(&self) -> Result<()> {
        crate::format::duration::check_validity(
            self.validity,
            "the validity of renewed certificates (--validity, or certificateValidityPeriod in --config)",
        )
        .map_err(Error::Invalid)?;
        for s in self
            .extra_sans
            .apiserver
            .iter()
            .chain(&self.extra_sans.etcd_server)
            .chain(&self.extra_sans.etcd_peer)
        {
            crate::model::params::validate_san(s).map_err(Error::Invalid)?;
        }
        Ok(())
    }
}

/// The names `renew` accepts.
pub fn renewable_names(local_etcd: bool) -> Vec<&'static str> {
    let mut v: Vec<&str> = inventory::kubeadm_items(local_etcd)
        .iter()
        .map(|i| i.name())
        .collect();
    v.push("kubelet.conf");
    v
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Renew {
        added_sans: Vec<String>,
    },
    /// Not within `--expiring-within`.
    NotDue {
        expires: OffsetDateTime,
    },
    /// Signed by a CA whose key is not here: an external CA renews it.
    External {
        ca: &'static str,
    },
    Missing,
    /// Present but unreadable or corrupt: the plan's problems say why.
    Unreadable,
    /// kubelet.conf pointing at the kubelet's rotating certificate files.
    KubeletManaged,
}

#[derive(Debug)]
pub struct Target {
    pub item: Item,
    pub files: Vec<PathBuf>,
    pub action: Action,
    template: Option<CertTemplate>,
    algorithm: Option<KeyAlgorithm>,
}

impl Target {
    pub fn name(&self) -> &'static str {
        self.item.name()
    }
}

pub struct Plan {
    pub targets: Vec<Target>,
    pub problems: Vec<Error>,
    pub warnings: Vec<String>,
    layout: Layout,
    cas: BTreeMap<CaId, (Certificate, PrivateKey)>,
}

impl Plan {
    pub fn to_renew(&self) -> impl Iterator<Item = &Target> {
        self.targets
            .iter()
            .filter(|t| matches!(t.action, Action::Renew { .. }))
    }
    /// Files a renewal replaces (for the backup and the restart advice).
    pub fn files_to_replace(&self) -> Vec<PathBuf> {
        self.to_renew()
            .flat_map(|t| t.files.iter().cloned())
            .collect()
    }
}

/// Refuses symlinks: renaming over one would replace the link, writing through it could
/// change a file outside the PKI.
fn regular_file(path: &Path, roots: &[&Path]) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(path).map_err(|e| Error::io(path, e))?;
            let resolved = path.parent().unwrap_or(Path::new(".")).join(&target);
            let inside = roots.iter().any(|r| {
                match (std::fs::canonicalize(&resolved), std::fs::canonicalize(r)) {
                    (Ok(t), Ok(r)) => t.starts_with(r),
                    _ => false,
                }
            });
            Err(Error::WrongForSlot {
                path: path.to_path_buf(),
                reason: format!(
                    "is a symbolic link to {}{}; kubepki only replaces regular files",
                    target.display(),
                    if inside {
                        ""
                    } else {
                        ", outside the certificate directories"
                    }
                ),
            })
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The private key of `item` (its `.key` file, or the kubeconfig's client key) is present,
/// readable and belongs to `cert`.
fn key_matches(layout: &Layout, item: Item, cert: &Certificate) -> Result<()> {
    match item {
        Item::Leaf(l) => {
            let (crt, key) = (layout.leaf_cert(l), layout.leaf_key(l));
            match layout::read_key(&key)? {
                None => Err(Error::Io {
                    path: key,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("not found, though {} exists", crt.display()),
                    ),
                }),
                Some(k) if !k.matches_public_key(cert.public_key_der()) => {
                    Err(Error::KeyMismatch { cert: crt, key })
                }
                Some(_) => Ok(()),
            }
        }
        Item::Kubeconfig(k) => {
            let path = layout.kubeconfig(k);
            let creds = kubeconfig::read_credentials(&path)?;
            let err = |reason: String| Error::Kubeconfig {
                path: path.clone(),
                reason,
            };
            let pem = creds
                .key_pem
                .ok_or_else(|| err("the client certificate has no client key".into()))?;
            let key =
                PrivateKey::from_pem(&pem).map_err(|e| err(format!("invalid client key: {e}")))?;
            if key.matches_public_key(cert.public_key_der()) {
                Ok(())
            } else {
                Err(err(
                    "client key does not match the client certificate".into()
                ))
            }
        }
    }
}

pub fn plan(layout: &Layout, req: &Request, now: OffsetDateTime) -> Result<Plan> {
    req.validate()?;
    let valid = renewable_names(req.local_etcd);
    let items: Vec<Item> = match &req.selection {
        Selection::All => inventory::kubeadm_items(req.local_etcd),
        Selection::Named(names) => {
            let mut out = Vec::new();
            for n in names {
                if !valid.contains(&n.as_str()) {
                    return Err(Error::Invalid(format!(
                        "unknown certificate {n:?}; expected one of: all, {}",
                        valid.join(", ")
                    )));
                }
                let item = inventory::leaf(n)
                    .map(Item::Leaf)
                    .or_else(|| inventory::kubeconfig(n).map(Item::Kubeconfig))
                    .expect("a valid name is in the inventory");
                if !out.iter().any(|i: &Item| i.name() == item.name()) {
                    out.push(item);
                }
            }
            out
        }
    };
    let mut plan = Plan {
        targets: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        layout: layout.clone(),
        cas: BTreeMap::new(),
    };
    let roots = [layout.cert_dir.as_path(), layout.kubeconfig_dir.as_path()];

    // CAs needed by the selection: loaded once, checked once.
    let mut external: BTreeMap<CaId, bool> = BTreeMap::new();
    for id in items
        .iter()
        .map(|i| i.issuer())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let spec = inventory::ca(id);
        let (crt, key) = (layout.ca_cert(spec), layout.ca_key(spec));
        let cert = match layout::read_cert(&crt) {
            Ok(Some(c)) => c,
            Ok(None) => {
                plan.problems.push(Error::Io {
                    path: crt.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "CA certificate not found",
                    ),
                });
                continue;
            }
            Err(e) => {
                plan.problems.push(e);
                continue;
            }
        };
        let k = match layout::read_key(&key) {
            Ok(k) => k,
            Err(e) => {
                plan.problems.push(e);
                continue;
            }
        };
        let found = check::check_ca(&cert, &crt, k.as_ref().map(|k| (k, key.as_path())), now);
        plan.warnings.extend(found.warnings);
        if !found.problems.is_empty() {
            plan.problems.extend(found.problems);
            continue;
        }
        match k {
            Some(k) => {
                plan.cas.insert(id, (cert, k));
                external.insert(id, false);
            }
            None => {
                external.insert(id, true);
            }
        }
    }

    for item in items {
        let files = match item {
            Item::Leaf(l) => vec![layout.leaf_cert(l), layout.leaf_key(l)],
            Item::Kubeconfig(k) => vec![layout.kubeconfig(k)],
        };
        for f in &files {
            if let Err(e) = regular_file(f, &roots) {
                plan.problems.push(e);
            }
        }
        let mut target = Target {
            item,
            files,
            action: Action::Missing,
            template: None,
            algorithm: None,
        };
        if let Item::Kubeconfig(k) = item
            && !k.kubeadm_managed
            && crate::fsio::exists(&target.files[0])?
        {
            match kubeconfig::read_credentials(&target.files[0]) {
                Ok(c) if c.cert_source != Source::Embedded => {
                    target.action = Action::KubeletManaged;
                    plan.targets.push(target);
                    continue;
                }
                _ => {}
            }
        }
        let old = match read_item_cert(layout, item) {
            Ok(c) => c,
            Err(e) => {
                plan.problems.push(e);
                target.action = Action::Unreadable;
                plan.targets.push(target);
                continue;
            }
        };
        let Some(old) = old else {
            plan.targets.push(target);
            continue;
        };
        if external.get(&item.issuer()) == Some(&true) {
            target.action = Action::External {
                ca: inventory::ca(item.issuer()).name,
            };
            plan.targets.push(target);
            continue;
        }
        if let Some(w) = req.expiring_within
            && old.not_after - now > time::Duration::try_from(w).unwrap_or(time::Duration::MAX)
        {
            target.action = Action::NotDue {
                expires: old.not_after,
            };
            plan.targets.push(target);
            continue;
        }
        // The old key must be the certificate's: a mismatch or an unreadable key means the
        // pair is not what it seems (a half-done manual change, a file from elsewhere), and
        // renewing would hide that. Like init, refuse and name the files.
        if let Err(e) = key_matches(layout, item, &old) {
            plan.problems.push(e);
        }
        let mut template = CertTemplate::from_certificate(&old);
        let extra: &[String] = match item {
            Item::Leaf(l) if l.name == "apiserver" => &req.extra_sans.apiserver,
            Item::Leaf(l) if l.name == "etcd-server" => &req.extra_sans.etcd_server,
            Item::Leaf(l) if l.name == "etcd-peer" => &req.extra_sans.etcd_peer,
            _ => &[],
        };
        let mut added = Vec::new();
        for s in extra {
            match issue::split_san(s) {
                Ok(ip) if !template.ip_addresses.contains(&ip) => {
                    template.ip_addresses.push(ip);
                    added.push(format!("IP:{ip}"));
                }
                Err(d) if !template.dns_names.iter().any(|x| x.eq_ignore_ascii_case(d)) => {
                    template.dns_names.push(d.to_string());
                    added.push(format!("DNS:{d}"));
                }
                _ => {}
            }
        }
        target.algorithm = req.key_algorithm.or(old.key_algorithm);
        if target.algorithm.is_none() {
            plan.problems.push(Error::WrongForSlot {
                path: target.files[0].clone(),
                reason: "has a key type kubepki cannot generate; pass --encryption-algorithm"
                    .into(),
            });
        }
        target.template = Some(template);
        target.action = Action::Renew { added_sans: added };
        plan.targets.push(target);
    }
    if matches!(req.selection, Selection::Named(_)) {
        for t in &plan.targets {
            if t.action == Action::Missing {
                plan.problems.push(Error::Io {
                    path: t.files[0].clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "not found: nothing to renew (kubepki init creates missing files)",
                    ),
                });
            }
        }
    }
    let wants_sans = !(req.extra_sans.apiserver.is_empty()
        && req.extra_sans.etcd_server.is_empty()
        && req.extra_sans.etcd_peer.is_empty());
    if wants_sans
        && !plan
            .to_renew()
            .any(|t| matches!(t.item, Item::Leaf(l) if matches!(l.name, "apiserver" | "etcd-server" | "etcd-peer")))
    {
        plan.warnings.push("extra SANs were given, but no apiserver or etcd server/peer certificate is being renewed".into());
    }
    Ok(plan)
}

/// What a renewal did.
#[derive(Debug)]
pub struct Outcome {
    pub renewed: Vec<&'static str>,
    pub backup: Option<PathBuf>,
    pub written: Vec<PathBuf>,
}

/// Issues the new certificates, backs up the old files into `backup_dir`, then swaps
/// everything in at once, in one transaction of `session` (plan within the same session).
pub fn execute(
    session: &Session,
    plan: &Plan,
    req: &Request,
    now: OffsetDateTime,
    backup_dir: &Path,
) -> Result<Outcome> {
    if !plan.problems.is_empty() {
        return Err(Error::Invalid(
            "refusing to renew: see the problems above; nothing was changed".into(),
        ));
    }
    let targets: Vec<&Target> = plan.to_renew().collect();
    if targets.is_empty() {
        return Ok(Outcome {
            renewed: Vec::new(),
            backup: None,
            written: Vec::new(),
        });
    }
    let issued: Vec<std::result::Result<(PrivateKey, Certificate), String>> = targets
        .par_iter()
        .map(|t| {
            let key = PrivateKey::generate(t.algorithm.expect("checked in plan"))?;
            let (ca_cert, ca_key) = &plan.cas[&t.item.issuer()];
            // A certificate never outlives its CA.
            let not_after = duration::after(now, req.validity).min(ca_cert.not_after);
            let cert = issue::issue(
                t.template.as_ref().expect("renew targets carry a template"),
                key.public_key_der(),
                Signer::Ca {
                    cert: ca_cert,
                    key: ca_key,
                },
                now - BACKDATE,
                not_after,
            )?;
            Ok((key, cert))
        })
        .collect();

    let ca_pem_path = plan.layout.ca_cert(inventory::ca(CaId::Ca));
    let mut contents: Vec<(PathBuf, Vec<u8>, u32)> = Vec::new();
    for (t, r) in targets.iter().zip(issued) {
        let (key, cert) = r.map_err(Error::Crypto)?;
        let key_pem = key.to_pem().map_err(Error::Crypto)?;
        match t.item {
            Item::Leaf(_) => {
                contents.push((
                    t.files[0].clone(),
                    cert.to_pem().into_bytes(),
                    fsio::CERT_MODE,
                ));
                contents.push((t.files[1].clone(), key_pem.into_bytes(), fsio::KEY_MODE));
            }
            Item::Kubeconfig(_) => {
                let path = &t.files[0];
                let text = crate::fsio::read_to_string(path)?;
                let ca_pem = layout::read_ca_bundle_pem(&ca_pem_path)?;
                let new = kubeconfig::replace_credentials(
                    &text,
                    path,
                    &cert.to_pem(),
                    &key_pem,
                    &ca_pem,
                )?;
                contents.push((path.clone(), new.into_bytes(), fsio::KUBECONFIG_MODE));
            }
        }
    }

    // Stage first (a read-only or full cert dir fails here, before anything else exists),
    // then back up, then swap. Until the commit a failure changes nothing: the transaction
    // removes what it staged and the backup of a renewal that did not happen.
    let mut r = session.transaction("renew")?;
    for (p, c, m) in &contents {
        r.replace(p, c, *m)?;
    }
    let old_files: Vec<PathBuf> = contents.iter().map(|(p, _, _)| p.clone()).collect();
    r.back_up(
        backup_dir,
        &old_files,
        &plan.layout,
        &crate::format::dates::rfc3339_utc(now),
    )?;
    let written = r.commit()?;
    Ok(Outcome {
        renewed: targets.iter().map(|t| t.name()).collect(),
        backup: Some(backup_dir.to_path_buf()),
        written,
    })
}

/// A control-plane component that must restart to load renewed files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
        }
    }
    /// Static pods restart by moving their manifest; the kubelet is a system service.
    pub fn is_static_pod(self) -> bool {
        self != Component::Kubelet
    }
}

/// Which components read a renewed certificate only at start. etcd is absent on purpose: it
/// loads its serving and peer certificates on every new connection. admin.conf,
/// super-admin.conf and the healthcheck client belong to clients that read them per use.
pub fn restart_needed(names: &[&str]) -> Vec<Component> {
    let mut out: Vec<Component> = names
        .iter()
        .filter_map(|n| match *n {
            "apiserver"
            | "apiserver-kubelet-client"
            | "apiserver-etcd-client"
            | "front-proxy-client" => Some(Component::KubeApiserver),
            "controller-manager.conf" => Some(Component::KubeControllerManager),
            "scheduler.conf" => Some(Component::KubeScheduler),
            "kubelet.conf" => Some(Component::Kubelet),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One line per target, kubeadm's wording where kubeadm has one.
pub fn describe(t: &Target, dry_run: bool) -> String {
    let n = t.name();
    match &t.action {
        Action::Renew { added_sans } => {
            let verb = if dry_run {
                "would be renewed"
            } else {
                "renewed"
            };
            if added_sans.is_empty() {
                format!("certificate {n} {verb}")
            } else {
                format!("certificate {n} {verb}, adding {}", added_sans.join(", "))
            }
        }
        Action::NotDue { expires } => format!(
            "certificate {n} expires {}, not within the window: skipped",
            format_date(*expires)
        ),
        Action::External { ca } => format!("Detected external {ca}, {n} can't be renewed"),
        Action::Missing => format!("!MISSING! {n}: nothing to renew"),
        Action::Unreadable => format!("!UNREADABLE! {n}: see the error below"),
        Action::KubeletManaged => format!(
            "{n} uses the kubelet's rotating client certificate; the kubelet renews it (if it expired: kubepki kubeconfig kubelet)"
        ),
    }
}
