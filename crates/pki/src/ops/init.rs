//! `init`: create every missing file of a control-plane node's PKI, never touching
//! what exists.
//!
//! Planning reads and checks everything first. If an existing file is unfit for its slot
//! (corrupt, wrong CA, wrong key, expired, missing SANs), the plan carries the problem and
//! nothing is written. A CA whose certificate is present without its key is external: what it
//! would have to
//! sign and is missing cannot be created, and is reported, while the rest proceeds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;
use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::issue::{self, CertTemplate, Signer};
use crate::crypto::key::PrivateKey;
use crate::error::{Error, Result};
use crate::format::duration;
use crate::fsio;
use crate::model::check::{self, Findings};
use crate::model::inventory::{self, CaId, CaSpec, KubeconfigSpec, LeafSpec};
use crate::model::kubeconfig::{self, Kubeconfig};
use crate::model::layout::{self, Layout};
use crate::model::params::{BACKDATE, ClusterParams};
use crate::storage::session::Session;

/// One inventory entry.
#[derive(Clone, Copy, Debug)]
pub enum Artifact {
    Ca(&'static CaSpec),
    Leaf(&'static LeafSpec),
    ServiceAccount,
    Kubeconfig(&'static KubeconfigSpec),
}

impl Artifact {
    pub fn name(&self) -> &'static str {
        match self {
            Artifact::Ca(c) => c.name,
            Artifact::Leaf(l) => l.name,
            Artifact::ServiceAccount => "sa",
            Artifact::Kubeconfig(k) => k.name,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// New key and certificate (or key pair, or kubeconfig).
    Generate,
    /// sa.key exists, sa.pub is derived from it.
    DerivePublicKey,
    /// Exists and fits its slot.
    UseExisting,
    /// A CA certificate present without its key.
    UseExternal,
    /// Missing, and its CA is external: someone else must sign it.
    NeedsExternalSigning,
    /// Exists but does not fit; see the plan's problems.
    Unusable,
}

#[derive(Debug)]
pub struct Step {
    pub artifact: Artifact,
    pub decision: Decision,
    /// The files this step concerns (written, or in the way).
    pub files: Vec<PathBuf>,
    /// What a generated certificate will contain.
    pub template: Option<CertTemplate>,
}

enum CaMaterial {
    Existing {
        cert: Box<Certificate>,
        key: Option<PrivateKey>,
    },
    New,
}

pub struct Plan {
    pub steps: Vec<Step>,
    pub findings: Findings,
    layout: Layout,
    cas: BTreeMap<CaId, CaMaterial>,
    sa_key: Option<PrivateKey>,
}

impl Plan {
    /// False when an existing file is unfit: then nothing may be written.
    pub fn can_write(&self) -> bool {
        self.findings.is_ok()
    }

    /// Missing files an external CA must sign (their CA's key is not here), one error per CA.
    pub fn external_gaps(&self) -> Vec<Error> {
        let mut by_ca: BTreeMap<CaId, Vec<PathBuf>> = BTreeMap::new();
        for s in &self.steps {
            if s.decision == Decision::NeedsExternalSigning {
                let ca = match s.artifact {
                    Artifact::Leaf(l) => l.issuer,
                    _ => CaId::Ca,
                };
                by_ca.entry(ca).or_default().extend(s.files.iter().cloned());
            }
        }
        by_ca
            .into_iter()
            .map(|(id, missing)| {
                let ca = inventory::ca(id);
                Error::ExternalCaMissing {
                    ca: ca.name,
                    ca_key: self.layout.ca_key(ca),
                    missing,
                }
            })
            .collect()
    }

    pub fn generates_anything(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.decision, Decision::Generate | Decision::DerivePublicKey))
    }
}

/// Reads the existing PKI and decides, per inventory entry, what `init` does.
pub fn plan(params: &ClusterParams, now: OffsetDateTime) -> Result<Plan> {
    params.validate().map_err(Error::Invalid)?;
    let layout = Layout::new(&params.cert_dir, &params.kubeconfig_dir);
    let mut plan = Plan {
        steps: Vec::new(),
        findings: Findings::default(),
        layout: layout.clone(),
        cas: BTreeMap::new(),
        sa_key: None,
    };

    for ca in inventory::CAS
        .iter()
        .filter(|c| params.local_etcd || !c.local_etcd_only)
    {
        plan_ca(&mut plan, ca, now)?;
    }
    for leaf in inventory::LEAVES
        .iter()
        .filter(|l| params.local_etcd || !l.local_etcd_only)
    {
        plan_leaf(&mut plan, params, leaf, now)?;
    }
    plan_service_account(&mut plan)?;
    for kc in inventory::KUBECONFIGS {
        if kc.since_1_29 && !params.has_super_admin() {
            continue;
        }
        plan_kubeconfig(&mut plan, params, kc, now)?;
    }
    Ok(plan)
}

/// Reads a file that must be parseable if present: a parse error becomes a plan problem
/// (reported with everything else), an I/O error aborts planning.
fn read_or_note<T>(f: &mut Findings, r: Result<Option<T>>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(v),
        Err(e @ Error::Io { .. }) => Err(e),
        Err(e) => {
            f.problems.push(e);
            Ok(None)
        }
    }
}

fn present(path: &std::path::Path) -> Result<bool> {
    crate::fsio::exists(path)
}

fn plan_ca(plan: &mut Plan, ca: &'static CaSpec, now: OffsetDateTime) -> Result<()> {
    let (crt, key) = (plan.layout.ca_cert(ca), plan.layout.ca_key(ca));
    let (crt_exists, key_exists) = (present(&crt)?, present(&key)?);
    let cert = read_or_note(&mut plan.findings, layout::read_cert(&crt))?;
    let k = read_or_note(&mut plan.findings, layout::read_key(&key))?;
    let mut step = Step {
        artifact: Artifact::Ca(ca),
        decision: Decision::Unusable,
        files: vec![crt.clone(), key.clone()],
        template: None,
    };
    match (crt_exists, key_exists) {
        (false, false) => {
            step.decision = Decision::Generate;
            step.template = Some(ClusterParams::ca_template(ca));
            plan.cas.insert(ca.id, CaMaterial::New);
        }
        (false, true) => plan.findings.problems.push(Error::WrongForSlot {
            path: key.clone(),
            reason: format!(
                "exists without {}; restore the certificate or remove the key",
                crt.display()
            ),
        }),
        (true, _) => {
            if let Some(cert) = cert {
                let f = check::check_ca(&cert, &crt, k.as_ref().map(|k| (k, key.as_path())), now);
                if f.is_ok() && (k.is_some() || !key_exists) {
                    step.decision = if key_exists {
                        Decision::UseExisting
                    } else {
                        Decision::UseExternal
                    };
                    plan.cas.insert(
                        ca.id,
                        CaMaterial::Existing {
                            cert: Box::new(cert),
                            key: k,
                        },
                    );
                }
                plan.findings.extend(f);
            }
        }
    }
    plan.steps.push(step);
    Ok(())
}

fn ca_lookup(plan: &Plan, id: CaId) -> Option<&CaMaterial> {
    plan.cas.get(&id)
}

/// New certificates are cut off at their CA's expiry; say so when that shortens them.
fn warn_if_clamped(
    plan: &mut Plan,
    params: &ClusterParams,
    id: CaId,
    name: &str,
    now: OffsetDateTime,
) {
    if let Some(CaMaterial::Existing { cert, .. }) = plan.cas.get(&id)
        && duration::after(now, params.cert_validity) > cert.not_after
    {
        let msg = format!(
            "{name}: the {} CA expires {}, so the new certificate will expire then too",
            inventory::ca(id).name,
            crate::format::dates::format_date(cert.not_after)
        );
        plan.findings.warnings.push(msg);
    }
}

fn plan_leaf(
    plan: &mut Plan,
    params: &ClusterParams,
    leaf: &'static LeafSpec,
    now: OffsetDateTime,
) -> Result<()> {
    let (crt, key) = (plan.layout.leaf_cert(leaf), plan.layout.leaf_key(leaf));
    let template = params.leaf_template(leaf).map_err(Error::Invalid)?;
    let (crt_exists, key_exists) = (present(&crt)?, present(&key)?);
    let mut step = Step {
        artifact: Artifact::Leaf(leaf),
        decision: Decision::Unusable,
        files: vec![crt.clone(), key.clone()],
        template: Some(template.clone()),
    };
    let ca_spec = inventory::ca(leaf.issuer);
    match (crt_exists, key_exists) {
        (false, false) => {
            step.decision = match ca_lookup(plan, leaf.issuer) {
                Some(CaMaterial::New) | Some(CaMaterial::Existing { key: Some(_), .. }) => {
                    Decision::Generate
                }
                Some(CaMaterial::Existing { key: None, .. }) => Decision::NeedsExternalSigning,
                // The CA itself is unusable and already reported.
                None => Decision::Unusable,
            };
            if step.decision == Decision::Generate {
                warn_if_clamped(plan, params, leaf.issuer, leaf.name, now);
            }
        }
        (true, false) | (false, true) => {
            let (have, lack) = if crt_exists {
                (&crt, &key)
            } else {
                (&key, &crt)
            };
            plan.findings.problems.push(Error::WrongForSlot {
                path: have.clone(),
                reason: format!(
                    "exists without {}; kubepki will not pair it with a new file",
                    lack.display()
                ),
            });
        }
        (true, true) => {
            let cert = read_or_note(&mut plan.findings, layout::read_cert(&crt))?;
            let k = read_or_note(&mut plan.findings, layout::read_key(&key))?;
            if let (Some(cert), Some(k)) = (cert, k) {
                let ca_path = plan.layout.ca_cert(ca_spec);
                let ca_cert = match ca_lookup(plan, leaf.issuer) {
                    Some(CaMaterial::Existing { cert, .. }) => Some((&**cert, ca_path.as_path())),
                    _ => None,
                };
                let f = check::check_leaf(&cert, &crt, Some((&k, &key)), &template, ca_cert, now);
                if f.is_ok() {
                    step.decision = Decision::UseExisting;
                }
                plan.findings.extend(f);
            }
        }
    }
    plan.steps.push(step);
    Ok(())
}

fn plan_service_account(plan: &mut Plan) -> Result<()> {
    let (key_path, pub_path) = (plan.layout.sa_key(), plan.layout.sa_pub());
    let (key_exists, pub_exists) = (present(&key_path)?, present(&pub_path)?);
    let mut step = Step {
        artifact: Artifact::ServiceAccount,
        decision: Decision::Unusable,
        files: vec![key_path.clone(), pub_path.clone()],
        template: None,
    };
    match (key_exists, pub_exists) {
        (false, false) => step.decision = Decision::Generate,
        (false, true) => plan.findings.problems.push(Error::WrongForSlot {
            path: pub_path.clone(),
            reason: format!("exists without {}", key_path.display()),
        }),
        (true, _) => {
            if let Some(k) = read_or_note(&mut plan.findings, layout::read_key(&key_path))? {
                if pub_exists {
                    let bytes = crate::fsio::read(&pub_path)?;
                    match crate::crypto::key::public_key_from_pem(&bytes) {
                        Err(reason) => plan.findings.problems.push(Error::BadPublicKey {
                            path: pub_path.clone(),
                            reason,
                        }),
                        Ok(spki) if !k.matches_public_key(&spki) => {
                            plan.findings.problems.push(Error::KeyMismatch {
                                cert: pub_path.clone(),
                                key: key_path.clone(),
                            })
                        }
                        Ok(_) => step.decision = Decision::UseExisting,
                    }
                } else {
                    step.decision = Decision::DerivePublicKey;
                }
                plan.sa_key = Some(k);
            }
        }
    }
    plan.steps.push(step);
    Ok(())
}

fn plan_kubeconfig(
    plan: &mut Plan,
    params: &ClusterParams,
    kc: &'static KubeconfigSpec,
    now: OffsetDateTime,
) -> Result<()> {
    let path = plan.layout.kubeconfig(kc);
    let template = params.kubeconfig_template(kc);
    let mut step = Step {
        artifact: Artifact::Kubeconfig(kc),
        decision: Decision::Unusable,
        files: vec![path.clone()],
        template: Some(template.clone()),
    };
    if !present(&path)? {
        step.decision = match ca_lookup(plan, CaId::Ca) {
            Some(CaMaterial::New) | Some(CaMaterial::Existing { key: Some(_), .. }) => {
                Decision::Generate
            }
            Some(CaMaterial::Existing { key: None, .. }) => Decision::NeedsExternalSigning,
            None => Decision::Unusable,
        };
        if step.decision == Decision::Generate {
            warn_if_clamped(plan, params, CaId::Ca, kc.name, now);
        }
        plan.steps.push(step);
        return Ok(());
    }
    let mut f = Findings::default();
    let ca_path = plan.layout.ca_cert(inventory::ca(CaId::Ca));
    let ca_cert = match ca_lookup(plan, CaId::Ca) {
        Some(CaMaterial::Existing { cert, .. }) => Some(cert),
        _ => None,
    };
    match kubeconfig::read_credentials(&path) {
        Err(e) => f.problems.push(e),
        Ok(creds) => {
            let bad = |reason: String| Error::Kubeconfig {
                path: path.clone(),
                reason,
            };
            match creds.client_chain() {
                Err(r) => f.problems.push(bad(format!("client certificate: {r}"))),
                Ok(chain) => {
                    let key = match creds.key_pem.as_deref().map(PrivateKey::from_pem) {
                        None => {
                            f.problems.push(bad("has no client key".into()));
                            None
                        }
                        Some(Err(r)) => {
                            f.problems.push(bad(format!("client key: {r}")));
                            None
                        }
                        Some(Ok(k)) => Some(k),
                    };
                    let found = check::check_leaf(
                        &chain[0],
                        &path,
                        key.as_ref().map(|k| (k, path.as_path())),
                        &template,
                        ca_cert.map(|c| (&**c, ca_path.as_path())),
                        now,
                    );
                    f.extend(found);
                }
            }
            if let (Some(ca_pem), Some(ca)) = (&creds.ca_pem, ca_cert) {
                let same = Certificate::from_pem_chain(ca_pem)
                    .map(|c| c.iter().any(|c| c.der() == ca.der()))
                    .unwrap_or(false);
                if !same {
                    f.problems.push(bad(format!(
                        "certificate-authority-data is not the CA in {}",
                        ca_path.display()
                    )));
                }
            }
            let want = params.server_url(kc.server);
            if creds.server != want {
                f.warnings.push(format!(
                    "{}: server is {}, expected {want}",
                    path.display(),
                    creds.server
                ));
            }
        }
    }
    if !kc.kubeadm_managed {
        // kubelet.conf belongs to the kubelet after bootstrap: report, never block on it.
        f.warnings
            .extend(f.problems.drain(..).map(|e| e.to_string()));
    }
    if f.is_ok() {
        step.decision = Decision::UseExisting;
    }
    plan.findings.extend(f);
    plan.steps.push(step);
    Ok(())
}

/// Progress events for the caller to print.
#[derive(Debug)]
pub enum Event<'a> {
    GeneratingKeys { count: usize },
    Wrote { step: &'a Step },
}

/// Generates and writes everything the plan marks `Generate`/`DerivePublicKey`, as one
/// transaction of new files: all of them appear, or none (even if killed). Refuses a plan
/// with problems. Plan within the same session, so that nothing changed in between.
pub fn execute(
    session: &Session,
    plan: &Plan,
    params: &ClusterParams,
    now: OffsetDateTime,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<PathBuf>> {
    if !plan.can_write() {
        return Err(Error::Invalid(
            "existing files are unfit for their slots; nothing was written".into(),
        ));
    }
    let to_generate: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| s.decision == Decision::Generate)
        .collect();
    progress(Event::GeneratingKeys {
        count: to_generate.len(),
    });
    // Key generation dominates (RSA especially) and is independent per key.
    let keys: Vec<PrivateKey> = to_generate
        .par_iter()
        .map(|_| PrivateKey::generate(params.key_algorithm))
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::Crypto)?;
    let mut new_keys: BTreeMap<&'static str, PrivateKey> = to_generate
        .iter()
        .map(|s| s.artifact.name())
        .zip(keys)
        .collect();

    let not_before = now - BACKDATE;
    let mut files = session.transaction("init")?;

    // CAs first: leaves need them.
    let mut cas: BTreeMap<CaId, (Certificate, &PrivateKey)> = BTreeMap::new();
    let mut new_ca_certs: BTreeMap<CaId, Certificate> = BTreeMap::new();
    for s in &to_generate {
        if let Artifact::Ca(ca) = s.artifact {
            let key = &new_keys[ca.name];
            let cert = issue::issue(
                s.template.as_ref().expect("CA steps carry a template"),
                key.public_key_der(),
                Signer::SelfSigned(key),
                not_before,
                duration::after(now, params.ca_validity),
            )
            .map_err(Error::Crypto)?;
            new_ca_certs.insert(ca.id, cert);
        }
    }
    for (id, m) in &plan.cas {
        match m {
            CaMaterial::Existing { cert, key: Some(k) } => {
                cas.insert(*id, ((**cert).clone(), k));
            }
            CaMaterial::New => {
                let spec = inventory::ca(*id);
                cas.insert(*id, (new_ca_certs[id].clone(), &new_keys[spec.name]));
            }
            CaMaterial::Existing { key: None, .. } => {}
        }
    }

    // Leaves and kubeconfig client certs, signed in parallel.
    let signed: Vec<(usize, std::result::Result<Certificate, String>)> = to_generate
        .par_iter()
        .enumerate()
        .filter(|(_, s)| !matches!(s.artifact, Artifact::Ca(_) | Artifact::ServiceAccount))
        .map(|(i, s)| {
            let issuer = match s.artifact {
                Artifact::Leaf(l) => l.issuer,
                _ => CaId::Ca,
            };
            let (ca_cert, ca_key) = &cas[&issuer];
            let key = &new_keys[s.artifact.name()];
            let not_after = clamp(
                duration::after(now, params.cert_validity),
                ca_cert.not_after,
            );
            let r = issue::issue(
                s.template.as_ref().expect("leaf steps carry a template"),
                key.public_key_der(),
                Signer::Ca {
                    cert: ca_cert,
                    key: ca_key,
                },
                not_before,
                not_after,
            );
            (i, r)
        })
        .collect();
    let mut leaf_certs: BTreeMap<usize, Certificate> = BTreeMap::new();
    for (i, r) in signed {
        leaf_certs.insert(i, r.map_err(Error::Crypto)?);
    }

    let ca_pem = |id: CaId| -> Result<String> {
        match &plan.cas.get(&id) {
            // The file's certificates (a chain, maybe) as the kubeconfig's trust.
            Some(CaMaterial::Existing { .. }) => {
                layout::read_ca_bundle_pem(&plan.layout.ca_cert(inventory::ca(id)))
            }
            _ => Ok(new_ca_certs[&id].to_pem()),
        }
    };

    for (i, s) in to_generate.iter().enumerate() {
        match s.artifact {
            Artifact::Ca(ca) => {
                let key = new_keys.remove(ca.name).expect("generated above");
                files.create(
                    &plan.layout.ca_cert(ca),
                    new_ca_certs[&ca.id].to_pem().as_bytes(),
                    fsio::CERT_MODE,
                )?;
                files.create(
                    &plan.layout.ca_key(ca),
                    key_pem(&key)?.as_bytes(),
                    fsio::KEY_MODE,
                )?;
                // Keep the key for signing below; put it back.
                new_keys.insert(ca.name, key);
            }
            Artifact::Leaf(l) => {
                files.create(
                    &plan.layout.leaf_cert(l),
                    leaf_certs[&i].to_pem().as_bytes(),
                    fsio::CERT_MODE,
                )?;
                files.create(
                    &plan.layout.leaf_key(l),
                    key_pem(&new_keys[l.name])?.as_bytes(),
                    fsio::KEY_MODE,
                )?;
            }
            Artifact::ServiceAccount => {
                let key = &new_keys["sa"];
                files.create(
                    &plan.layout.sa_key(),
                    key_pem(key)?.as_bytes(),
                    fsio::KEY_MODE,
                )?;
                files.create(
                    &plan.layout.sa_pub(),
                    key.public_key_pem().as_bytes(),
                    fsio::CERT_MODE,
                )?;
            }
            Artifact::Kubeconfig(kc) => {
                let t = s
                    .template
                    .as_ref()
                    .expect("kubeconfig steps carry a template");
                let yaml = Kubeconfig::embedded(
                    &params.cluster_name,
                    &params.server_url(kc.server),
                    &ca_pem(CaId::Ca)?,
                    &t.common_name,
                    &leaf_certs[&i].to_pem(),
                    &key_pem(&new_keys[kc.name])?,
                )
                .to_yaml();
                files.create(
                    &plan.layout.kubeconfig(kc),
                    yaml.as_bytes(),
                    fsio::KUBECONFIG_MODE,
                )?;
            }
        }
    }
    if let Some(step) = plan
        .steps
        .iter()
        .find(|s| s.decision == Decision::DerivePublicKey)
    {
        let key = plan
            .sa_key
            .as_ref()
            .expect("planned from an existing sa.key");
        files.create(
            &step.files[1],
            key.public_key_pem().as_bytes(),
            fsio::CERT_MODE,
        )?;
    }
    let written = files.commit()?;
    for s in plan
        .steps
        .iter()
        .filter(|s| matches!(s.decision, Decision::Generate | Decision::DerivePublicKey))
    {
        progress(Event::Wrote { step: s });
    }
    Ok(written)
}

fn key_pem(k: &PrivateKey) -> Result<String> {
    k.to_pem().map_err(Error::Crypto)
}

/// A certificate never outlives its CA: past that date it could not be verified anyway.
fn clamp(not_after: OffsetDateTime, ca_not_after: OffsetDateTime) -> OffsetDateTime {
    not_after.min(ca_not_after)
}
