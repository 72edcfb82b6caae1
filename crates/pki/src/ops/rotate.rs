//! CA rotation: replacing `ca`, `front-proxy-ca`, `etcd-ca` or the service-account key pair
//! (`sa`) without a moment where a component trusts neither what it is shown nor what it
//! shows, in overlap phases:
//!
//! | phase  | trust file (`<ca>.crt` / `sa.pub`) | signing key | leaves and kubeconfig clients |
//! |--------|-------------------------------------|-------------|-------------------------------|
//! | none   | old                                 | old         | signed by old                 |
//! | trust  | old + new (old first)               | old         | unchanged; kubeconfigs trust both |
//! | switch | new + old (new first)               | new         | re-issued by new              |
//! | none   | new (after `finish`)                | new         | signed by new                 |
//!
//! The first certificate (or public key) of a trust file is the one its key belongs to, so
//! every other command reads a rotating PKI as it reads any other. The other half of the pair
//! waits in `<ca>.rotation.crt/.key` (`sa.rotation.key`): the new CA during trust, the old
//! one during switch, so that `rollback` can step back from either phase.
//!
//! kube-controller-manager refuses a signing certificate file with two certificates, and
//! kubeadm points its `--cluster-signing-cert-file` at `ca.crt`; while `ca` rotates it signs
//! from `ca-signer.crt/.key` (one certificate: the current signer). The two flags of its
//! static pod manifest are changed at `trust`, their old values recorded, and put back when
//! the rotation ends.
//!
//! Each step is one journaled transaction (the record `kubepki-rotation.json` included), so a
//! killed step is finished or undone by the next command that writes. Before a step, the
//! files must agree with the record: a hand-edited PKI is refused, naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::files;
use crate::crypto::issue::CertTemplate;
use crate::crypto::issuer::Issuer;
use crate::crypto::key::{self, KeyAlgorithm, PrivateKey};
use crate::error::{Error, Refusal, Result, RotationProblem};
use crate::fsio::sha256_hex;
use crate::model::inventory::{self, CaId, CaSpec, Component, KUBECONFIGS};
use crate::model::kubeconfig;
use crate::model::layout::{FileKind, Layout, NewFile};
use crate::model::slot::{self, Item, NewPems};
use crate::storage::session::Session;

/// Format of `kubepki-rotation.json`.
const FORMAT: u32 = 1;

/// What rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    #[serde(rename = "ca")]
    Ca,
    #[serde(rename = "front-proxy-ca")]
    FrontProxyCa,
    #[serde(rename = "etcd-ca")]
    EtcdCa,
    #[serde(rename = "sa")]
    Sa,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Ca, Target::FrontProxyCa, Target::EtcdCa, Target::Sa];

    pub fn name(self) -> &'static str {
        match self {
            Target::Ca => "ca",
            Target::FrontProxyCa => "front-proxy-ca",
            Target::EtcdCa => "etcd-ca",
            Target::Sa => "sa",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }

    fn ca(self) -> Option<&'static CaSpec> {
        match self {
            Target::Ca => Some(inventory::ca(CaId::Ca)),
            Target::FrontProxyCa => Some(inventory::ca(CaId::FrontProxyCa)),
            Target::EtcdCa => Some(inventory::ca(CaId::EtcdCa)),
            Target::Sa => None,
        }
    }

    /// What verifies with it: `<ca>.crt`, or `sa.pub`.
    pub fn trust_file(self, l: &Layout) -> PathBuf {
        self.ca().map_or_else(|| l.sa_pub(), |c| l.ca_cert(c))
    }

    /// What signs with it: `<ca>.key`, or `sa.key`.
    pub fn key_file(self, l: &Layout) -> PathBuf {
        self.ca().map_or_else(|| l.sa_key(), |c| l.ca_key(c))
    }

    /// The other CA certificate of a rotation (none for `sa`: its trust file holds keys).
    fn other_cert(self, l: &Layout) -> Option<PathBuf> {
        self.ca().map(|c| l.rotation_cert(c))
    }

    fn other_key(self, l: &Layout) -> PathBuf {
        self.ca()
            .map_or_else(|| l.sa_rotation_key(), |c| l.rotation_key(c))
    }

    /// The components that read its files only when they start, in the order to restart them
    /// (etcd first, members one at a time; then the API server, then its clients).
    pub fn readers(self, switching_keys: bool, layout: &Layout) -> Vec<Component> {
        use Component::*;
        let mut v = match self {
            Target::Ca => vec![KubeApiserver, KubeControllerManager, KubeScheduler, Kubelet],
            Target::FrontProxyCa => vec![KubeApiserver, KubeControllerManager],
            Target::EtcdCa => vec![Etcd, KubeApiserver],
            // The API server verifies with sa.pub; the controller-manager signs with sa.key.
            Target::Sa if switching_keys => vec![KubeApiserver, KubeControllerManager],
            Target::Sa => vec![KubeApiserver],
        };
        if self == Target::Ca
            && inventory::kubeconfig("kubelet.conf").is_none_or(|k| !layout.kubeconfig(k).exists())
        {
            v.retain(|c| *c != Kubelet);
        }
        v
    }
}

/// The phase a rotation is in (none when no record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Trust,
    Switch,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Trust => "trust",
            Phase::Switch => "switch",
        }
    }
}

fn phase_name(p: Option<Phase>) -> &'static str {
    p.map_or("none", Phase::name)
}

/// A step the user asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Trust,
    Switch,
    Finish,
    Rollback,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Trust => "trust",
            Step::Switch => "switch",
            Step::Finish => "finish",
            Step::Rollback => "rollback",
        }
    }

    /// The phase a target moves to from `from`, or why it cannot; `Ok(None)` ends the
    /// rotation. Asking for the phase a target is already in is a no-op (`Err(None)`).
    fn next(self, from: Option<Phase>) -> std::result::Result<Option<Phase>, Option<&'static str>> {
        match (self, from) {
            (Step::Trust, None) => Ok(Some(Phase::Trust)),
            (Step::Trust, Some(Phase::Trust)) | (Step::Switch, Some(Phase::Switch)) => Err(None),
            (Step::Switch, Some(Phase::Trust)) => Ok(Some(Phase::Switch)),
            (Step::Finish, Some(Phase::Switch)) => Ok(None),
            (Step::Rollback, Some(Phase::Switch)) => Ok(Some(Phase::Trust)),
            (Step::Rollback, Some(Phase::Trust)) => Ok(None),
            (Step::Trust, Some(Phase::Switch)) => Err(Some(
                "trust comes first; run finish (or rollback) to end this rotation",
            )),
            (Step::Switch, None) => Err(Some("run trust first")),
            (Step::Finish, Some(Phase::Trust)) => Err(Some("run switch first")),
            (Step::Finish | Step::Rollback, None) => Err(None),
        }
    }
}

/// The controller-manager manifest's signer flags as they were before the rotation of `ca`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerFlags {
    pub cert: String,
    pub key: String,
}

/// One rotation in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub phase: Phase,
    /// SHA-256 of the old CA certificate's DER (of the public key's DER for `sa`).
    pub old: String,
    pub new: String,
    pub started: String,
    /// Set when kubepki changed the controller-manager manifest's signer flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_flags: Option<SignerFlags>,
    /// When the new CA (or key) began to sign; kept by a rollback to trust, since what it
    /// signed meanwhile may still be in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched: Option<String>,
}

/// `kubepki-rotation.json`: the rotations in progress on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    kubepki_rotation: u32,
    pub rotations: BTreeMap<Target, Record>,
}

impl State {
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<State> {
        let s: State = serde_json::from_slice(bytes)
            .map_err(|e| Error::rotation(path, RotationProblem::Unreadable(e)))?;
        if s.kubepki_rotation > FORMAT {
            return Err(Error::rotation(
                path,
                RotationProblem::Format(s.kubepki_rotation),
            ));
        }
        Ok(s)
    }

    pub fn read(layout: &Layout) -> Result<State> {
        let p = layout.rotation_state();
        if !crate::fsio::exists(&p)? {
            return Ok(State::default());
        }
        State::parse(&p, &crate::fsio::read(&p)?)
    }

    pub fn phase(&self, t: Target) -> Option<Phase> {
        self.rotations.get(&t).map(|r| r.phase)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.clone();
        s.kubepki_rotation = FORMAT;
        let mut v = serde_json::to_vec_pretty(&s).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// One CA (or service-account key pair): its certificate (none for `sa`), public key, and
/// private key when it is here.
#[derive(Clone, Debug)]
pub struct Side {
    pub cert: Option<Certificate>,
    pub spki: Vec<u8>,
    pub key: Option<Arc<PrivateKey>>,
    /// The key as it is written: as read (a key read from a file is written back byte for
    /// byte, also on the other nodes), or as first encoded.
    key_pem: Option<String>,
}

impl Side {
    fn of_cert(cert: Certificate, key: Option<PrivateKey>) -> Result<Side> {
        let mut s = Side {
            spki: cert.public_key_der().to_vec(),
            cert: Some(cert),
            key: None,
            key_pem: None,
        };
        if let Some(k) = key {
            s.set_key(k, None)?;
        }
        Ok(s)
    }

    fn of_key(key: PrivateKey, pem: Option<String>) -> Result<Side> {
        let mut s = Side {
            cert: None,
            spki: key.public_key_der().to_vec(),
            key: None,
            key_pem: None,
        };
        s.set_key(key, pem)?;
        Ok(s)
    }

    /// Sets the key, written as `pem` (its file's text) or encoded now.
    fn set_key(&mut self, key: PrivateKey, pem: Option<String>) -> Result<()> {
        self.key_pem = Some(match pem {
            Some(p) => p,
            None => key.to_pem()?,
        });
        self.key = Some(Arc::new(key));
        Ok(())
    }

    fn pem(&self) -> Option<&str> {
        self.key_pem.as_deref()
    }

    /// What identifies it: SHA-256 of the certificate's DER, or of the public key's.
    pub fn id(&self) -> String {
        sha256_hex(self.cert.as_ref().map_or(&self.spki[..], |c| c.der()))
    }

    /// As it appears in a trust file.
    fn trust_pem(&self) -> String {
        match &self.cert {
            Some(c) => c.to_pem(),
            None => key::pem_encode("PUBLIC KEY", &self.spki),
        }
    }

    /// For messages: the CN (or "public key") and the start of the fingerprint.
    pub fn describe(&self) -> String {
        let id = self.id();
        match &self.cert {
            Some(c) => format!("CN={} sha256:{}", c.common_name, &id[..16]),
            None => format!("public key sha256:{}", &id[..16]),
        }
    }

    /// kubeadm's `--discovery-token-ca-cert-hash` for this CA: SHA-256 of its public key.
    pub fn discovery_hash(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.spki))
    }

    fn key_matches(&self, k: &PrivateKey) -> bool {
        k.matches_public_key(&self.spki)
    }
}

/// The trust file's entries, in order (no keys).
fn read_trust(t: Target, l: &Layout) -> Result<Option<Vec<Side>>> {
    let path = t.trust_file(l);
    if t == Target::Sa {
        if !crate::fsio::exists(&path)? {
            return Ok(None);
        }
        let bytes = crate::fsio::read(&path)?;
        let keys = key::public_keys_from_pem(&bytes).map_err(|reason| Error::BadPublicKey {
            path: path.clone(),
            reason,
        })?;
        return Ok(Some(
            keys.into_iter()
                .map(|spki| Side {
                    cert: None,
                    spki,
                    key: None,
                    key_pem: None,
                })
                .collect(),
        ));
    }
    Ok(files::read_cert_chain(&path)?.map(|c| {
        c.into_iter()
            .map(|cert| Side {
                spki: cert.public_key_der().to_vec(),
                cert: Some(cert),
                key: None,
                key_pem: None,
            })
            .collect()
    }))
}

/// The text a side's key is written as.
fn key_text(s: &Side) -> Result<String> {
    match (s.pem(), &s.key) {
        (Some(p), _) => Ok(p.to_string()),
        (None, Some(k)) => Ok(k.to_pem()?),
        (None, None) => Ok(String::new()),
    }
}

/// A key file and its text; `None` when absent.
fn read_key_text(path: &Path) -> Result<Option<(PrivateKey, String)>> {
    let Some(k) = files::read_key(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8(crate::fsio::read(path)?).ok();
    Ok(Some(match text {
        Some(t) => (k, t),
        None => {
            let t = k.to_pem()?;
            (k, t)
        }
    }))
}

fn trust_text(sides: &[&Side]) -> String {
    sides.iter().map(|s| s.trust_pem()).collect()
}

/// What the new CA (or key) of a trust step is made from.
#[derive(Debug, Default)]
pub enum NewMaterial {
    /// Generated with the old one's key algorithm (RSA-2048 when that is unknown).
    #[default]
    Generate,
    /// Given files (`--new-ca-cert`, `--new-ca-key`); no key: an external CA.
    Files { cert: PathBuf, key: Option<PathBuf> },
    /// From another control-plane node's archive ([`import`]).
    Imported(BTreeMap<Target, Side>),
}

#[derive(Debug)]
pub struct Request {
    pub step: Step,
    pub targets: Vec<Target>,
    pub new: NewMaterial,
    /// Lifetime of leaves re-issued at switch (as `renew`'s `--validity`).
    pub validity: Duration,
    /// Lifetime of a generated CA.
    pub ca_validity: Duration,
    /// Finish even though something here is still signed by the old CA.
    pub force: bool,
    /// The kubelet's directory, whose certificates `finish` checks.
    pub kubelet_dir: Option<PathBuf>,
}

/// What a step does to one target.
#[derive(Debug)]
pub struct TargetPlan {
    pub target: Target,
    pub from: Option<Phase>,
    pub to: Option<Phase>,
    /// False when the target is already where the step takes it.
    pub changes: bool,
    pub old: Side,
    pub new: Side,
    /// Leaves and kubeconfig client certificates re-issued.
    pub reissued: Vec<&'static str>,
}

pub struct Plan {
    pub step: Step,
    pub targets: Vec<TargetPlan>,
    pub files: Vec<NewFile>,
    pub removed: Vec<PathBuf>,
    pub problems: Vec<Error>,
    pub warnings: Vec<String>,
    /// What must restart to load the step, in order.
    pub restart: Vec<Component>,
    layout: Layout,
}

impl Plan {
    pub fn changes(&self) -> bool {
        self.targets.iter().any(|t| t.changes)
    }

    /// The files the controller-manager must sign with once this step is done.
    pub fn signer_after(&self) -> (PathBuf, PathBuf) {
        let rotating = self
            .targets
            .iter()
            .any(|t| t.target == Target::Ca && t.to.is_some());
        let state_says = State::read(&self.layout)
            .map(|s| s.phase(Target::Ca).is_some())
            .unwrap_or(false);
        let in_rotation = if self.targets.iter().any(|t| t.target == Target::Ca) {
            rotating
        } else {
            state_says
        };
        signer_files(&self.layout, in_rotation)
    }
}

/// `ca-signer.crt/.key` during a rotation of `ca`, `ca.crt/.key` otherwise.
pub fn signer_files(l: &Layout, rotating_ca: bool) -> (PathBuf, PathBuf) {
    if rotating_ca {
        (l.signer_cert(), l.signer_key())
    } else {
        let ca = inventory::ca(CaId::Ca);
        (l.ca_cert(ca), l.ca_key(ca))
    }
}

/// The two halves of a target's rotation as found on disk, checked against the record.
struct Found {
    old: Side,
    new: Option<Side>,
}

/// Reads a target's files and checks them against `rec` (the rotation record's entry):
/// the trust file's order, the key, the other half, the signer files.
fn read_found(t: Target, l: &Layout, rec: Option<&Record>) -> Result<Option<Found>> {
    let Some(trust) = read_trust(t, l)? else {
        return Ok(None);
    };
    let tf = t.trust_file(l);
    let state = l.rotation_state();
    let disagree = |path: &Path, found: String, expected: String| {
        Error::rotation(
            path,
            RotationProblem::Disagrees {
                target: t.name(),
                found,
                expected,
                state: state.clone(),
            },
        )
    };
    let key = read_key_text(&t.key_file(l))?;
    let Some(rec) = rec else {
        if trust.len() != 1 {
            return Err(Error::rotation(
                &tf,
                RotationProblem::UnrecordedBundle(trust.len()),
            ));
        }
        for p in t.other_cert(l).into_iter().chain([t.other_key(l)]) {
            if crate::fsio::exists(&p)? {
                return Err(disagree(
                    &p,
                    "a file".into(),
                    "nothing (no rotation is recorded)".into(),
                ));
            }
        }
        let mut old = trust.into_iter().next().expect("one");
        if let Some((k, text)) = key {
            if !old.key_matches(&k) {
                return Err(mismatch(t, l));
            }
            old.set_key(k, Some(text))?;
        }
        return Ok(Some(Found { old, new: None }));
    };
    let (first, second) = match rec.phase {
        Phase::Trust => (&rec.old, &rec.new),
        Phase::Switch => (&rec.new, &rec.old),
    };
    let ids: Vec<String> = trust.iter().map(Side::id).collect();
    if ids.len() != 2 || ids[0] != *first || ids[1] != *second {
        return Err(disagree(
            &tf,
            format!("{} entries ({})", ids.len(), short_ids(&ids)),
            format!(
                "2 ({}) for phase {}",
                short_ids(&[first.clone(), second.clone()]),
                rec.phase.name()
            ),
        ));
    }
    let mut it = trust.into_iter();
    let (mut signing, mut other) = (it.next().expect("two"), it.next().expect("two"));
    if let Some((k, text)) = key {
        if !signing.key_matches(&k) {
            return Err(mismatch(t, l));
        }
        signing.set_key(k, Some(text))?;
    }
    if let Some(oc) = t.other_cert(l) {
        match files::read_cert(&oc)? {
            Some(c) if sha256_hex(c.der()) == *second => {}
            Some(c) => {
                return Err(disagree(
                    &oc,
                    short_ids(&[sha256_hex(c.der())]),
                    short_ids(std::slice::from_ref(second)),
                ));
            }
            None => {
                return Err(disagree(
                    &oc,
                    "nothing".into(),
                    short_ids(std::slice::from_ref(second)),
                ));
            }
        }
    }
    let ok = t.other_key(l);
    if let Some((k, text)) = read_key_text(&ok)? {
        if !other.key_matches(&k) {
            return Err(Error::KeyMismatch {
                cert: t.other_cert(l).unwrap_or_else(|| tf.clone()),
                key: ok,
            });
        }
        other.set_key(k, Some(text))?;
    } else if t == Target::Sa {
        return Err(disagree(&ok, "nothing".into(), "the other key".into()));
    }
    if t == Target::Ca && signing.key.is_some() {
        let sc = l.signer_cert();
        match files::read_cert_chain(&sc)? {
            Some(c) if c.len() == 1 && sha256_hex(c[0].der()) == signing.id() => {}
            found => {
                return Err(disagree(
                    &sc,
                    found.map_or("nothing".into(), |c| {
                        short_ids(&c.iter().map(|c| sha256_hex(c.der())).collect::<Vec<_>>())
                    }),
                    format!("the signing CA {}", short_ids(&[signing.id()])),
                ));
            }
        }
    }
    Ok(Some(match rec.phase {
        Phase::Trust => Found {
            old: signing,
            new: Some(other),
        },
        Phase::Switch => Found {
            old: other,
            new: Some(signing),
        },
    }))
}

fn mismatch(t: Target, l: &Layout) -> Error {
    if t == Target::Sa {
        Error::PublicKeyMismatch {
            public: t.trust_file(l),
            key: t.key_file(l),
        }
    } else {
        Error::KeyMismatch {
            cert: t.trust_file(l),
            key: t.key_file(l),
        }
    }
}

fn short_ids(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("sha256:{}", &i[..i.len().min(16)]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The items (leaves, kubeconfig client certificates) a target's CA signs that exist here
/// and that kubepki writes (not the kubelet's rotated files).
fn signed_items(t: Target, l: &Layout) -> Result<Vec<(Item, Certificate)>> {
    let Some(ca) = t.ca() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in slot::signable_items(true) {
        if item.issuer() != ca.id || item.rotated_by_kubelet(l)? {
            continue;
        }
        if let Some(c) = item.read_cert(l)? {
            out.push((item, c));
        }
    }
    Ok(out)
}

/// The kubeconfigs that embed the cluster CA (`ca` only).
fn ca_kubeconfigs(l: &Layout) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for k in KUBECONFIGS {
        let p = l.kubeconfig(k);
        if crate::fsio::exists(&p)? {
            v.push(p);
        }
    }
    Ok(v)
}

/// The kubelet's certificates under `kubelet_dir` signed by `ca` (checked by `finish`).
pub fn kubelet_certs(kubelet_dir: &Path) -> Vec<PathBuf> {
    [
        "pki/kubelet-client-current.pem",
        "pki/kubelet-server-current.pem",
        "pki/kubelet.crt",
    ]
    .iter()
    .map(|f| kubelet_dir.join(f))
    .filter(|p| p.exists())
    .collect()
}

fn read_any_cert(p: &Path) -> Result<Option<Certificate>> {
    match files::read_cert_with_key(p) {
        Ok(c) => Ok(c),
        Err(_) => files::read_cert(p),
    }
}

/// Plans `req` on the PKI of `layout` at `now`.
pub fn plan(layout: &Layout, req: &Request, now: OffsetDateTime) -> Result<Plan> {
    let state = State::read(layout)?;
    let mut plan = Plan {
        step: req.step,
        targets: Vec::new(),
        files: Vec::new(),
        removed: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        restart: Vec::new(),
        layout: layout.clone(),
    };
    if !matches!(req.new, NewMaterial::Generate) && req.step != Step::Trust {
        return Err(Error::Param(crate::error::ParamError::Usage(
            "--new-ca-cert, --new-ca-key and --import apply to trust only".into(),
        )));
    }
    if matches!(req.new, NewMaterial::Files { .. }) && req.targets.len() != 1 {
        return Err(Error::Param(crate::error::ParamError::Usage(
            "--new-ca-cert names the new CA of one CA: name exactly one of ca, front-proxy-ca, etcd-ca".into(),
        )));
    }
    let mut new_state = state.clone();
    let mut bundles: BTreeMap<Target, String> = BTreeMap::new();
    for &t in &req.targets {
        let rec = state.rotations.get(&t);
        let Some(found) = read_found(t, layout, rec)? else {
            if !matches!(req.new, NewMaterial::Files { .. }) && req.targets.len() > 1 {
                // `all` on a node without this CA (external etcd): nothing to rotate.
                plan.warnings.push(format!(
                    "{}: {} not found, skipped",
                    t.name(),
                    t.trust_file(layout).display()
                ));
                continue;
            }
            return Err(Error::not_found(
                t.trust_file(layout),
                "not found: nothing to rotate",
            ));
        };
        let from = rec.map(|r| r.phase);
        let to = match req.step.next(from) {
            Ok(to) => to,
            Err(None) => {
                // Already there: but given material must be what this node already has, or
                // the nodes would end up with different new CAs.
                if let (Some(have), false) = (&found.new, matches!(req.new, NewMaterial::Generate))
                {
                    let given = new_side(t, &found.old, req, now)?;
                    if given.id() != have.id() {
                        return Err(Error::rotation(
                            layout.rotation_state(),
                            RotationProblem::OtherNewCa {
                                target: t.name(),
                                have: have.describe(),
                                given: given.describe(),
                            },
                        ));
                    }
                }
                plan.targets.push(TargetPlan {
                    target: t,
                    from,
                    to: from,
                    changes: false,
                    new: found.new.clone().unwrap_or_else(|| found.old.clone()),
                    old: found.old,
                    reissued: Vec::new(),
                });
                continue;
            }
            Err(Some(wanted)) => {
                return Err(Error::rotation(
                    layout.rotation_state(),
                    RotationProblem::OutOfOrder {
                        target: t.name(),
                        phase: phase_name(from),
                        wanted,
                    },
                ));
            }
        };
        let new = match found.new {
            Some(n) => n,
            None => new_side(t, &found.old, req, now)?,
        };
        if new.id() == found.old.id() {
            return Err(Error::rotation(
                t.trust_file(layout),
                RotationProblem::SameCa,
            ));
        }
        let tp = plan.target_files(t, found.old, new, from, to, req, now, &mut new_state)?;
        if let Some(b) = tp.1 {
            bundles.insert(t, b);
        }
        plan.targets.push(tp.0);
    }
    if !plan.changes() {
        return Ok(plan);
    }
    plan.files.push(NewFile {
        path: layout.rotation_state(),
        contents: new_state.to_bytes(),
        kind: FileKind::RotationState,
    });
    if new_state.rotations.is_empty() {
        plan.files.pop();
        if crate::fsio::exists(&layout.rotation_state())? {
            plan.removed.push(layout.rotation_state());
        }
    }
    // Every file at most once: a kubeconfig whose client certificate is re-issued already
    // carries the new trust bundle.
    let mut seen = std::collections::BTreeSet::new();
    plan.files.retain(|f| seen.insert(f.path.clone()));
    for c in [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kubelet,
    ] {
        let needed = plan.targets.iter().filter(|t| t.changes).any(|t| {
            let keys = t.target == Target::Sa
                && (t.to == Some(Phase::Switch) || t.from == Some(Phase::Switch));
            t.target.readers(keys, layout).contains(&c)
        });
        if needed {
            plan.restart.push(c);
        }
    }
    let _ = bundles;
    Ok(plan)
}

/// A new CA (or key) for `t`, as the request says, checked.
fn new_side(t: Target, old: &Side, req: &Request, now: OffsetDateTime) -> Result<Side> {
    let side = match &req.new {
        NewMaterial::Imported(m) => m.get(&t).cloned().ok_or_else(|| {
            Error::Param(crate::error::ParamError::Usage(format!(
                "the archive holds no new {}; rotate exactly what the first node rotated",
                t.name()
            )))
        })?,
        NewMaterial::Files { cert, key } => {
            let certs = files::read_cert_chain(cert)?
                .ok_or_else(|| Error::not_found(cert, "new CA certificate not found"))?;
            if certs.len() != 1 {
                return Err(Error::rotation(
                    cert,
                    RotationProblem::NotOneCertificate(certs.len()),
                ));
            }
            let (k, text) = match key {
                Some(k) => {
                    let (parsed, text) = read_key_text(k)?
                        .ok_or_else(|| Error::not_found(k, "new CA key not found"))?;
                    (Some(parsed), Some(text))
                }
                None => (None, None),
            };
            let c = certs.into_iter().next().expect("one");
            let issuer = Issuer::new(vec![c], k, cert, key.as_deref().unwrap_or(cert));
            let found = issuer.check(now);
            if let Some(p) = found.problems.into_iter().next() {
                return Err(p);
            }
            let c = issuer.cert().clone();
            let k = issuer.into_key();
            if k.is_none() && old.key.is_some() {
                return Err(Error::Param(crate::error::ParamError::Usage(
                    "--new-ca-key is missing: the old CA's key is here, so kubepki signs with the new one at switch and needs its key".into(),
                )));
            }
            let mut side = Side::of_cert(c, None)?;
            if let (Some(k), Some(text)) = (k, text) {
                side.set_key(k, Some(text))?;
            }
            side
        }
        NewMaterial::Generate => {
            let alg = old
                .key
                .as_ref()
                .map(|k| k.algorithm())
                .or_else(|| old.cert.as_ref().and_then(|c| c.key_algorithm))
                .unwrap_or(KeyAlgorithm::Rsa2048);
            if old.key.is_none() {
                return Err(Error::Param(crate::error::ParamError::Usage(format!(
                    "{}: the old key is not here (an external CA); give the new CA with --new-ca-cert",
                    t.name()
                ))));
            }
            let key = PrivateKey::generate(alg)?;
            match &old.cert {
                None => Side::of_key(key, None)?,
                Some(oc) => {
                    let mut tpl = CertTemplate::from_certificate(oc);
                    tpl.is_ca = true;
                    let p = Path::new("");
                    let issuer = Issuer::new_root(&tpl, key, now, req.ca_validity, p, p)
                        .map_err(Error::Issue)?;
                    let cert = issuer.cert().clone();
                    Side::of_cert(cert, issuer.into_key())?
                }
            }
        }
    };
    if let Some(c) = &side.cert {
        if !c.is_ca {
            return Err(Error::NotCa {
                path: PathBuf::from(t.name()),
            });
        }
        let needed = crate::format::duration::after(now, req.validity);
        if c.not_after < needed {
            return Err(Error::rotation(
                PathBuf::from(format!("new {}", t.name())),
                RotationProblem::NewCaTooShort {
                    not_after: c.not_after,
                    validity: req.validity,
                },
            ));
        }
    }
    Ok(side)
}

impl Plan {
    /// The files of moving `t` from `from` to `to` (`None`: no rotation), and the record.
    #[allow(clippy::too_many_arguments)]
    fn target_files(
        &mut self,
        t: Target,
        old: Side,
        new: Side,
        from: Option<Phase>,
        to: Option<Phase>,
        req: &Request,
        now: OffsetDateTime,
        state: &mut State,
    ) -> Result<(TargetPlan, Option<String>)> {
        let l = self.layout.clone();
        // Who signs and who waits in the rotation files after the step.
        let (signing, waiting): (&Side, Option<&Side>) = match to {
            Some(Phase::Trust) => (&old, Some(&new)),
            Some(Phase::Switch) => (&new, Some(&old)),
            None if req.step == Step::Finish => (&new, None),
            None => (&old, None),
        };
        let trust: Vec<&Side> = std::iter::once(signing).chain(waiting).collect();
        let bundle = trust_text(&trust);
        let file = |path: PathBuf, contents: String, kind: FileKind| NewFile {
            path,
            contents: contents.into_bytes(),
            kind,
        };
        self.files.push(file(
            t.trust_file(&l),
            bundle.clone(),
            if t == Target::Sa {
                FileKind::PublicKey
            } else {
                FileKind::Certificate
            },
        ));
        // The signer changes at switch and at a rollback from switch, never otherwise.
        let signing_changes = matches!(
            (from, to),
            (Some(Phase::Trust), Some(Phase::Switch)) | (Some(Phase::Switch), Some(Phase::Trust))
        );
        let finishing = req.step == Step::Finish;
        if signing.key.is_some() {
            if signing_changes {
                self.files.push(file(
                    t.key_file(&l),
                    key_text(signing)?,
                    FileKind::PrivateKey,
                ));
            }
        } else if signing_changes && (old.key.is_some() || new.key.is_some()) {
            self.problems.push(Error::not_found(
                t.key_file(&l),
                "the key of the CA that signs after this step is not here",
            ));
        }
        match waiting {
            Some(w) => {
                if let Some(oc) = t.other_cert(&l) {
                    let c = w.cert.as_ref().expect("a CA has a certificate");
                    self.files.push(file(oc, c.to_pem(), FileKind::Certificate));
                }
                match &w.key {
                    Some(_) => {
                        self.files
                            .push(file(t.other_key(&l), key_text(w)?, FileKind::PrivateKey))
                    }
                    None => self.remove_if_present(&t.other_key(&l))?,
                }
            }
            None => {
                if let Some(oc) = t.other_cert(&l) {
                    self.remove_if_present(&oc)?;
                }
                self.remove_if_present(&t.other_key(&l))?;
            }
        }
        let mut signer_flags = state.rotations.get(&t).and_then(|r| r.signer_flags.clone());
        if t == Target::Ca {
            self.signer(signing, to.is_some(), &mut signer_flags)?;
        }
        let mut reissued = Vec::new();
        if let Some(ca) = t.ca() {
            // Leaves follow the signer: re-issued when it changes.
            let items = signed_items(t, &l)?;
            let issuer = match &signing.key {
                Some(k) => Some(Issuer::new(
                    trust.iter().filter_map(|s| s.cert.clone()).collect(),
                    Some(k.try_clone()?),
                    &l.ca_cert(ca),
                    &l.ca_key(ca),
                )),
                None => None,
            };
            // The new RSA keys of the leaves a switch re-issues, made side by side (their
            // generation is most of a step's time; ECDSA keys cost less than the threads).
            let rsa = items.iter().any(|(_, c)| {
                c.key_algorithm
                    .is_none_or(|a| a != KeyAlgorithm::EcdsaP256 && a != KeyAlgorithm::EcdsaP384)
            });
            let mut keys: Vec<Option<PrivateKey>> = if signing_changes && issuer.is_some() && rsa {
                use rayon::prelude::*;
                items
                    .par_iter()
                    .map(|(_, c)| {
                        PrivateKey::generate(c.key_algorithm.unwrap_or(KeyAlgorithm::Rsa2048))
                            .map(Some)
                    })
                    .collect::<std::result::Result<_, _>>()?
            } else {
                items.iter().map(|_| None).collect()
            };
            for (i, (item, cert)) in items.into_iter().enumerate() {
                let signed_by_signing = signing.cert.as_ref().is_some_and(|c| cert.is_signed_by(c));
                if signed_by_signing {
                    continue;
                }
                let foreign = !trust
                    .iter()
                    .any(|s| s.cert.as_ref().is_some_and(|c| cert.is_signed_by(c)))
                    && !cert.is_signed_by(old.cert.as_ref().expect("CA"));
                if foreign {
                    self.problems.push(Error::WrongIssuer {
                        path: item.files(&l)[0].clone(),
                        ca: l.ca_cert(ca),
                    });
                    continue;
                }
                if !signing_changes {
                    // trust, finish: a leaf of the CA that is dropped blocks finish.
                    if finishing && !req.force {
                        self.problems.push(Error::rotation(
                            &item.files(&l)[0],
                            RotationProblem::SignedByOld { target: t.name() },
                        ));
                    }
                    continue;
                }
                let Some(issuer) = &issuer else {
                    self.warnings.push(format!(
                        "{}: the new {} is external; sign it with the new CA (certs generate-csr, certs import)",
                        item.name(),
                        t.name()
                    ));
                    continue;
                };
                let k = match keys[i].take() {
                    Some(k) => k,
                    None => {
                        PrivateKey::generate(cert.key_algorithm.unwrap_or(KeyAlgorithm::Rsa2048))?
                    }
                };
                let tpl = CertTemplate::from_certificate(&cert);
                let issued = issuer
                    .sign(&tpl, k.public_key_der(), now, req.validity)
                    .map_err(Error::Issue)?;
                let new_files = item.renewed_files(
                    &l,
                    NewPems {
                        cert: &issued.cert.to_pem(),
                        key: &k.to_pem()?,
                        ca: &bundle,
                    },
                )?;
                self.files.extend(new_files);
                reissued.push(item.name());
            }
            if t == Target::Ca {
                for p in ca_kubeconfigs(&l)? {
                    self.kubeconfig_trust(&p, &old, &new, &bundle)?;
                }
            }
            // Back to no rotation after a switch: what the new CA signed meanwhile is dropped.
            if req.step == Step::Rollback
                && to.is_none()
                && !req.force
                && t == Target::Ca
                && let (Some(kd), Some(nc)) = (&req.kubelet_dir, &new.cert)
            {
                for p in kubelet_certs(kd) {
                    if read_any_cert(&p)?.is_some_and(|c| c.is_signed_by(nc)) {
                        self.problems.push(Error::rotation(
                            &p,
                            RotationProblem::SignedByNew { target: t.name() },
                        ));
                    }
                }
            }
            if finishing
                && !req.force
                && t == Target::Ca
                && let Some(kd) = &req.kubelet_dir
            {
                let oc = old.cert.as_ref().expect("CA");
                for p in kubelet_certs(kd) {
                    if read_any_cert(&p)?.is_some_and(|c| c.is_signed_by(oc)) {
                        self.problems.push(Error::rotation(
                            &p,
                            RotationProblem::SignedByOld { target: t.name() },
                        ));
                    }
                }
            }
        }
        if let Some(switched) = state.rotations.get(&t).and_then(|r| r.switched.clone()) {
            if req.step == Step::Rollback && to.is_none() {
                // Only what is seen here can be refused (the kubelet's certificates above);
                // certificates the controller-manager signed for other nodes are not.
                self.warnings.push(
                    Error::rotation(
                        l.rotation_state(),
                        RotationProblem::SwitchedBefore {
                            target: t.name(),
                            switched,
                        },
                    )
                    .to_string(),
                );
            } else if t == Target::Sa && finishing {
                // Tokens from the TokenRequest API (projected volumes) signed by the old key
                // before switch are refreshed at 80% of their lifetime (an hour by default).
                let since = time::OffsetDateTime::parse(
                    &switched,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok();
                if since.is_none_or(|s| now - s < time::Duration::HOUR) {
                    self.warnings.push(format!(
                        "sa switched at {switched}, less than an hour ago: tokens the API server issued before (projected service-account volumes, kubectl create token) are refused once the old key is dropped; pods refresh projected tokens at 80% of their lifetime"
                    ));
                }
            }
        }
        match to {
            Some(phase) => {
                let started = state
                    .rotations
                    .get(&t)
                    .map(|r| r.started.clone())
                    .unwrap_or_else(|| crate::format::dates::rfc3339_utc(now));
                let switched = match (phase, state.rotations.get(&t)) {
                    (Phase::Switch, Some(r)) => Some(
                        r.switched
                            .clone()
                            .unwrap_or_else(|| crate::format::dates::rfc3339_utc(now)),
                    ),
                    (_, r) => r.and_then(|r| r.switched.clone()),
                };
                state.rotations.insert(
                    t,
                    Record {
                        phase,
                        old: old.id(),
                        new: new.id(),
                        started,
                        signer_flags,
                        switched,
                    },
                );
            }
            None => {
                state.rotations.remove(&t);
            }
        }
        Ok((
            TargetPlan {
                target: t,
                from,
                to,
                changes: true,
                old,
                new,
                reissued,
            },
            Some(bundle),
        ))
    }

    fn remove_if_present(&mut self, p: &Path) -> Result<()> {
        if crate::fsio::exists(p)? {
            self.removed.push(p.to_path_buf());
        }
        Ok(())
    }

    /// A kubeconfig trusts `bundle` after the step; what it trusts now must be the old CA,
    /// the new one, or both.
    fn kubeconfig_trust(&mut self, p: &Path, old: &Side, new: &Side, bundle: &str) -> Result<()> {
        let creds = match kubeconfig::read_credentials(p) {
            Ok(c) => c,
            Err(e) => {
                self.problems.push(e);
                return Ok(());
            }
        };
        let Some(ca) = creds.ca_pem else {
            return Ok(());
        };
        let certs = Certificate::from_pem_chain(&ca)
            .map_err(|e| Error::kubeconfig(p, crate::error::KubeconfigProblem::ClientCert(e)))?;
        let known = [old.id(), new.id()];
        for c in &certs {
            if !known.contains(&sha256_hex(c.der())) {
                self.problems.push(Error::rotation(
                    p,
                    RotationProblem::ForeignCa {
                        target: Target::Ca.name(),
                        subject: format!(
                            "CN={} sha256:{}",
                            c.common_name,
                            &sha256_hex(c.der())[..16]
                        ),
                    },
                ));
                return Ok(());
            }
        }
        if !self.files.iter().any(|f| f.path == p) {
            let text = crate::fsio::read_to_string(p)?;
            let yaml = kubeconfig::replace_ca(&text, p, bundle)?;
            self.files.push(NewFile {
                path: p.to_path_buf(),
                contents: yaml.into_bytes(),
                kind: FileKind::Kubeconfig,
            });
        }
        Ok(())
    }

    /// The controller-manager's signer during a rotation of `ca`: `ca-signer.*` hold the
    /// signing CA, and the manifest's two flags point at them; at the end both go back.
    fn signer(
        &mut self,
        signing: &Side,
        rotating: bool,
        flags: &mut Option<SignerFlags>,
    ) -> Result<()> {
        let l = self.layout.clone();
        if signing.key.is_none() {
            return Ok(());
        };
        if rotating {
            let c = signing.cert.as_ref().expect("a CA");
            self.files.push(NewFile {
                path: l.signer_cert(),
                contents: c.to_pem().into_bytes(),
                kind: FileKind::Certificate,
            });
            self.files.push(NewFile {
                path: l.signer_key(),
                contents: key_text(signing)?.into_bytes(),
                kind: FileKind::PrivateKey,
            });
        } else {
            self.remove_if_present(&l.signer_cert())?;
            self.remove_if_present(&l.signer_key())?;
        }
        let m = l.controller_manager_manifest();
        if !crate::fsio::exists(&m)? {
            if rotating && flags.is_none() {
                self.warnings.push(format!(
                    "no controller-manager manifest at {}: if your kube-controller-manager signs certificates, run it with --cluster-signing-cert-file={} --cluster-signing-key-file={} until the rotation of ca ends",
                    m.display(),
                    l.signer_cert().display(),
                    l.signer_key().display()
                ));
            }
            return Ok(());
        }
        let text = crate::fsio::read_to_string(&m)?;
        let unparsed = |line: String| {
            Error::rotation(
                &m,
                RotationProblem::ManifestFlag {
                    line,
                    signer: l.signer_cert(),
                },
            )
        };
        let cert_now = find_flag(&text, CERT_FLAG).map_err(unparsed)?;
        let key_now = find_flag(&text, KEY_FLAG).map_err(unparsed)?;
        let (Some(cert_now), Some(key_now)) = (cert_now, key_now) else {
            // A controller-manager that does not sign.
            return Ok(());
        };
        let (cert_now, key_now) = (cert_now.value, key_now.value);
        let named = |v: &str, file: &str| Path::new(v).file_name().is_some_and(|n| n == file);
        if flags.is_none() && !(named(&cert_now, "ca.crt") && named(&key_now, "ca.key")) {
            // It signs with another CA than the cluster's: ca.crt becoming a bundle is not its
            // concern.
            if rotating {
                self.warnings.push(format!(
                    "{}: the controller-manager signs with {cert_now}, not ca.crt: left as it is",
                    m.display()
                ));
            }
            return Ok(());
        }
        let sibling = |v: &str, name: &str| {
            Path::new(v)
                .parent()
                .unwrap_or(Path::new("/"))
                .join(name)
                .to_string_lossy()
                .into_owned()
        };
        let (want_cert, want_key) = match flags.as_ref() {
            Some(f) => (
                sibling(&f.cert, "ca-signer.crt"),
                sibling(&f.key, "ca-signer.key"),
            ),
            None => (
                sibling(&cert_now, "ca-signer.crt"),
                sibling(&key_now, "ca-signer.key"),
            ),
        };
        let new_text = match (flags.as_ref(), rotating) {
            (None, true) => {
                *flags = Some(SignerFlags {
                    cert: cert_now.clone(),
                    key: key_now.clone(),
                });
                set_flag(&text, CERT_FLAG, &want_cert)
                    .and_then(|t| set_flag(&t, KEY_FLAG, &want_key))
                    .map_err(unparsed)?
            }
            (Some(_), true) => {
                return self.check_flags(&m, &cert_now, &key_now, &want_cert, &want_key);
            }
            (Some(f), false) => {
                self.check_flags(&m, &cert_now, &key_now, &want_cert, &want_key)?;
                let t = set_flag(&text, CERT_FLAG, &f.cert)
                    .and_then(|t| set_flag(&t, KEY_FLAG, &f.key))
                    .map_err(unparsed)?;
                *flags = None;
                t
            }
            (None, false) => return Ok(()),
        };
        self.files.push(NewFile {
            path: m,
            contents: new_text.into_bytes(),
            kind: FileKind::Manifest,
        });
        Ok(())
    }

    fn check_flags(
        &mut self,
        m: &Path,
        cert_now: &str,
        key_now: &str,
        want_cert: &str,
        want_key: &str,
    ) -> Result<()> {
        for (flag, found, expected) in [
            (CERT_FLAG, cert_now, want_cert),
            (KEY_FLAG, key_now, want_key),
        ] {
            if found != expected {
                self.problems.push(Error::rotation(
                    m,
                    RotationProblem::ManifestChanged {
                        flag,
                        found: found.into(),
                        expected: expected.into(),
                    },
                ));
            }
        }
        Ok(())
    }
}

const CERT_FLAG: &str = "--cluster-signing-cert-file";
const KEY_FLAG: &str = "--cluster-signing-key-file";

/// A flag's value in a static pod manifest's command list: the line, and the byte span of the
/// value (inside its quotes, if any).
#[derive(Debug, PartialEq, Eq)]
struct FlagAt {
    value: String,
    start: usize,
    end: usize,
}

/// Where `flag` is set in `text`, as kubeadm writes it (`- --flag=value`) or quoted
/// (`- "--flag=value"`, `- --flag="value"`); `None` when absent. A line that mentions the flag
/// in any other form, or a second mention, is returned as the error: kubepki does not guess.
fn find_flag(text: &str, flag: &str) -> std::result::Result<Option<FlagAt>, String> {
    let mut found = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let at = offset;
        offset += line.len();
        if !line.contains(flag) {
            continue;
        }
        let bad = || line.trim_end().to_string();
        if found.is_some() {
            return Err(bad());
        }
        let content = line.trim_end_matches(['\n', '\r']);
        let body = content.trim_start();
        let item = body.strip_prefix("- ").ok_or_else(bad)?;
        let lead = content.len() - item.len();
        let item_end = item.trim_end().len();
        let item = &item[..item_end];
        // An item quoted as a whole.
        let (inner, inner_at) = match item.chars().next() {
            Some(q @ ('"' | '\'')) if item.len() >= 2 && item.ends_with(q) => {
                (&item[1..item.len() - 1], lead + 1)
            }
            Some('"' | '\'') => return Err(bad()),
            _ => (item, lead),
        };
        let value = inner
            .strip_prefix(flag)
            .and_then(|v| v.strip_prefix('='))
            .ok_or_else(bad)?;
        let mut v_at = inner_at + flag.len() + 1;
        let mut v = value;
        // A value quoted on its own.
        if let Some(q @ ('"' | '\'')) = v.chars().next() {
            if v.len() < 2 || !v.ends_with(q) {
                return Err(bad());
            }
            v = &v[1..v.len() - 1];
            v_at += 1;
        }
        if v.is_empty() || v.contains(['"', '\'', ' ']) {
            return Err(bad());
        }
        found = Some(FlagAt {
            value: v.to_string(),
            start: at + v_at,
            end: at + v_at + v.len(),
        });
    }
    Ok(found)
}

/// `text` with the value of `flag` replaced by `value`, every other byte kept (quotes, line
/// endings).
fn set_flag(text: &str, flag: &str, value: &str) -> std::result::Result<String, String> {
    match find_flag(text, flag)? {
        Some(f) => Ok(format!("{}{value}{}", &text[..f.start], &text[f.end..])),
        None => Ok(text.to_string()),
    }
}

/// What a step did.
#[derive(Debug)]
pub struct Outcome {
    pub written: Vec<PathBuf>,
    pub backup: Option<PathBuf>,
}

/// Backs up what the step replaces or removes, then writes it all in one transaction.
pub fn execute(
    session: &Session,
    plan: &Plan,
    now: OffsetDateTime,
    backup_dir: &Path,
) -> Result<Outcome> {
    if !plan.problems.is_empty() {
        return Err(Error::Refused(Refusal::Rotate));
    }
    if plan.files.is_empty() && plan.removed.is_empty() {
        return Ok(Outcome {
            written: Vec::new(),
            backup: None,
        });
    }
    let mut tx = session.transaction(&format!("ca rotate {}", plan.step.name()))?;
    for f in &plan.files {
        tx.replace(&f.path, &f.contents, f.kind.mode())?;
    }
    for p in &plan.removed {
        tx.remove(p)?;
    }
    let mut old: Vec<PathBuf> = Vec::new();
    for p in plan.files.iter().map(|f| &f.path).chain(&plan.removed) {
        if crate::fsio::exists(p)? {
            old.push(p.clone());
        }
    }
    tx.back_up(
        backup_dir,
        &old,
        session.layout(),
        &crate::format::dates::rfc3339_utc(now),
    )?;
    let written = tx.commit()?;
    Ok(Outcome {
        written,
        backup: Some(backup_dir.to_path_buf()),
    })
}

/// What `status` reports about one target.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub name: &'static str,
    pub phase: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// Files here that still trust the old CA (or key).
    pub trusts_old: Vec<PathBuf>,
    /// Files here still signed by the old CA.
    pub signed_by_old: Vec<PathBuf>,
    /// An error reading this target's files (the others are still reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The rotation status of every target present on this node.
pub fn status(layout: &Layout, kubelet_dir: Option<&Path>) -> Result<Vec<TargetStatus>> {
    let state = State::read(layout)?;
    let mut out = Vec::new();
    for t in Target::ALL {
        let rec = state.rotations.get(&t);
        let mut s = TargetStatus {
            name: t.name(),
            phase: phase_name(rec.map(|r| r.phase)),
            old: None,
            new: None,
            started: rec.map(|r| r.started.clone()),
            trusts_old: Vec::new(),
            signed_by_old: Vec::new(),
            error: None,
        };
        let found = match read_found(t, layout, rec) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) => {
                s.error = Some(e.to_string());
                out.push(s);
                continue;
            }
        };
        s.old = Some(found.old.describe());
        s.new = found.new.as_ref().map(Side::describe);
        if rec.is_some() {
            s.trusts_old.push(t.trust_file(layout));
            if let (Some(oc), Some(ca)) = (&found.old.cert, t.ca()) {
                for (item, c) in signed_items(t, layout)? {
                    if c.is_signed_by(oc) {
                        s.signed_by_old.push(item.files(layout)[0].clone());
                    }
                }
                if t == Target::Ca {
                    for p in ca_kubeconfigs(layout)? {
                        if kubeconfig::read_credentials(&p)
                            .ok()
                            .and_then(|c| c.ca_pem)
                            .and_then(|pem| Certificate::from_pem_chain(&pem).ok())
                            .is_some_and(|certs| certs.iter().any(|c| c.der() == oc.der()))
                        {
                            s.trusts_old.push(p);
                        }
                    }
                    if let Some(kd) = kubelet_dir {
                        for p in kubelet_certs(kd) {
                            if read_any_cert(&p)?.is_some_and(|c| c.is_signed_by(oc)) {
                                s.signed_by_old.push(p);
                            }
                        }
                    }
                }
                let _ = ca;
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// The old and (during a rotation) the new CA or key of `t` on this node, checked against the
/// rotation record; `None` when its files are absent.
pub fn sides(layout: &Layout, t: Target) -> Result<Option<(Side, Option<Side>)>> {
    let state = State::read(layout)?;
    Ok(read_found(t, layout, state.rotations.get(&t))?.map(|f| (f.old, f.new)))
}

/// Whether the service-account token `jwt` (compact JWS) is signed by the key whose public
/// half is `side`'s.
pub fn token_signed_by(jwt: &str, side: &Side) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.trim().split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let alg = b64
        .decode(h)
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|v| v["alg"].as_str().map(str::to_string));
    let (Some(alg), Ok(sig)) = (alg, b64.decode(sig)) else {
        return false;
    };
    let msg = format!("{h}.{p}");
    crate::crypto::cert::verify_jws(&side.spki, &alg, msg.as_bytes(), &sig)
}

// ---- moving the new CA material to the other control-plane nodes ----

const ARCHIVE_MAGIC: &[u8] = b"KUBEPKI-ROTATION-1\n";

#[derive(Serialize, Deserialize)]
struct ArchiveItem {
    target: Target,
    /// The old CA (or key) it replaces, as [`Side::id`]: an archive of another cluster is
    /// refused.
    old: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// The new CAs of `plan` (a trust step) encrypted with a fresh random 256-bit key
/// (AES-256-GCM): the archive's bytes and the key in hex, which is shown once and never stored.
pub fn export(plan: &Plan) -> Result<(Vec<u8>, String)> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let mut items = Vec::new();
    for t in &plan.targets {
        items.push(ArchiveItem {
            target: t.target,
            old: t.old.id(),
            cert: t.new.cert.as_ref().map(|c| c.to_pem()),
            key: t.new.pem().map(str::to_string),
        });
    }
    let mut data = serde_json::to_vec(&items).unwrap_or_default();
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut key).map_err(crate::error::CryptoError::from)?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(crate::error::CryptoError::from)?;
    let sealing = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key).map_err(crate::error::CryptoError::from)?,
    );
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ARCHIVE_MAGIC),
            &mut data,
        )
        .map_err(crate::error::CryptoError::from)?;
    let mut out = ARCHIVE_MAGIC.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&data);
    Ok((out, key.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Reads an archive [`export`] wrote, with the key it printed; checks that each new CA
/// replaces the CA this node has.
pub fn import(path: &Path, key_hex: &str, layout: &Layout) -> Result<BTreeMap<Target, Side>> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let bad = |what: &'static str| Error::rotation(path, RotationProblem::Archive(what));
    let bytes = crate::fsio::read(path)?;
    let key: Vec<u8> = (0..key_hex.len() / 2)
        .map(|i| u8::from_str_radix(key_hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("the certificate key is not 64 hexadecimal digits"))?;
    if key.len() != 32 || key_hex.len() != 64 {
        return Err(bad("the certificate key is not 64 hexadecimal digits"));
    }
    let rest = bytes
        .strip_prefix(ARCHIVE_MAGIC)
        .ok_or_else(|| bad("not a kubepki rotation archive"))?;
    if rest.len() < 12 + 16 {
        return Err(bad("truncated"));
    }
    let (nonce, sealed) = rest.split_at(12);
    let opening =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| bad("unusable key"))?);
    let mut buf = sealed.to_vec();
    let plain = opening
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad("truncated"))?,
            Aad::from(ARCHIVE_MAGIC),
            &mut buf,
        )
        .map_err(|_| bad("cannot be decrypted with this certificate key (wrong key, or the file was changed)"))?;
    let items: Vec<ArchiveItem> =
        serde_json::from_slice(plain).map_err(|_| bad("decrypted, but not a rotation archive"))?;
    let state = State::read(layout)?;
    let mut out = BTreeMap::new();
    for it in items {
        let key = it
            .key
            .as_deref()
            .map(|k| PrivateKey::from_pem(k.as_bytes()))
            .transpose()
            .map_err(|_| bad("holds an unreadable key"))?;
        // A CA comes with its certificate; the service-account key with its key and nothing else.
        match (it.target == Target::Sa, &it.cert, &it.key) {
            (false, Some(_), _) | (true, None, Some(_)) => {}
            _ => return Err(bad("holds an entry of the wrong shape for its target")),
        }
        let side = match (&it.cert, key) {
            (Some(c), key) => {
                let c = Certificate::from_pem_chain(c.as_bytes())
                    .map_err(|_| bad("holds an unreadable certificate"))?
                    .swap_remove(0);
                let mut s = Side::of_cert(c, None)?;
                if let (Some(k), Some(text)) = (key, &it.key) {
                    s.set_key(k, Some(text.clone()))?;
                }
                s
            }
            (None, Some(k)) => Side::of_key(k, it.key.clone())?,
            (None, None) => return Err(bad("holds an entry without certificate or key")),
        };
        if let Some(k) = &side.key
            && !side.key_matches(k)
        {
            return Err(bad("holds a key that does not match its certificate"));
        }
        // The old one must be this node's (before trust, or still the first during it).
        if let Some(found) = read_found(it.target, layout, state.rotations.get(&it.target))?
            && found.old.id() != it.old
        {
            return Err(Error::rotation(
                path,
                RotationProblem::ArchiveOtherCa {
                    target: it.target.name(),
                    found: found.old.describe(),
                },
            ));
        }
        out.insert(it.target, side);
    }
    Ok(out)
}

/// A worker node's trust: `ca.crt` and kubelet.conf's `certificate-authority-data` set to the
/// control plane's current `ca.crt` (`bundle`). Returns the files to write; the kubelet must
/// restart when kubelet.conf changes.
pub fn worker_files(layout: &Layout, bundle: &Path) -> Result<Vec<NewFile>> {
    let certs = files::read_cert_chain(bundle)?
        .ok_or_else(|| Error::not_found(bundle, "CA bundle not found"))?;
    worker_files_for(layout, certs, bundle)
}

/// As [`worker_files`], for the certificates `certs` read from `source` (a file, or the
/// ConfigMap kube-public/cluster-info, for messages).
pub fn worker_files_for(
    layout: &Layout,
    certs: Vec<Certificate>,
    source: &Path,
) -> Result<Vec<NewFile>> {
    let bundle = source;
    for c in &certs {
        if !c.is_ca {
            return Err(Error::NotCa {
                path: bundle.to_path_buf(),
            });
        }
    }
    let text = files::bundle_pem(&certs);
    let ca = inventory::ca(CaId::Ca);
    let mut out = Vec::new();
    if files::read_cert_chain(&layout.ca_cert(ca))?
        .is_none_or(|now| files::bundle_pem(&now) != text)
    {
        out.push(NewFile {
            path: layout.ca_cert(ca),
            contents: text.clone().into_bytes(),
            kind: FileKind::Certificate,
        });
    }
    if let Some(k) = inventory::kubeconfig("kubelet.conf") {
        let p = layout.kubeconfig(k);
        if crate::fsio::exists(&p)? {
            let creds = kubeconfig::read_credentials(&p)?;
            if creds.ca_pem.as_deref() != Some(text.as_bytes()) {
                let yaml = kubeconfig::replace_ca(&crate::fsio::read_to_string(&p)?, &p, &text)?;
                out.push(NewFile {
                    path: p,
                    contents: yaml.into_bytes(),
                    kind: FileKind::Kubeconfig,
                });
            }
        }
    }
    Ok(out)
}

/// Writes [`worker_files`] in one transaction with a backup.
pub fn execute_files(
    session: &Session,
    files: &[NewFile],
    now: OffsetDateTime,
    backup_dir: &Path,
) -> Result<Outcome> {
    if files.is_empty() {
        return Ok(Outcome {
            written: Vec::new(),
            backup: None,
        });
    }
    let mut tx = session.transaction("ca rotate worker")?;
    for f in files {
        tx.replace(&f.path, &f.contents, f.kind.mode())?;
    }
    let old: Vec<PathBuf> = files
        .iter()
        .map(|f| f.path.clone())
        .filter(|p| p.exists())
        .collect();
    tx.back_up(
        backup_dir,
        &old,
        session.layout(),
        &crate::format::dates::rfc3339_utc(now),
    )?;
    Ok(Outcome {
        written: tx.commit()?,
        backup: Some(backup_dir.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_move_through_the_phases_in_order_only() {
        use Phase::*;
        assert_eq!(Step::Trust.next(None), Ok(Some(Trust)));
        assert_eq!(Step::Switch.next(Some(Trust)), Ok(Some(Switch)));
        assert_eq!(Step::Finish.next(Some(Switch)), Ok(None));
        assert_eq!(Step::Rollback.next(Some(Switch)), Ok(Some(Trust)));
        assert_eq!(Step::Rollback.next(Some(Trust)), Ok(None));
        assert_eq!(Step::Trust.next(Some(Trust)), Err(None));
        assert!(matches!(Step::Switch.next(None), Err(Some(_))));
        assert!(matches!(Step::Finish.next(Some(Trust)), Err(Some(_))));
        assert!(matches!(Step::Trust.next(Some(Switch)), Err(Some(_))));
    }

    #[test]
    fn a_token_is_recognised_by_the_key_that_signed_it() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let k = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let other =
            Side::of_key(PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap(), None).unwrap();
        let h = b64.encode(r#"{"alg":"RS256","kid":""}"#);
        let p =
            b64.encode(r#"{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:a:b"}"#);
        let sig = b64.encode(k.sign(format!("{h}.{p}").as_bytes()).unwrap());
        let signer = Side::of_key(k, None).unwrap();
        let jwt = format!("{h}.{p}.{sig}");
        assert!(token_signed_by(&jwt, &signer));
        assert!(
            token_signed_by(&format!("{jwt}\n"), &signer),
            "the Secret's bytes may end in a newline"
        );
        assert!(!token_signed_by(&jwt, &other));
        let tampered = format!(
            "{h}.{}.{sig}",
            b64.encode(r#"{"sub":"system:serviceaccount:a:admin"}"#)
        );
        assert!(!token_signed_by(&tampered, &signer));
        let none = format!("{}.{p}.{sig}", b64.encode(r#"{"alg":"none"}"#));
        assert!(!token_signed_by(&none, &signer));
        for junk in ["", "a.b", "a.b.c.d", "!!.??.**", &format!("{h}.{p}.")] {
            assert!(!token_signed_by(junk, &signer), "{junk:?}");
        }
    }

    #[test]
    fn manifest_flags_change_their_value_only() {
        let m = "spec:\n  containers:\n  - command:\n    - kube-controller-manager\n    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt\n    - --cluster-signing-key-file=/etc/kubernetes/pki/ca.key\n    - --root-ca-file=/etc/kubernetes/pki/ca.crt\n";
        assert_eq!(
            find_flag(m, CERT_FLAG).unwrap().unwrap().value,
            "/etc/kubernetes/pki/ca.crt"
        );
        let changed = set_flag(m, CERT_FLAG, "/etc/kubernetes/pki/ca-signer.crt").unwrap();
        assert_eq!(
            changed,
            m.replace(
                "cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
                "cluster-signing-cert-file=/etc/kubernetes/pki/ca-signer.crt"
            )
        );
        assert!(changed.contains("--root-ca-file=/etc/kubernetes/pki/ca.crt\n"));
        // Quotes and CRLF are kept byte for byte, there and back.
        for form in [
            "    - \"--cluster-signing-cert-file=/p/ca.crt\"\r\n",
            "    - --cluster-signing-cert-file=\"/p/ca.crt\"\r\n",
            "    - '--cluster-signing-cert-file=/p/ca.crt'\n",
        ] {
            let there = set_flag(form, CERT_FLAG, "/p/ca-signer.crt").unwrap();
            assert_eq!(there, form.replace("/p/ca.crt", "/p/ca-signer.crt"));
            assert_eq!(set_flag(&there, CERT_FLAG, "/p/ca.crt").unwrap(), form);
        }
        // Forms kubepki does not edit are refused, not skipped.
        for bad in [
            "    - --cluster-signing-cert-file\n    - /p/ca.crt\n",
            "    - --cluster-signing-cert-file=/p/ca.crt\n    - --cluster-signing-cert-file=/q/ca.crt\n",
            "    args: [\"--cluster-signing-cert-file=/p/ca.crt\"]\n",
            "    - \"--cluster-signing-cert-file=/p/ca.crt\n",
        ] {
            assert!(find_flag(bad, CERT_FLAG).is_err(), "{bad:?}");
        }
        assert_eq!(find_flag("    - --other=1\n", CERT_FLAG), Ok(None));
    }
}
