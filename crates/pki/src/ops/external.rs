//! The external-CA workflow (a CA certificate present without its key): `generate-csr` writes
//! a key and a CSR for every
//! certificate an external CA must sign; `import` checks what the CA returned and installs it.
//!
//! Layout follows kubeadm: `<cert-dir>/<base>.key` + `<base>.csr` for certificates, and a
//! partial `<kubeconfig-dir>/<name>` (key, no certificate) + `<name>.csr` for kubeconfigs. The
//! CA returns `<base>.crt` / `<name>.crt` beside the CSR. With `csr_dir`, everything goes into
//! that directory instead, which is how certificates that already exist are renewed.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::csr::{self, CsrInfo};
use crate::crypto::issue::CertTemplate;
use crate::crypto::key::{KeyAlgorithm, PrivateKey};
use crate::error::{Error, Result};
use crate::fsio;
use crate::fsio::CERT_MODE;
use crate::model::check::{Findings, missing_sans};
use crate::model::inventory::{self, Item};
use crate::model::kubeconfig::{self, Kubeconfig};
use crate::model::layout::{self, Layout};
use crate::model::params::ClusterParams;
use crate::ops::expiry::read_item_cert;
use crate::ops::renew::Selection;
use crate::storage::session::Session;

/// Items an external CA may have to sign: kubeadm's list plus kubelet.conf.
pub fn signable_items(local_etcd: bool) -> Vec<Item> {
    let mut v = inventory::kubeadm_items(local_etcd);
    v.push(Item::Kubeconfig(
        inventory::kubeconfig("kubelet.conf").expect("in the inventory"),
    ));
    v
}

fn select(sel: &Selection, local_etcd: bool) -> Result<Vec<Item>> {
    let all = signable_items(local_etcd);
    match sel {
        Selection::All => Ok(all),
        Selection::Named(names) => names
            .iter()
            .map(|n| {
                all.iter().copied().find(|i| i.name() == n).ok_or_else(|| {
                    Error::Invalid(format!(
                        "unknown certificate {n:?}; expected one of: all, {}",
                        all.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
                    ))
                })
            })
            .collect(),
    }
}

/// Paths for one item: (key-or-partial-kubeconfig, csr, returned cert).
fn paths(layout: &Layout, item: Item, csr_dir: Option<&Path>) -> (PathBuf, PathBuf, PathBuf) {
    match item {
        Item::Leaf(l) => {
            let dir = csr_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(|| layout.cert_dir.clone());
            (
                dir.join(format!("{}.key", l.base)),
                dir.join(format!("{}.csr", l.base)),
                dir.join(format!("{}.crt", l.base)),
            )
        }
        Item::Kubeconfig(k) => {
            let dir = csr_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(|| layout.kubeconfig_dir.clone());
            (
                dir.join(k.name),
                dir.join(format!("{}.csr", k.name)),
                dir.join(format!("{}.crt", k.name)),
            )
        }
    }
}

#[derive(Debug)]
pub struct CsrJob {
    pub item: Item,
    pub template: CertTemplate,
    pub key_path: PathBuf,
    pub csr_path: PathBuf,
    /// Attributes copied from the certificate in place (renewal through the external CA).
    pub from_existing: bool,
}

pub fn plan_csrs(
    params: &ClusterParams,
    sel: &Selection,
    csr_dir: Option<&Path>,
) -> Result<Vec<CsrJob>> {
    params.validate().map_err(Error::Invalid)?;
    let layout = Layout::new(&params.cert_dir, &params.kubeconfig_dir);
    let mut jobs = Vec::new();
    for item in select(sel, params.local_etcd)? {
        let (key_path, csr_path, _) = paths(&layout, item, csr_dir);
        for p in [&key_path, &csr_path] {
            if crate::fsio::exists(p)? {
                let hint = if csr_dir.is_none() {
                    "; to renew through the external CA, pass --csr-dir"
                } else {
                    ""
                };
                return Err(Error::WrongForSlot {
                    path: p.clone(),
                    reason: format!("already exists; kubepki does not overwrite it{hint}"),
                });
            }
        }
        let existing = read_item_cert(&layout, item)?;
        let (template, from_existing) = match (&existing, item) {
            (Some(c), _) => (CertTemplate::from_certificate(c), true),
            (None, Item::Leaf(l)) => (params.leaf_template(l).map_err(Error::Invalid)?, false),
            (None, Item::Kubeconfig(k)) => (params.kubeconfig_template(k), false),
        };
        jobs.push(CsrJob {
            item,
            template,
            key_path,
            csr_path,
            from_existing,
        });
    }
    Ok(jobs)
}

/// Writes every key and CSR (and partial kubeconfig) as one all-or-nothing set of new files.
pub fn write_csrs(
    session: &Session,
    jobs: &[CsrJob],
    params: &ClusterParams,
    alg: KeyAlgorithm,
) -> Result<Vec<PathBuf>> {
    let made: Vec<std::result::Result<(String, String), String>> = jobs
        .par_iter()
        .map(|j| {
            let key = PrivateKey::generate(alg)?;
            let csr = csr::build(&j.template, &key)?;
            Ok((key.to_pem()?, csr))
        })
        .collect();
    let mut files = session.transaction("generate-csr")?;
    for (j, m) in jobs.iter().zip(made) {
        let (key_pem, csr_pem) = m.map_err(Error::Crypto)?;
        match j.item {
            Item::Leaf(_) => files.create(&j.key_path, key_pem.as_bytes(), fsio::KEY_MODE)?,
            Item::Kubeconfig(k) => {
                let yaml = Kubeconfig::key_only(
                    &params.cluster_name,
                    &params.server_url(k.server),
                    &j.template.common_name,
                    &key_pem,
                )
                .to_yaml();
                files.create(&j.key_path, yaml.as_bytes(), fsio::KUBECONFIG_MODE)?;
            }
        }
        files.create(&j.csr_path, csr_pem.as_bytes(), CERT_MODE)?;
    }
    files.commit()
}

#[derive(Debug)]
pub struct ImportItem {
    pub item: Item,
    pub returned: PathBuf,
    pub csr: PathBuf,
    key_source: PathBuf,
    /// Already installed (same certificate in place).
    pub already: bool,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct ImportPlan {
    pub items: Vec<ImportItem>,
    /// CSRs with no signed certificate beside them yet.
    pub waiting: Vec<PathBuf>,
    pub findings: Findings,
}

/// Checks each returned certificate against its CSR, key, CA and slot.
pub fn plan_import(
    layout: &Layout,
    csr_dir: Option<&Path>,
    local_etcd: bool,
    now: OffsetDateTime,
) -> Result<ImportPlan> {
    let mut plan = ImportPlan::default();
    for item in signable_items(local_etcd) {
        let (key_source, csr_path, crt_path) = paths(layout, item, csr_dir);
        if !crate::fsio::exists(&csr_path)? {
            continue;
        }
        if !crate::fsio::exists(&crt_path)? {
            plan.waiting.push(csr_path);
            continue;
        }
        let f = &mut plan.findings;
        let bad = |reason: String| Error::WrongForSlot {
            path: crt_path.clone(),
            reason,
        };
        let csr_bytes = crate::fsio::read(&csr_path)?;
        let req = match csr::parse_pem(&csr_bytes) {
            Ok(r) => r,
            Err(reason) => {
                f.problems.push(Error::WrongForSlot {
                    path: csr_path.clone(),
                    reason: reason.to_string(),
                });
                continue;
            }
        };
        let cert_pem = crate::fsio::read(&crt_path)?;
        let chain = match Certificate::from_pem_chain(&cert_pem) {
            Ok(c) => c,
            Err(reason) => {
                // `openssl ca` without -notext puts a text dump before the PEM.
                let hint = if cert_pem.starts_with(b"Certificate:") {
                    " (a text dump before the certificate: sign with openssl ca -notext)"
                } else {
                    ""
                };
                f.problems.push(Error::BadCertificate {
                    path: crt_path.clone(),
                    reason: format!("{reason}{hint}"),
                });
                continue;
            }
        };
        let key_pem = match item {
            Item::Leaf(_) => crate::fsio::read(&key_source)?,
            Item::Kubeconfig(_) => kubeconfig::read_client_key(&key_source)?,
        };
        let key = PrivateKey::from_pem(&key_pem).map_err(|reason| Error::BadKey {
            path: key_source.clone(),
            reason,
        })?;
        let leaf = &chain[0];
        let ca_spec = inventory::ca(item.issuer());
        let ca_path = layout.ca_cert(ca_spec);
        let Some(ca) = layout::read_cert(&ca_path)? else {
            f.problems.push(bad(format!(
                "cannot be checked: {} does not exist",
                ca_path.display()
            )));
            continue;
        };
        let before = f.problems.len();
        if !key.matches_public_key(leaf.public_key_der()) {
            f.problems.push(bad(format!(
                "is not for the key in {}",
                key_source.display()
            )));
        }
        let usage = match item {
            Item::Leaf(l) => l.usage,
            Item::Kubeconfig(_) => inventory::Usage::Client,
        };
        match crate::model::check::check_chain(
            &chain,
            &ca,
            usage.server_auth(),
            usage.client_auth(),
            now,
        ) {
            Ok(()) => {}
            Err(crate::model::check::ChainProblem::NotSignedByCa) => {
                f.problems.push(Error::WrongIssuer {
                    path: crt_path.clone(),
                    ca: ca_path.clone(),
                })
            }
            Err(crate::model::check::ChainProblem::Other(reason)) => f.problems.push(bad(reason)),
        }
        check_against_request(leaf, &req, item, &crt_path, now, f);
        let installed = read_item_cert(layout, item).ok().flatten();
        let already = installed.is_some_and(|c| c.der() == leaf.der());
        if f.problems.len() == before {
            plan.items.push(ImportItem {
                item,
                returned: crt_path,
                csr: csr_path,
                key_source,
                already,
                cert_pem,
                key_pem,
            });
        }
    }
    Ok(plan)
}

fn check_against_request(
    leaf: &Certificate,
    req: &CsrInfo,
    item: Item,
    path: &Path,
    now: OffsetDateTime,
    f: &mut Findings,
) {
    let bad = |reason: String| Error::WrongForSlot {
        path: path.to_path_buf(),
        reason,
    };
    if leaf.common_name != req.common_name {
        f.problems.push(bad(format!(
            "CN is {:?}, the request asked for {:?}",
            leaf.common_name, req.common_name
        )));
    }
    let (mut a, mut b) = (leaf.organizations.clone(), req.organizations.clone());
    a.sort();
    b.sort();
    if a != b {
        f.problems.push(bad(format!(
            "O is {:?}, the request asked for {:?}",
            leaf.organizations, req.organizations
        )));
    }
    let missing = missing_sans(leaf, &req.dns_names, &req.ip_addresses);
    if !missing.is_empty() {
        f.problems
            .push(bad(format!("lacks requested SANs: {}", missing.join(", "))));
    }
    let extra = leaf.dns_names.len() + leaf.ip_addresses.len()
        - (req.dns_names.len() + req.ip_addresses.len())
            .min(leaf.dns_names.len() + leaf.ip_addresses.len());
    if missing.is_empty() && extra > 0 {
        f.warnings.push(format!(
            "{}: the CA added {extra} SAN(s) that were not requested",
            path.display()
        ));
    }
    if leaf.is_ca {
        f.problems.push(bad(
            "is a CA certificate (basicConstraints CA:TRUE); a leaf is expected".into(),
        ));
    }
    let usage = match item {
        Item::Leaf(l) => l.usage,
        Item::Kubeconfig(_) => inventory::Usage::Client,
    };
    let mut lacks = Vec::new();
    if usage.server_auth() && !leaf.server_auth {
        lacks.push("serverAuth");
    }
    if usage.client_auth() && !leaf.client_auth {
        lacks.push("clientAuth");
    }
    if !lacks.is_empty() {
        f.problems.push(bad(format!(
            "has the wrong usages for {}: it needs {} ({}) in extendedKeyUsage",
            item.name(),
            lacks.join(" and "),
            usage
        )));
    }
    if let Some(ku) = leaf.key_usage
        && !ku.digital_signature
    {
        f.problems.push(bad(
            "keyUsage lacks digitalSignature, which TLS needs".into()
        ));
    }
    if now > leaf.not_after {
        f.problems.push(Error::Expired {
            path: path.to_path_buf(),
            not_after: leaf.not_after,
        });
    } else if now < leaf.not_before {
        f.warnings.push(format!(
            "{}: not valid before {} (clock skew?)",
            path.display(),
            crate::format::dates::format_date(leaf.not_before)
        ));
    }
}

/// Installs every checked certificate at once, backing up anything it replaces.
pub fn execute_import(
    session: &Session,
    plan: &ImportPlan,
    backup_dir: &Path,
    now: OffsetDateTime,
) -> Result<Vec<PathBuf>> {
    let layout = session.layout();
    if !plan.findings.is_ok() {
        return Err(Error::Invalid(
            "refusing to import: see the problems above; nothing was installed".into(),
        ));
    }
    let ca_pem_path = layout.ca_cert(inventory::ca(inventory::CaId::Ca));
    let mut contents: Vec<(PathBuf, Vec<u8>, u32)> = Vec::new();
    for i in plan.items.iter().filter(|i| !i.already) {
        match i.item {
            Item::Leaf(l) => {
                contents.push((layout.leaf_cert(l), i.cert_pem.clone(), fsio::CERT_MODE));
                let key_target = layout.leaf_key(l);
                if key_target != i.key_source {
                    contents.push((key_target, i.key_pem.clone(), fsio::KEY_MODE));
                }
            }
            Item::Kubeconfig(k) => {
                let text = fsio::read_to_string(&i.key_source)?;
                let ca_pem = layout::read_ca_bundle_pem(&ca_pem_path)?;
                let cert = String::from_utf8_lossy(&i.cert_pem).into_owned();
                let key = String::from_utf8_lossy(&i.key_pem).into_owned();
                let full = kubeconfig::update_credentials(
                    &text,
                    &i.key_source,
                    &cert,
                    &key,
                    &ca_pem,
                    true,
                )?;
                contents.push((
                    layout.kubeconfig(k),
                    full.into_bytes(),
                    fsio::KUBECONFIG_MODE,
                ));
            }
        }
    }
    if contents.is_empty() {
        return Ok(Vec::new());
    }
    // The partial kubeconfig generate-csr wrote in place is ours to complete; every other file
    // that exists gets a backup (a damaged kubeconfig too: it is not ours to throw away).
    let ours: Vec<&Path> = plan
        .items
        .iter()
        .filter(|i| matches!(i.item, Item::Kubeconfig(k) if layout.kubeconfig(k) == i.key_source))
        .filter(|i| is_partial_kubeconfig(&i.key_source))
        .map(|i| i.key_source.as_path())
        .collect();
    let replaced: Vec<PathBuf> = contents
        .iter()
        .map(|(p, _, _)| p.clone())
        .filter(|p| p.exists() && !ours.contains(&p.as_path()))
        .collect();
    let mut r = session.transaction("import")?;
    for (p, c, m) in &contents {
        r.replace(p, c, *m)?;
    }
    if !replaced.is_empty() {
        r.back_up(
            backup_dir,
            &replaced,
            layout,
            &crate::format::dates::rfc3339_utc(now),
        )?;
    }
    r.commit()
}

fn is_partial_kubeconfig(p: &Path) -> bool {
    kubeconfig::read_credentials(p).is_err() && kubeconfig::read_client_key(p).is_ok()
}
