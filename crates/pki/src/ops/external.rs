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
use crate::crypto::check::{ChainProblem, Findings, check_chain, check_time, missing_sans};
use crate::crypto::csr::{self, CsrInfo};
use crate::crypto::files;
use crate::crypto::issue::CertTemplate;
use crate::crypto::key::{KeyAlgorithm, PrivateKey};
use crate::error::{CertError, Error, Refusal, Result, SlotProblem};
use crate::fsio::CERT_MODE;
use crate::model::inventory;
use crate::model::kubeconfig;
use crate::model::layout::Layout;
use crate::model::params::ClusterParams;
use crate::model::slot::{self, CsrFiles, Item, NewPems};
use crate::ops::renew::Selection;
use crate::storage::session::Session;

fn select(sel: &Selection, local_etcd: bool) -> Result<Vec<Item>> {
    let all = slot::signable_items(local_etcd);
    match sel {
        Selection::All => Ok(all),
        Selection::Named(names) => slot::named(names, &all),
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
    params.validate()?;
    let layout = Layout::new(&params.cert_dir, &params.kubeconfig_dir);
    let mut jobs = Vec::new();
    for item in select(sel, params.local_etcd)? {
        let CsrFiles { key, csr, .. } = item.csr_files(&layout, csr_dir);
        for p in [&key, &csr] {
            if crate::fsio::exists(p)? {
                return Err(Error::slot(
                    p,
                    SlotProblem::AlreadyExists {
                        external_ca_hint: csr_dir.is_none(),
                    },
                ));
            }
        }
        let (template, from_existing) = match item.read_cert(&layout)? {
            Some(c) => (CertTemplate::from_certificate(&c), true),
            None => (item.template(params)?, false),
        };
        jobs.push(CsrJob {
            item,
            template,
            key_path: key,
            csr_path: csr,
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
    let made: Vec<Result<(String, String)>> = jobs
        .par_iter()
        .map(|j| {
            let key = PrivateKey::generate(alg)?;
            let csr = csr::build(&j.template, &key).map_err(Error::Issue)?;
            Ok((key.to_pem()?, csr))
        })
        .collect();
    let mut files = session.transaction("generate-csr")?;
    for (j, m) in jobs.iter().zip(made) {
        let (key_pem, csr_pem) = m?;
        let key_file = j
            .item
            .csr_key_file(&j.key_path, params, &j.template.common_name, &key_pem);
        files.create(&key_file.path, &key_file.contents, key_file.kind.mode())?;
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
    /// What the files held (PEM, and so text).
    cert_pem: String,
    key_pem: String,
    /// The CA's certificates, as a kubeconfig embeds them.
    ca_pem: String,
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
    for item in slot::signable_items(local_etcd) {
        let at = item.csr_files(layout, csr_dir);
        if !crate::fsio::exists(&at.csr)? {
            continue;
        }
        if !crate::fsio::exists(&at.crt)? {
            plan.waiting.push(at.csr);
            continue;
        }
        if let Some(i) = check_returned(layout, item, at, now, &mut plan.findings)? {
            plan.items.push(i);
        }
    }
    Ok(plan)
}

/// A request and the chain the CA returned for it (and the file's bytes).
struct Returned {
    req: CsrInfo,
    chain: Vec<Certificate>,
    pem: Vec<u8>,
}

/// The request in `at.csr` and what the CA returned in `at.crt`, read: `None` when either
/// does not parse (the findings say why).
fn read_returned(at: &CsrFiles, f: &mut Findings) -> Result<Option<Returned>> {
    let csr_bytes = crate::fsio::read(&at.csr)?;
    let req = match csr::parse_pem(&csr_bytes) {
        Ok(r) => r,
        Err(e) => {
            f.problems
                .push(Error::slot(&at.csr, SlotProblem::Request(e)));
            return Ok(None);
        }
    };
    let cert_pem = crate::fsio::read(&at.crt)?;
    match Certificate::from_pem_chain(&cert_pem) {
        Ok(chain) => Ok(Some(Returned {
            req,
            chain,
            pem: cert_pem,
        })),
        Err(reason) => {
            // `openssl ca` without -notext puts a text dump before the PEM.
            let reason = if cert_pem.starts_with(b"Certificate:") {
                CertError::TextDump(Box::new(reason))
            } else {
                reason
            };
            f.problems.push(Error::BadCertificate {
                path: at.crt.clone(),
                reason,
            });
            Ok(None)
        }
    }
}

/// The certificate the CA returned for `item` in `at.crt`, checked against its request, key,
/// CA and slot: `None` when it fails (the findings say why).
fn check_returned(
    layout: &Layout,
    item: Item,
    at: CsrFiles,
    now: OffsetDateTime,
    f: &mut Findings,
) -> Result<Option<ImportItem>> {
    let bad = |problem| Error::slot(&at.crt, problem);
    let Some(Returned {
        req,
        chain,
        pem: cert_pem,
    }) = read_returned(&at, f)?
    else {
        return Ok(None);
    };
    let key_pem = item.read_csr_key(&at.key)?;
    let key = PrivateKey::from_pem(&key_pem).map_err(|reason| Error::BadKey {
        path: at.key.clone(),
        reason,
    })?;
    let leaf = &chain[0];
    let ca_path = layout.ca_cert(inventory::ca(item.issuer()));
    let Some(ca_certs) = files::read_cert_chain(&ca_path)? else {
        f.problems.push(bad(SlotProblem::CaAbsent(ca_path.clone())));
        return Ok(None);
    };
    let before = f.problems.len();
    if !key.matches_public_key(leaf.public_key_der()) {
        f.problems.push(bad(SlotProblem::NotForKey(at.key.clone())));
    }
    let usage = item.usage();
    match check_chain(
        &chain,
        &ca_certs[0],
        usage.server_auth(),
        usage.client_auth(),
        now,
    ) {
        Ok(()) => {}
        Err(ChainProblem::NotSignedByCa) => f.problems.push(Error::WrongIssuer {
            path: at.crt.clone(),
            ca: ca_path.clone(),
        }),
        Err(other) => f.problems.push(bad(SlotProblem::Chain(other))),
    }
    check_against_request(leaf, &req, item, &at.crt, now, f);
    let installed = item.read_cert(layout).ok().flatten();
    let already = installed.is_some_and(|c| c.der() == leaf.der());
    if f.problems.len() > before {
        return Ok(None);
    }
    Ok(Some(ImportItem {
        item,
        returned: at.crt,
        csr: at.csr,
        key_source: at.key,
        already,
        cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
        key_pem: String::from_utf8_lossy(&key_pem).into_owned(),
        ca_pem: files::bundle_pem(&ca_certs),
    }))
}

fn check_against_request(
    leaf: &Certificate,
    req: &CsrInfo,
    item: Item,
    path: &Path,
    now: OffsetDateTime,
    f: &mut Findings,
) {
    let bad = |problem| Error::slot(path, problem);
    if leaf.common_name != req.common_name {
        f.problems.push(bad(SlotProblem::CommonName {
            found: leaf.common_name.clone(),
            asked: req.common_name.clone(),
        }));
    }
    let (mut a, mut b) = (leaf.organizations.clone(), req.organizations.clone());
    a.sort();
    b.sort();
    if a != b {
        f.problems.push(bad(SlotProblem::Organizations {
            found: leaf.organizations.clone(),
            asked: req.organizations.clone(),
        }));
    }
    let missing = missing_sans(leaf, &req.dns_names, &req.ip_addresses);
    if !missing.is_empty() {
        f.problems
            .push(bad(SlotProblem::MissingRequestedSans(missing.clone())));
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
        f.problems.push(bad(SlotProblem::IsCa));
    }
    let usage = item.usage();
    let mut lacks = Vec::new();
    if usage.server_auth() && !leaf.server_auth {
        lacks.push("serverAuth");
    }
    if usage.client_auth() && !leaf.client_auth {
        lacks.push("clientAuth");
    }
    if !lacks.is_empty() {
        f.problems.push(bad(SlotProblem::WrongUsages {
            slot: item.name(),
            lacks,
            usage: usage.to_string(),
        }));
    }
    if let Some(ku) = leaf.key_usage
        && !ku.digital_signature
    {
        f.problems.push(bad(SlotProblem::NoDigitalSignature));
    }
    check_time(leaf, path, now, f);
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
        return Err(Error::Refused(Refusal::Import));
    }
    let mut files = Vec::new();
    for i in plan.items.iter().filter(|i| !i.already) {
        let new = NewPems {
            cert: &i.cert_pem,
            key: &i.key_pem,
            ca: &i.ca_pem,
        };
        files.extend(i.item.imported_files(layout, &i.key_source, new)?);
    }
    if files.is_empty() {
        return Ok(Vec::new());
    }
    // The partial kubeconfig generate-csr wrote in place is ours to complete; every other file
    // that exists gets a backup (a damaged kubeconfig too: it is not ours to throw away).
    let ours = |p: &Path| plan.items.iter().any(|i| i.key_source == p) && is_partial_kubeconfig(p);
    let replaced: Vec<PathBuf> = files
        .iter()
        .map(|f| f.path.clone())
        .filter(|p| p.exists() && !ours(p))
        .collect();
    let mut r = session.transaction("import")?;
    for f in &files {
        r.replace(&f.path, &f.contents, f.kind.mode())?;
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
