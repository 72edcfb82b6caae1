//! From Kubernetes objects to the rules' inputs, and the state questions about a CSR
//! (decided? issued?). Pure: no API calls.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;

use crate::rules::{self, NodeAddress, NodeInfo, Policy, Request, Verdict};

/// Borrowed view of a CSR for the rules. Missing fields read as empty, which the rules refuse.
pub fn request(csr: &CertificateSigningRequest) -> Request<'_> {
    let spec = &csr.spec;
    Request {
        name: csr.metadata.name.as_deref().unwrap_or(""),
        signer_name: &spec.signer_name,
        username: spec.username.as_deref().unwrap_or(""),
        groups: spec.groups.as_deref().unwrap_or(&[]),
        usages: spec.usages.as_deref().unwrap_or(&[]),
        pem: &spec.request.0,
        expiration_seconds: spec.expiration_seconds.map(i64::from),
    }
}

pub fn node_info(node: &Node) -> NodeInfo {
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        addresses: node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(|a| {
                a.iter()
                    .map(|a| NodeAddress {
                        kind: a.type_.clone(),
                        address: a.address.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        being_deleted: node.metadata.deletion_timestamp.is_some(),
    }
}

/// Keeps only what the rules read (name, addresses, whether it is being deleted): a real Node carries tens of KiB of
/// images, conditions and managedFields, and the cache holds every Node of the cluster.
pub fn strip_node(node: &mut Node) {
    let addresses = node.status.as_mut().and_then(|s| s.addresses.take());
    *node = Node {
        metadata: ObjectMeta {
            name: node.metadata.name.take(),
            resource_version: node.metadata.resource_version.take(),
            uid: node.metadata.uid.take(),
            deletion_timestamp: node.metadata.deletion_timestamp.take(),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses,
            ..Default::default()
        }),
    };
}

fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status != "False"))
}

pub fn is_approved(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, "Approved")
}

pub fn is_denied(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, "Denied")
}

pub fn is_failed(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, "Failed")
}

/// Neither approved nor denied: waiting for a decision.
pub fn is_pending(csr: &CertificateSigningRequest) -> bool {
    !is_approved(csr) && !is_denied(csr)
}

pub fn has_certificate(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// Sort key: creation time, then name (the API server gives second resolution).
fn age_key(csr: &CertificateSigningRequest) -> (Option<i64>, &str) {
    (
        csr.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        csr.metadata.name.as_deref().unwrap_or(""),
    )
}

/// The pending kubelet-serving requests of `csr`'s requester among `all`, oldest first
/// (always including `csr` itself).
pub fn pending_group<'a>(
    csr: &'a CertificateSigningRequest,
    all: impl IntoIterator<Item = &'a CertificateSigningRequest>,
) -> Vec<&'a CertificateSigningRequest> {
    let user = csr.spec.username.as_deref();
    let name = csr.metadata.name.as_deref();
    let mut group: Vec<&CertificateSigningRequest> = all
        .into_iter()
        .filter(|c| {
            c.metadata.name.as_deref() != name
                && c.spec.signer_name == rules::KUBELET_SERVING
                && c.spec.username.as_deref() == user
                && is_pending(c)
        })
        .collect();
    group.push(csr);
    group.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    group
}

/// The verdicts on every request of a `pending_group`, in its order.
fn group_verdicts(
    group: &[&CertificateSigningRequest],
    node: Option<&NodeInfo>,
    policy: &Policy,
) -> Vec<Verdict> {
    let reqs: Vec<Request<'_>> = group.iter().map(|c| request(c)).collect();
    rules::decide_group(&reqs, node, policy)
}

/// `csr`'s verdict given its pending siblings (from `pending_group`) and its Node, and those
/// of its whole group (in the group's order), judged once:
/// every judgement checks a self-signature, the dominant cost.
pub fn verdicts_in_group(
    csr: &CertificateSigningRequest,
    group: &[&CertificateSigningRequest],
    node: Option<&NodeInfo>,
    policy: &Policy,
) -> (Verdict, Vec<Verdict>) {
    let me = csr.metadata.name.as_deref();
    let all = group_verdicts(group, node, policy);
    let own = group
        .iter()
        .zip(&all)
        .find(|(c, _)| c.metadata.name.as_deref() == me)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| rules::decide(&request(csr), node, policy));
    (own, all)
}

/// The names of the pending kubelet-serving requests, by requester, kept current from the
/// watch events, with when each was first seen pending. A reconcile looks up its requester's
/// siblings here instead of scanning the whole cache: with thousands of nodes rotating at once,
/// a scan per reconcile is quadratic.
/// Follows the reflector's semantics: a relist (`Init` .. `InitDone`) replaces the index at once.
/// A request keeps its first-seen time across updates and relists while it stays pending
/// (the same uid).
#[derive(Debug, Default)]
pub struct PendingIndex {
    live: Entries,
    relisting: Option<Entries>,
}

#[derive(Debug)]
struct Entry {
    user: String,
    uid: Option<String>,
    since: Instant,
}

#[derive(Debug, Default)]
struct Entries {
    by_user: HashMap<String, BTreeSet<String>>,
    entries: HashMap<String, Entry>,
}

impl Entries {
    fn remove(&mut self, name: &str) -> Option<Entry> {
        let entry = self.entries.remove(name)?;
        if let Some(names) = self.by_user.get_mut(&entry.user) {
            names.remove(name);
            if names.is_empty() {
                self.by_user.remove(&entry.user);
            }
        }
        Some(entry)
    }

    /// When `csr` (the same object: name and uid) was first seen pending here.
    fn since(&self, csr: &CertificateSigningRequest) -> Option<Instant> {
        let entry = self.entries.get(csr.metadata.name.as_deref()?)?;
        (entry.uid == csr.metadata.uid).then_some(entry.since)
    }

    /// Takes in `csr` as it is now; if it is pending and new here, first seen at `seen`.
    fn apply(&mut self, csr: &CertificateSigningRequest, seen: Instant) {
        let Some(name) = csr.metadata.name.as_deref() else {
            return;
        };
        let since = self.since(csr).unwrap_or(seen);
        self.remove(name);
        if is_pending(csr) && csr.spec.signer_name == rules::KUBELET_SERVING {
            let user = csr.spec.username.clone().unwrap_or_default();
            self.by_user
                .entry(user.clone())
                .or_default()
                .insert(name.to_string());
            self.entries.insert(
                name.to_string(),
                Entry {
                    user,
                    uid: csr.metadata.uid.clone(),
                    since,
                },
            );
        }
    }
}

impl PendingIndex {
    /// `observe_at` now.
    pub fn observe(&mut self, event: &watcher::Event<CertificateSigningRequest>) {
        self.observe_at(event, Instant::now());
    }

    /// Takes in a watch event that arrived at `now`.
    pub fn observe_at(&mut self, event: &watcher::Event<CertificateSigningRequest>, now: Instant) {
        match event {
            watcher::Event::Apply(csr) => self.live.apply(csr, now),
            watcher::Event::Delete(csr) => {
                if let Some(name) = csr.metadata.name.as_deref() {
                    self.live.remove(name);
                }
            }
            watcher::Event::Init => self.relisting = Some(Entries::default()),
            watcher::Event::InitApply(csr) => {
                // Pending since before the relist: still first seen then.
                let seen = self.live.since(csr).unwrap_or(now);
                self.relisting
                    .get_or_insert_with(Entries::default)
                    .apply(csr, seen);
            }
            watcher::Event::InitDone => {
                if let Some(fresh) = self.relisting.take() {
                    self.live = fresh;
                }
            }
        }
    }

    /// Takes in one request as it is now (what a watch `Apply` does).
    pub fn apply(&mut self, csr: &CertificateSigningRequest) {
        self.live.apply(csr, Instant::now());
    }

    /// How many kubelet-serving requests wait for a decision.
    pub fn len(&self) -> usize {
        self.live.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pending requests of `username`, by name.
    pub fn names_of(&self, username: &str) -> Vec<String> {
        self.live
            .by_user
            .get(username)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// When the pending request `name` was first seen (None: it is not pending here).
    pub fn first_seen(&self, name: &str) -> Option<Instant> {
        self.live.entries.get(name).map(|e| e.since)
    }
}
