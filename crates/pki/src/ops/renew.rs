//! `certs renew`: kubeadm's renewal (attributes from the existing certificate, fresh keys,
//! kubeconfigs refreshed from ca.crt) without its gaps: only what expires within a window if
//! asked, extra SANs, a chosen validity, a backup first, and an all-or-nothing swap.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rayon::prelude::*;
use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::issue::{self, CertTemplate};
use crate::crypto::issuer::Issuer;
use crate::crypto::key::{KeyAlgorithm, PrivateKey};
use crate::error::{Error, ParamError, Refusal, Result, SlotProblem};
use crate::format::dates::format_date;
pub use crate::model::inventory::Component;
use crate::model::inventory::{self, CaId, ReadBy, SanRule};
use crate::model::layout::{Layout, NewFile};
use crate::model::slot::{self, Item, NewPems};
use crate::storage::session::Session;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// kubeadm's `all`: every certificate kubeadm renews (not kubelet.conf).
    All,
    Named(Vec<String>),
}

/// SANs to add on renewal, per group of extra SANs (the inventory's [`SanRule`]).
#[derive(Clone, Debug, Default)]
pub struct ExtraSans {
    pub apiserver: Vec<String>,
    pub etcd_server: Vec<String>,
    pub etcd_peer: Vec<String>,
}

impl ExtraSans {
    /// The SANs to add to a certificate made by `rule`.
    fn for_rule(&self, rule: SanRule) -> &[String] {
        match rule {
            SanRule::None => &[],
            SanRule::ApiServer => &self.apiserver,
            SanRule::EtcdServer => &self.etcd_server,
            SanRule::EtcdPeer => &self.etcd_peer,
        }
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.apiserver
            .iter()
            .chain(&self.etcd_server)
            .chain(&self.etcd_peer)
    }
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
        .map_err(ParamError::from)?;
        for s in self.extra_sans.all() {
            crate::model::params::validate_san(s)?;
        }
        Ok(())
    }

    /// The items selected: kubeadm's list for `all`; else each name once (kubelet.conf too),
    /// in the order first named.
    fn items(&self) -> Result<Vec<Item>> {
        let names = match &self.selection {
            Selection::All => return Ok(slot::kubeadm_items(self.local_etcd)),
            Selection::Named(names) => names,
        };
        let mut out: Vec<Item> = Vec::new();
        for item in slot::named(names, &slot::signable_items(self.local_etcd))? {
            if !out.iter().any(|i| i.name() == item.name()) {
                out.push(item);
            }
        }
        Ok(out)
    }
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
    /// The CAs the targets need that passed their checks (external ones cannot sign).
    issuers: BTreeMap<CaId, Issuer>,
}

impl Plan {
    pub fn to_renew(&self) -> impl Iterator<Item = &Target> {
        self.targets
            .iter()
            .filter(|t| matches!(t.action, Action::Renew { .. }))
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
            Err(Error::slot(
                path,
                SlotProblem::SymlinkTo {
                    target,
                    outside: !inside,
                },
            ))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Decides, per selected item, what a renewal does, after reading and checking each CA the
/// selection needs once.
pub fn plan(layout: &Layout, req: &Request, now: OffsetDateTime) -> Result<Plan> {
    req.validate()?;
    let items = req.items()?;
    let mut plan = Plan {
        targets: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        layout: layout.clone(),
        issuers: BTreeMap::new(),
    };
    plan.load_issuers(&items, now);
    for item in items {
        let target = plan.target(item, req, now)?;
        plan.targets.push(target);
    }
    if matches!(req.selection, Selection::Named(_)) {
        for t in &plan.targets {
            if t.action == Action::Missing {
                plan.problems.push(Error::not_found(
                    &t.files[0],
                    "not found: nothing to renew (kubepki init creates missing files)",
                ));
            }
        }
    }
    if req.extra_sans.all().next().is_some()
        && !plan.to_renew().any(|t| t.item.san_rule() != SanRule::None)
    {
        plan.warnings.push("extra SANs were given, but no apiserver or etcd server/peer certificate is being renewed".into());
    }
    Ok(plan)
}

impl Plan {
    /// The CAs of `items`, each read and checked once: a problem is the plan's, and its
    /// items are not renewed.
    fn load_issuers(&mut self, items: &[Item], now: OffsetDateTime) {
        for id in items.iter().map(|i| i.issuer()).collect::<BTreeSet<_>>() {
            let spec = inventory::ca(id);
            let crt = self.layout.ca_cert(spec);
            let ca = match Issuer::read(&crt, &self.layout.ca_key(spec)) {
                Ok(Some(ca)) => ca,
                Ok(None) => {
                    self.problems
                        .push(Error::not_found(crt, "CA certificate not found"));
                    continue;
                }
                Err(e) => {
                    self.problems.push(e);
                    continue;
                }
            };
            let found = ca.check(now);
            self.warnings.extend(found.warnings);
            if found.problems.is_empty() {
                self.issuers.insert(id, ca);
            } else {
                self.problems.extend(found.problems);
            }
        }
    }

    /// What happens to `item`: the first that applies of kubelet-managed, missing,
    /// unreadable, external, not due, renewed.
    fn target(&mut self, item: Item, req: &Request, now: OffsetDateTime) -> Result<Target> {
        let files = item.files(&self.layout);
        let roots = [
            self.layout.cert_dir.as_path(),
            self.layout.kubeconfig_dir.as_path(),
        ];
        for f in &files {
            if let Err(e) = regular_file(f, &roots) {
                self.problems.push(e);
            }
        }
        let mut t = Target {
            item,
            files,
            action: Action::Missing,
            template: None,
            algorithm: None,
        };
        if item.rotated_by_kubelet(&self.layout)? {
            t.action = Action::KubeletManaged;
            return Ok(t);
        }
        let old = match item.read_cert(&self.layout) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(t),
            Err(e) => {
                self.problems.push(e);
                t.action = Action::Unreadable;
                return Ok(t);
            }
        };
        if self
            .issuers
            .get(&item.issuer())
            .is_some_and(|ca| !ca.can_sign())
        {
            t.action = Action::External {
                ca: inventory::ca(item.issuer()).name,
            };
            return Ok(t);
        }
        if let Some(w) = req.expiring_within
            && old.not_after - now > time::Duration::try_from(w).unwrap_or(time::Duration::MAX)
        {
            t.action = Action::NotDue {
                expires: old.not_after,
            };
            return Ok(t);
        }
        // The old key must be the certificate's: a mismatch or an unreadable key means the
        // pair is not what it seems (a half-done manual change, a file from elsewhere), and
        // renewing would hide that. Like init, refuse and name the files.
        if let Err(e) = item.check_key(&self.layout, &old) {
            self.problems.push(e);
        }
        let mut template = CertTemplate::from_certificate(&old);
        let added = add_sans(&mut template, req.extra_sans.for_rule(item.san_rule()));
        t.algorithm = req.key_algorithm.or(old.key_algorithm);
        if t.algorithm.is_none() {
            self.problems
                .push(Error::slot(&t.files[0], SlotProblem::KeyTypeNotGenerable));
        }
        t.template = Some(template);
        t.action = Action::Renew { added_sans: added };
        Ok(t)
    }

    /// New keys and certificates for `targets` (issued in parallel), as the files to write.
    fn new_files(
        &self,
        targets: &[&Target],
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<NewFile>> {
        let issued: Vec<Result<(PrivateKey, Certificate)>> = targets
            .par_iter()
            .map(|t| {
                let key = PrivateKey::generate(t.algorithm.expect("checked in plan"))?;
                let template = t.template.as_ref().expect("renew targets carry a template");
                let issued = self.issuers[&t.item.issuer()]
                    .sign(template, key.public_key_der(), now, validity)
                    .map_err(Error::Issue)?;
                Ok((key, issued.cert))
            })
            .collect();
        let mut files = Vec::new();
        for (t, r) in targets.iter().zip(issued) {
            let (key, cert) = r?;
            let new = NewPems {
                cert: &cert.to_pem(),
                key: &key.to_pem()?,
                ca: &self.issuers[&t.item.issuer()].bundle_pem(),
            };
            files.extend(t.item.renewed_files(&self.layout, new)?);
        }
        Ok(files)
    }
}

/// Adds to `template` the SANs of `extra` it lacks (DNS names compare case-insensitively);
/// returns them as `IP:x` / `DNS:y`.
fn add_sans(template: &mut CertTemplate, extra: &[String]) -> Vec<String> {
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
    added
}

/// What a renewal did.
#[derive(Debug)]
pub struct Outcome {
    pub renewed: Vec<Item>,
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
        return Err(Error::Refused(Refusal::Renew));
    }
    let targets: Vec<&Target> = plan.to_renew().collect();
    if targets.is_empty() {
        return Ok(Outcome {
            renewed: Vec::new(),
            backup: None,
            written: Vec::new(),
        });
    }
    let files = plan.new_files(&targets, req.validity, now)?;

    // Stage first (a read-only or full cert dir fails here, before anything else exists),
    // then back up, then swap. Until the commit a failure changes nothing: the transaction
    // removes what it staged and the backup of a renewal that did not happen.
    let mut r = session.transaction("renew")?;
    for f in &files {
        r.replace(&f.path, &f.contents, f.kind.mode())?;
    }
    let old_files: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    r.back_up(
        backup_dir,
        &old_files,
        &plan.layout,
        &crate::format::dates::rfc3339_utc(now),
    )?;
    let written = r.commit()?;
    Ok(Outcome {
        renewed: targets.iter().map(|t| t.item).collect(),
        backup: Some(backup_dir.to_path_buf()),
        written,
    })
}

/// The components that read renewed items only at start (the inventory's `read_by`), each
/// once. etcd is not one: it loads its serving and peer certificates on every new connection;
/// admin.conf, super-admin.conf and the healthcheck client belong to clients that read them
/// per use.
pub fn restart_needed(items: &[Item]) -> Vec<Component> {
    let mut out: Vec<Component> = items.iter().filter_map(|i| i.read_by().restart()).collect();
    out.sort();
    out.dedup();
    out
}

/// Whether etcd's serving or peer certificate is among `items` (it reloads them itself).
pub fn reloaded_by_etcd(items: &[Item]) -> bool {
    items.iter().any(|i| i.read_by() == ReadBy::EtcdConnections)
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
