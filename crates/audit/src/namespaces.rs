//! The Pod Security Standards as namespaces enforce them ("Enforcing Pod Security Standards"):
//! which namespaces carry no `pod-security.kubernetes.io/enforce` label (an unlabelled namespace
//! is "not yet evaluated"), enforce `privileged`, enforce without `warn` and `audit` at the same
//! or a stricter level (a missing `warn` label is none: the plugin defaults warn to enforce's
//! level), carry values the admission plugin cannot parse, or pin a policy version older than
//! the cluster's; and which running pods of each namespace would be rejected at `baseline` and
//! at `restricted`. A pod's finding is an error only where the namespace enforces the control's
//! level: warn and audit reject nothing, so at their level it is at most a warning.
//!
//! The pods are judged by [`crate::pss`], kubepki's own evaluation of the published controls, at
//! the policy version the cluster's PodSecurity admission plugin evaluates for the namespace's
//! enforce mode: the older of the cluster's minor and the namespace's `enforce-version` pin
//! (`latest` is the cluster's own). On API servers older than v1.23, which enable no such plugin
//! by default, or of unknown version, every namespace is judged at the newest policy kubepki
//! knows, [`pss::POLICY_VERSION`], whatever it pins: so the answer is the same on API servers
//! that predate the plugin. The UNLABELLED fix's level is judged at the version enforce will
//! use once labelled, so following it rejects no running pod. A pin counts for the pods added
//! after their namespace (the audit lists namespaces first); those added before are judged
//! unpinned.
//!
//! The audit reads paginated lists, so [`Namespaces`] takes one object at a time, namespaces and
//! pods in any order, and keeps no pod: per namespace three counts, and per workload (the pods'
//! controller, or a pod that has none) and control the number of its pods that violate it, a few
//! of their names and the offending fields of the first. Pods of one controller share its
//! template, so a Deployment of a thousand replicas is one finding per control, not a thousand.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::object;
use crate::pss::{self, CONTROLS, Level, Violation};
use crate::{Finding, Severity};

/// Every label the admission plugin reads begins with it.
const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// The first Kubernetes minor whose API servers enable the PodSecurity admission plugin by
/// default (beta in 1.23; alpha, off by default, in 1.22).
const PLUGIN_MINOR: u32 = 23;

/// How many pod names a per-control finding gives as examples.
const EXAMPLES: usize = 3;

/// How many pods without a controller a namespace's findings name one by one; the pods beyond
/// them share one finding per control, on the namespace, so that a namespace of thousands of
/// bare batch pods cannot flood the report (pods of a controller share one already).
pub const BARE_PODS_NAMED: usize = 50;

/// How many offending fields a per-control finding spells out; the rest are counted.
const FIELDS: usize = 4;

const PAGE_UNLABELLED: &str = "Enforcing Pod Security Standards: configure every namespace with \
                               a Pod Security level; an unlabelled namespace should only mean it \
                               has not yet been evaluated.";
const PAGE_PRIVILEGED: &str = "Enforcing Pod Security Standards: embrace least privilege; a \
                               namespace that allows privileged workloads should need to, and \
                               should restrict who may run them there.";
const PAGE_MULTI_MODE: &str = "Enforcing Pod Security Standards: adopt a multi-mode strategy, \
                               with warn and audit set to the level you enforce or a stricter \
                               one, so that violations show before anything is rejected.";
const PAGE_INVALID: &str = "Pod Security Admission: a mode label takes privileged, baseline or \
                            restricted, and a <mode>-version label latest or v1.<minor>.";
const PAGE_PINNED: &str = "Pod Security Admission: a <mode>-version label pins the policy to the \
                           one a Kubernetes minor version shipped; review pinned versions when \
                           the cluster is upgraded.";
const PAGE_REJECTS: &str = "Enforcing Pod Security Standards: analyse the workloads of each \
                            namespace against the Pod Security Standards to choose the level it \
                            can enforce.";
const PAGE_BASELINE: &str = "Pod Security Standards: the baseline profile prevents known \
                             privilege escalations while allowing the default pod configuration.";
const PAGE_RESTRICTED: &str = "Pod Security Standards: the restricted profile enforces current \
                               pod-hardening best practice, at some cost to compatibility.";

/// The three modes, in the order findings and commands name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Enforce,
    Warn,
    Audit,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Enforce, Mode::Warn, Mode::Audit];

    fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
        }
    }

    fn level_label(self) -> String {
        format!("{LABEL_PREFIX}{}", self.as_str())
    }

    fn version_label(self) -> String {
        format!("{LABEL_PREFIX}{}-version", self.as_str())
    }

    /// What the admission plugin evaluates for a level it cannot parse (`PolicyToEvaluate`):
    /// enforce fails closed, warn and audit fail open.
    fn invalid_level(self) -> Level {
        match self {
            Mode::Enforce => Level::Restricted,
            Mode::Warn | Mode::Audit => Level::Privileged,
        }
    }
}

/// A namespace's pod-security labels as the admission plugin resolves them.
#[derive(Clone, Debug, Default)]
struct Policy {
    /// The level each mode evaluates, by [`Mode::ALL`] order; none where its label is absent
    /// (the admission configuration's default applies, `privileged` unless configured). Warn
    /// without a label of its own evaluates enforce's level, as `PolicyToEvaluate` defaults it.
    levels: [Option<Level>; 3],
    /// Whether warn's level is enforce's by that default.
    warn_defaulted: bool,
    /// The minor the enforce-version label pins; none when absent, `latest` or invalid.
    enforce_version: Option<u32>,
}

impl Policy {
    fn level(&self, mode: Mode) -> Option<Level> {
        self.levels[mode as usize]
    }

    /// The modes that only report, warn and audit, whose level is `level` or stricter: the
    /// namespace asks for `level` there, but a pod violating it is still admitted.
    fn announcing(&self, level: Level) -> Vec<Mode> {
        [Mode::Warn, Mode::Audit]
            .into_iter()
            .filter(|&m| self.level(m).is_some_and(|l| l >= level))
            .collect()
    }

    fn describe(&self) -> String {
        let modes: Vec<String> = Mode::ALL
            .iter()
            .map(|&m| match self.level(m) {
                Some(l) if m == Mode::Warn && self.warn_defaulted => {
                    format!("warn={l} (enforce's, by default)")
                }
                Some(l) => format!("{}={l}", m.as_str()),
                None => format!("{}=unset", m.as_str()),
            })
            .collect();
        modes.join(", ")
    }
}

/// A label the admission plugin cannot use, and what it does instead.
struct BadLabel {
    key: String,
    value: String,
    instead: &'static str,
    /// The `kubectl label` argument that fixes it.
    fix: String,
}

/// What is known of one namespace.
#[derive(Default)]
struct NamespaceSeen {
    /// Its labels, once the namespace has been listed.
    policy: Option<Policy>,
    /// Findings of its labels alone, known when it was listed.
    label_findings: Vec<Finding>,
    /// Whether it enforces `privileged`, judged at the end against its pods.
    enforces_privileged: bool,
    /// The policy version its pods are judged at: the one its enforce mode evaluates.
    minor: u32,
    running: u64,
    rejected_baseline: u64,
    rejected_restricted: u64,
    /// By the finding's object (`replicaset ns/web`, `pod ns/db-0`, and `namespace ns` for
    /// the bare pods beyond [`BARE_PODS_NAMED`]).
    workloads: BTreeMap<String, Workload>,
    /// Bare pods with findings of their own so far.
    bare_named: usize,
}

impl NamespaceSeen {
    /// The strictest level at which none of its running pods would be rejected.
    fn passing_level(&self) -> Level {
        if self.rejected_baseline > 0 {
            Level::Privileged
        } else if self.rejected_restricted > 0 {
            Level::Baseline
        } else {
            Level::Restricted
        }
    }

    fn rejections(&self) -> String {
        format!(
            "of its {} running pods, {} would be rejected at baseline and {} at restricted",
            self.running, self.rejected_baseline, self.rejected_restricted
        )
    }
}

/// The pods of one controller, or one bare pod, that violate some control.
#[derive(Default)]
struct Workload {
    controls: Vec<ControlSeen>,
    /// The bare pods beyond [`BARE_PODS_NAMED`], on the namespace.
    folded: bool,
}

struct ControlSeen {
    /// Its index into [`CONTROLS`].
    control: usize,
    pods: u64,
    /// None for a bare pod: its name is the object's.
    examples: Vec<String>,
    /// `field=value, ...` of the first pod: the others share its template.
    fields: String,
}

/// The namespace checks, fed one object at a time: [`Namespaces::add_namespace`] and
/// [`Namespaces::add_pod`] in any order, then [`Namespaces::finish`]. Each object is to be added
/// once.
pub struct Namespaces {
    cluster_minor: Option<u32>,
    namespaces: BTreeMap<String, NamespaceSeen>,
}

impl Namespaces {
    /// cluster_minor: the API server's minor version (v1.20.2 -> Some(20)); None when unknown.
    pub fn new(cluster_minor: Option<u32>) -> Namespaces {
        Namespaces {
            cluster_minor,
            namespaces: BTreeMap::new(),
        }
    }

    pub fn add_namespace(&mut self, ns: &Namespace) {
        let meta = &ns.metadata;
        let name = object::name(meta).to_owned();
        let (policy, bad) = resolve(meta);
        let mut findings = Vec::new();
        if !bad.is_empty() {
            findings.push(invalid_labels(&name, &bad));
        }
        if let Some(f) = multi_mode(&name, &policy) {
            findings.push(f);
        }
        if let Some(f) = self.pinned(&name, meta) {
            findings.push(f);
        }
        let minor = self.policy_minor(policy.enforce_version);
        let seen = self.namespace(&name);
        // Its pods are judged as they come; those added before it were judged unpinned.
        if seen.running == 0 {
            seen.minor = minor;
        }
        seen.enforces_privileged = policy.level(Mode::Enforce) == Some(Level::Privileged);
        seen.policy = Some(policy);
        seen.label_findings = findings;
    }

    /// Skips pods that have terminated: they run nothing the policy could reject.
    pub fn add_pod(&mut self, pod: &Pod) {
        if object::terminated(pod) {
            return;
        }
        let meta = &pod.metadata;
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let seen = self.namespace(ns);
        let violations = pod
            .spec
            .as_ref()
            .map(|spec| pss::violations(spec, meta, Level::Restricted, seen.minor))
            .unwrap_or_default();
        seen.running += 1;
        if violations.is_empty() {
            return;
        }
        if violations.iter().any(|v| v.level == Level::Baseline) {
            seen.rejected_baseline += 1;
        }
        seen.rejected_restricted += 1;

        let (mut object, mut bare) = workload(meta, ns);
        let mut folded = false;
        if bare {
            if seen.bare_named < BARE_PODS_NAMED {
                seen.bare_named += 1;
            } else {
                // Folded: named by example, like a controller's pods.
                object = format!("namespace {ns}");
                bare = false;
                folded = true;
            }
        }
        let workload = seen.workloads.entry(object).or_default();
        workload.folded = folded;
        let pod_name = object::name(meta);
        // `violations` is in CONTROLS order: each control's violations are adjacent.
        for (control, group) in by_control(&violations) {
            let hit = match workload.controls.iter_mut().find(|c| c.control == control) {
                Some(hit) => hit,
                None => {
                    workload.controls.push(ControlSeen {
                        control,
                        pods: 0,
                        examples: Vec::new(),
                        fields: fields(group),
                    });
                    workload.controls.last_mut().expect("just pushed")
                }
            };
            hit.pods += 1;
            if !bare && hit.examples.len() < EXAMPLES {
                hit.examples.push(pod_name.to_owned());
            }
        }
    }

    pub fn finish(self) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (name, mut seen) in self.namespaces {
            let version = policy_reason(self.cluster_minor, seen.minor);
            if let Some(policy) = &seen.policy {
                if policy.level(Mode::Enforce).is_none() {
                    findings.push(unlabelled(&name, &seen, policy, &version));
                }
                if seen.enforces_privileged {
                    findings.push(privileged(&name, &seen));
                }
            }
            findings.append(&mut seen.label_findings);
            if seen.rejected_restricted > 0 {
                findings.push(Finding {
                    id: "PSS-NAMESPACE-REJECTS",
                    severity: Severity::Info,
                    object: format!("namespace {name}"),
                    message: format!("{} (kubepki's evaluation at {version})", seen.rejections()),
                    page: PAGE_REJECTS,
                    fix: format!(
                        "change the pods named by the PSS-BASELINE-* and PSS-RESTRICTED-* \
                         findings of namespace {name}, or move those that need more to a \
                         namespace of their own; it can enforce {} as it is",
                        seen.passing_level()
                    ),
                });
            }
            let context = match &seen.policy {
                None => format!("namespace {name} was not listed, so its labels are unknown"),
                Some(p) => format!("namespace {name} has {}", p.describe()),
            };
            let context = format!("{context}; judged at {version}");
            for (object, workload) in &seen.workloads {
                for hit in &workload.controls {
                    let policy = seen.policy.as_ref();
                    findings.push(rejected(object, workload.folded, hit, policy, &context));
                }
            }
        }
        findings
    }

    fn namespace(&mut self, name: &str) -> &mut NamespaceSeen {
        // Copies the name only the first time, not once per pod.
        if !self.namespaces.contains_key(name) {
            let seen = NamespaceSeen {
                minor: self.policy_minor(None),
                ..NamespaceSeen::default()
            };
            self.namespaces.insert(name.to_owned(), seen);
        }
        self.namespaces.get_mut(name).expect("just inserted")
    }

    /// The policy version the cluster's PodSecurity admission plugin evaluates for an enforce
    /// mode pinned to `pinned` (none: `latest`): the older of the cluster's minor and the pin,
    /// at most the newest kubepki knows. Clusters older than [`PLUGIN_MINOR`], or of unknown
    /// version, get the newest: they have no plugin of their own to agree with.
    fn policy_minor(&self, pinned: Option<u32>) -> u32 {
        match self.cluster_minor {
            Some(cluster) if cluster >= PLUGIN_MINOR => {
                pinned.unwrap_or(cluster).min(cluster).min(pss::LATEST)
            }
            _ => pss::LATEST,
        }
    }

    /// The `-version` labels pinned to a minor older than the cluster's.
    fn pinned(&self, name: &str, meta: &ObjectMeta) -> Option<Finding> {
        let cluster = self.cluster_minor?;
        let labels = meta.labels.as_ref()?;
        let old: Vec<String> = Mode::ALL
            .iter()
            .filter_map(|m| {
                let key = m.version_label();
                let minor = parse_version(labels.get(&key)?)??;
                (minor < cluster).then(|| format!("{key}=v1.{minor}"))
            })
            .collect();
        if old.is_empty() {
            return None;
        }
        let keys: Vec<String> = old
            .iter()
            .map(|l| format!("{}=latest", l.split('=').next().unwrap_or_default()))
            .collect();
        Some(Finding {
            id: "PSS-NAMESPACE-VERSION-PINNED",
            // The pinned policy is still enforced, only an older edition of it: something
            // to review at each upgrade rather than a gap.
            severity: Severity::Info,
            object: format!("namespace {name}"),
            message: format!(
                "{} pins the policy older than the cluster's v1.{cluster}: the checks are those \
                 of that version, without the changes since",
                old.join(", ")
            ),
            page: PAGE_PINNED,
            fix: format!(
                "review the changes of the Pod Security Standards since, then \
                 kubectl label --overwrite ns {name} {} (or pin v1.{cluster})",
                keys.join(" ")
            ),
        })
    }
}

/// Why a namespace's pods are judged at policy `minor` on a cluster of `cluster_minor`: the
/// version and its reason, for the messages.
fn policy_reason(cluster_minor: Option<u32>, minor: u32) -> String {
    let why = match cluster_minor {
        None => "the newest kubepki knows, as the API server's version is unknown".to_owned(),
        Some(c) if c < PLUGIN_MINOR => format!(
            "the newest kubepki knows, as v1.{c} API servers enable no PodSecurity admission \
             plugin by default"
        ),
        Some(c) if minor < c.min(pss::LATEST) => {
            format!("as the namespace's enforce-version pins it on this v1.{c} cluster")
        }
        Some(c) if c > pss::LATEST => format!(
            "the newest kubepki knows; this v1.{c} cluster's plugin may judge by a newer one"
        ),
        Some(c) => format!("what enforce evaluates on this v1.{c} cluster"),
    };
    format!("policy v1.{minor}, {why}")
}

/// The slice form of [`Namespaces`].
pub fn namespaces(
    namespaces: &[Namespace],
    pods: &[Pod],
    cluster_minor: Option<u32>,
) -> Vec<Finding> {
    let mut n = Namespaces::new(cluster_minor);
    namespaces.iter().for_each(|ns| n.add_namespace(ns));
    pods.iter().for_each(|p| n.add_pod(p));
    n.finish()
}

/// The namespace's labels as `PolicyToEvaluate` resolves them, and those it cannot use.
fn resolve(meta: &ObjectMeta) -> (Policy, Vec<BadLabel>) {
    let mut policy = Policy::default();
    let mut bad = Vec::new();
    let Some(labels) = meta.labels.as_ref() else {
        return (policy, bad);
    };
    for (i, mode) in Mode::ALL.into_iter().enumerate() {
        // An empty value is a value: the plugin parses it, and fails.
        if let Some(value) = labels.get(&mode.level_label()) {
            policy.levels[i] = Some(value.parse().unwrap_or_else(|_| {
                bad.push(BadLabel {
                    key: mode.level_label(),
                    value: value.clone(),
                    instead: match mode.invalid_level() {
                        Level::Restricted => "evaluates restricted instead (fails closed)",
                        _ => "evaluates privileged instead (fails open: nothing is reported)",
                    },
                    fix: format!("{}=<privileged|baseline|restricted>", mode.level_label()),
                });
                mode.invalid_level()
            }));
        }
        if let Some(value) = labels.get(&mode.version_label()) {
            match parse_version(value) {
                Some(minor) if mode == Mode::Enforce => policy.enforce_version = minor,
                Some(_) => {}
                None => bad.push(BadLabel {
                    key: mode.version_label(),
                    value: value.clone(),
                    instead: "evaluates latest instead",
                    fix: format!("{}=latest", mode.version_label()),
                }),
            }
        }
    }
    // PolicyToEvaluate defaults an absent warn level to enforce's when enforce parsed and is
    // stricter than the default (`privileged` unless the admission configuration says
    // otherwise); audit has no such default.
    let enforce_parsed = labels
        .get(&Mode::Enforce.level_label())
        .is_some_and(|v| v.parse::<Level>().is_ok());
    if enforce_parsed && !labels.contains_key(&Mode::Warn.level_label()) {
        let enforce = policy
            .level(Mode::Enforce)
            .filter(|&l| l > Level::Privileged);
        if let Some(enforce) = enforce {
            policy.levels[Mode::Warn as usize] = Some(enforce);
            policy.warn_defaulted = true;
        }
    }
    let known: Vec<String> = Mode::ALL
        .iter()
        .flat_map(|m| [m.level_label(), m.version_label()])
        .collect();
    for (key, value) in labels {
        if key.starts_with(LABEL_PREFIX) && !known.contains(key) {
            bad.push(BadLabel {
                key: key.clone(),
                value: value.clone(),
                instead: "is no label the plugin reads and is ignored",
                fix: format!("{key}-"),
            });
        }
    }
    (policy, bad)
}

/// A `-version` label's minor: `Some(None)` for `latest`, none for a value the plugin cannot
/// parse (it accepts `latest` and `v1.<minor>` without leading zeros).
fn parse_version(value: &str) -> Option<Option<u32>> {
    if value == "latest" {
        return Some(None);
    }
    let minor = value.strip_prefix("v1.")?;
    let digits = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
    if !digits || (minor.len() > 1 && minor.starts_with('0')) {
        return None;
    }
    // strconv.Atoi (a 64-bit int on the platforms the API server ships for) refuses what
    // overflows it, and the label with it; what fits is valid, and no cluster is that new.
    let minor: i64 = minor.parse().ok()?;
    Some(Some(u32::try_from(minor).unwrap_or(u32::MAX)))
}

fn invalid_labels(name: &str, bad: &[BadLabel]) -> Finding {
    let problems: Vec<String> = bad
        .iter()
        .map(|b| format!("{}={:?} {}", b.key, b.value, b.instead))
        .collect();
    let fixes: Vec<&str> = bad.iter().map(|b| b.fix.as_str()).collect();
    Finding {
        id: "PSS-NAMESPACE-INVALID-LEVEL",
        // Either rejects pods the namespace meant to admit or silently reports nothing.
        severity: Severity::Warning,
        object: format!("namespace {name}"),
        message: format!(
            "{}; the PodSecurity admission plugin refuses such labels when a namespace is \
             created or they are changed, so they predate the plugin or it is off",
            problems.join("; ")
        ),
        page: PAGE_INVALID,
        fix: format!("kubectl label --overwrite ns {name} {}", fixes.join(" ")),
    }
}

/// Enforce set but warn explicitly less strict, or audit missing or less strict. A missing
/// warn label is no gap: the plugin then warns at enforce's level. Not judged under
/// `enforce=privileged`, which PSS-NAMESPACE-PRIVILEGED reports with the warn and audit levels
/// to set.
fn multi_mode(name: &str, policy: &Policy) -> Option<Finding> {
    let enforce = policy
        .level(Mode::Enforce)
        .filter(|&l| l > Level::Privileged)?;
    let target = Level::Restricted.max(enforce);
    let mut weak = Vec::new();
    let mut labels = Vec::new();
    for mode in [Mode::Warn, Mode::Audit] {
        let what = match policy.level(mode) {
            Some(l) if l >= enforce => continue,
            Some(l) => format!("{}={l} is less strict", mode.as_str()),
            // Only when enforce's value is invalid: the plugin defaults warn to a valid one.
            None if mode == Mode::Warn => {
                "warn is unset, and not defaulted to an enforce level the plugin cannot parse"
                    .to_owned()
            }
            None => "audit is unset".to_owned(),
        };
        let unnoticed = match mode {
            Mode::Warn => "creating a workload whose pods enforce rejects draws no warning",
            _ => "such workloads leave no annotation in the audit log",
        };
        weak.push(format!("{what}, so {unnoticed}"));
        labels.push(format!("{}={target}", mode.level_label()));
    }
    if weak.is_empty() {
        return None;
    }
    Some(Finding {
        id: "PSS-NAMESPACE-WARN-AUDIT",
        // Enforce applies to pods alone; warn and audit also judge Deployments and other pod
        // templates, so without them a workload whose pods will be rejected is accepted
        // unnoticed and its controller fails to create pods later.
        severity: Severity::Warning,
        object: format!("namespace {name}"),
        message: format!("enforce={enforce} but {}", weak.join("; and ")),
        page: PAGE_MULTI_MODE,
        fix: format!("kubectl label --overwrite ns {name} {}", labels.join(" ")),
    })
}

/// The labels that ask for `level` in enforce and one level stricter in warn and audit, which
/// then show what still stands between the namespace and the next level.
fn label_command(name: &str, level: Level) -> String {
    let next = match level {
        Level::Privileged => Level::Baseline,
        _ => Level::Restricted,
    };
    format!(
        "kubectl label --overwrite ns {name} pod-security.kubernetes.io/enforce={level} \
         pod-security.kubernetes.io/warn={next} pod-security.kubernetes.io/audit={next}"
    )
}

fn unlabelled(name: &str, seen: &NamespaceSeen, policy: &Policy, version: &str) -> Finding {
    let passing = seen.passing_level();
    let others = if policy.levels.iter().any(Option::is_some) {
        format!(" ({})", policy.describe())
    } else {
        String::new()
    };
    let fix = if passing == Level::Privileged {
        format!(
            "fix the pods that the PSS-BASELINE-* findings of namespace {name} name, then {}; \
             or, if they need privileged, {}",
            label_command(name, Level::Baseline),
            label_command(name, Level::Privileged)
        )
    } else {
        label_command(name, passing)
    };
    Finding {
        id: "PSS-NAMESPACE-UNLABELLED",
        // Nothing is enforced, but nothing is known to be wrong either: the namespace has
        // simply not been evaluated; kube-system and friends included, whose pods often need
        // privileged and should say so.
        severity: Severity::Warning,
        object: format!("namespace {name}"),
        message: format!(
            "no pod-security.kubernetes.io/enforce label{others}: the namespace is not yet \
             evaluated; {} at {version}, so the strictest level it can enforce is {passing}",
            seen.rejections()
        ),
        page: PAGE_UNLABELLED,
        fix,
    }
}

fn privileged(name: &str, seen: &NamespaceSeen) -> Finding {
    let passing = seen.passing_level();
    let object = format!("namespace {name}");
    if passing == Level::Privileged {
        return Finding {
            id: "PSS-NAMESPACE-PRIVILEGED",
            // Some running pod needs it: a deliberate, documented exception is the page's
            // advice, not a defect.
            severity: Severity::Info,
            object,
            message: format!(
                "enforce=privileged, which {} running pods need ({})",
                seen.rejected_baseline,
                seen.rejections()
            ),
            page: PAGE_PRIVILEGED,
            fix: format!(
                "keep in this namespace only the workloads that need privileged (the \
                 PSS-BASELINE-* findings name them), limit who may create pods in it, and \
                 see new violations: kubectl label --overwrite ns {name} \
                 pod-security.kubernetes.io/warn=baseline pod-security.kubernetes.io/audit=baseline"
            ),
        };
    }
    Finding {
        id: "PSS-NAMESPACE-PRIVILEGED",
        severity: Severity::Warning,
        object,
        message: format!(
            "enforce=privileged, which no running pod needs ({}): {passing} would admit them all",
            seen.rejections()
        ),
        page: PAGE_PRIVILEGED,
        fix: label_command(name, passing),
    }
}

/// The finding's object for the pod's workload: its controller (`replicaset ns/web-5d8f`), or
/// the pod itself; and whether it is the pod.
fn workload(meta: &ObjectMeta, ns: &str) -> (String, bool) {
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let (kind, name, bare) = match controller {
        Some(o) => (o.kind.to_lowercase(), o.name.as_str(), false),
        None => ("pod".to_owned(), object::name(meta), true),
    };
    let object = if ns.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {ns}/{name}")
    };
    (object, bare)
}

/// The violations grouped by control, as (index into [`CONTROLS`], its violations).
fn by_control(violations: &[Violation]) -> Vec<(usize, &[Violation])> {
    let mut groups = Vec::new();
    let mut rest = violations;
    while let Some(first) = rest.first() {
        let len = rest
            .iter()
            .take_while(|v| v.control == first.control)
            .count();
        let (group, tail) = rest.split_at(len);
        if let Some(i) = CONTROLS.iter().position(|c| c.id == first.control) {
            groups.push((i, group));
        }
        rest = tail;
    }
    groups
}

/// `field=value` of the first few violations, the rest counted.
fn fields(violations: &[Violation]) -> String {
    let mut shown: Vec<String> = violations
        .iter()
        .take(FIELDS)
        .map(|v| format!("{}={}", v.field, v.value))
        .collect();
    if violations.len() > FIELDS {
        shown.push(format!("and {} more", violations.len() - FIELDS));
    }
    shown.join(", ")
}

fn rejected(
    object: &str,
    folded: bool,
    hit: &ControlSeen,
    policy: Option<&Policy>,
    context: &str,
) -> Finding {
    let control = &CONTROLS[hit.control];
    let level = control.level;
    // Only enforce rejects: at or below the level it evaluates, the pod runs against the
    // namespace's own policy (it predates the label, or was exempted). Warn and audit at that
    // level only announce it: such a pod is admitted with a warning and an audit annotation.
    let enforce = policy.and_then(|p| p.level(Mode::Enforce));
    let announcing = policy.map(|p| p.announcing(level)).unwrap_or_default();
    let severity = if enforce.is_some_and(|e| e >= level) {
        Severity::Error
    } else if level == Level::Baseline || !announcing.is_empty() {
        Severity::Warning
    } else {
        Severity::Info
    };
    let pods = if hit.examples.is_empty() {
        "the running pod".to_owned()
    } else if folded {
        format!(
            "{} more running pod(s) without a controller ({}{})",
            hit.pods,
            hit.examples.join(", "),
            if hit.pods > hit.examples.len() as u64 {
                ", ..."
            } else {
                ""
            }
        )
    } else {
        let more = if hit.pods > hit.examples.len() as u64 {
            ", ..."
        } else {
            ""
        };
        format!(
            "{} running pod(s) ({}{more})",
            hit.pods,
            hit.examples.join(", ")
        )
    };
    let against = if severity == Severity::Error {
        "; it runs against the policy the namespace enforces (created before the label, or \
         exempted)"
            .to_owned()
    } else if !announcing.is_empty() {
        let modes: Vec<&str> = announcing.iter().map(|m| m.as_str()).collect();
        format!(
            "; the namespace asks for {level} only in {}, which reject nothing: such a pod \
             draws a warning or an audit annotation",
            modes.join(" and ")
        )
    } else {
        String::new()
    };
    Finding {
        id: control.finding,
        severity,
        object: object.to_owned(),
        message: format!(
            "{pods} would be rejected at {level} by control {}: {}; {context}{against}",
            control.id, hit.fields
        ),
        page: match level {
            Level::Restricted => PAGE_RESTRICTED,
            _ => PAGE_BASELINE,
        },
        fix: format!(
            "change the pod template of {object} (for a ReplicaSet, its Deployment's): {} If it \
             needs this, run it in a namespace that does not enforce {level}.",
            control.rule
        ),
    }
}

#[cfg(test)]
mod tests;
