//! The multiple-zones page ("Running in multiple zones"): nodes that do not say their zone, a
//! control plane, API servers and etcd members that one zone's outage takes down, multi-replica
//! workloads the scheduler is not asked to spread over zones, and PersistentVolumes that do not
//! say where they are.
//!
//! A node's zone is its `topology.kubernetes.io/zone` label, or the deprecated
//! `failure-domain.beta.kubernetes.io/zone` where only that is set (the node still is in that
//! zone; that it lacks the current label is a finding of its own). The cluster's zones are
//! those of its nodes.
//!
//! The control-plane nodes and etcd members are to span at least three zones, as the page asks
//! where availability matters (etcd keeps a quorum through one zone's loss only then); the API
//! servers, which need no quorum, are reported when all of them are in one zone. Control-plane
//! nodes, API servers and etcd members that are not listed (a managed control plane) are not
//! judged. Unlabelled nodes and PersistentVolumes are warnings where the cluster has several
//! zones and notes (info) where it has one, and workloads are judged only where it has several:
//! in one zone, there is nothing to spread over yet.
//!
//! Like [`crate::scale::Scale`], [`Zones`] takes one object at a time and keeps only names, so
//! that the audit can feed it paginated lists; [`zones`] is the same over slices.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::object::{self, CLUSTER, LEGACY_ZONE_LABEL, ZONE_LABEL};
use crate::{Finding, Severity};

/// The labels that mark a control-plane node: the current one and the name before v1.20.
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// The zones the page asks the control plane to span where availability matters.
pub const MIN_CONTROL_PLANE_ZONES: usize = 3;

/// A topology key that spreads over zones: a spread or anti-affinity on either label does.
const ZONE_KEYS: [&str; 2] = [ZONE_LABEL, LEGACY_ZONE_LABEL];

/// A volume whose node affinity names one node is in that node's zone.
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

const PAGE_NODE: &str = "Running in multiple zones: each node carries its zone in the \
                         topology.kubernetes.io/zone label, on which spreading Pods over zones \
                         relies.";
const PAGE_CONTROL_PLANE: &str = "Running in multiple zones: where availability matters, run \
                                  the control plane in at least three zones.";
const PAGE_API_SERVER: &str = "Running in multiple zones: replicate each control-plane \
                               component, the API server among them, across zones.";
const PAGE_ETCD: &str = "Running in multiple zones: where availability matters, replicate etcd \
                         across at least three zones.";
const PAGE_WORKLOAD: &str = "Running in multiple zones: spread a workload's replicas over zones \
                             with Pod topology spread constraints on the zone label.";
const PAGE_VOLUME: &str = "Running in multiple zones: a zonal PersistentVolume carries a zone \
                           label, so that the scheduler places the Pods that use it in its \
                           zone.";

/// The zone checks, fed one object at a time (any order, each object once), then
/// [`Zones::finish`]. Pods other than kube-system's API servers and etcd members are passed
/// over, so the audit can feed it every Pod it lists.
#[derive(Default)]
pub struct Zones {
    /// Every listed node's zone, by name.
    node_zones: BTreeMap<String, Option<String>>,
    /// Nodes without the current zone label, with the legacy label's value if they have it.
    unlabelled: Vec<(String, Option<String>)>,
    control_plane: Vec<String>,
    /// (Pod name, its node) of each running kube-apiserver and etcd Pod.
    api_servers: Vec<(String, Option<String>)>,
    etcd: Vec<(String, Option<String>)>,
    /// Multi-replica workloads that do not spread over zones: (object, replicas).
    unspread: Vec<(String, i32)>,
    /// PersistentVolumes that do not say their zone: (object, its source).
    volumes: Vec<(String, &'static str)>,
}

impl Zones {
    pub fn new() -> Zones {
        Zones::default()
    }

    pub fn add_node(&mut self, node: &Node) {
        let meta = &node.metadata;
        let name = object::name(meta).to_owned();
        let current = object::label(meta, ZONE_LABEL);
        let legacy = object::label(meta, LEGACY_ZONE_LABEL);
        if current.is_none() {
            self.unlabelled
                .push((name.clone(), legacy.map(str::to_owned)));
        }
        if CONTROL_PLANE_LABELS
            .iter()
            .any(|l| object::has_label(meta, l))
        {
            self.control_plane.push(name.clone());
        }
        let zone = current.or(legacy).map(str::to_owned);
        self.node_zones.insert(name, zone);
    }

    pub fn add_pod(&mut self, pod: &Pod) {
        let meta = &pod.metadata;
        if meta.namespace.as_deref() != Some("kube-system") || object::terminated(pod) {
            return;
        }
        let list = match object::label(meta, "component") {
            Some("kube-apiserver") => &mut self.api_servers,
            Some("etcd") => &mut self.etcd,
            _ => return,
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        list.push((object::name(meta).to_owned(), node));
    }

    pub fn add_deployment(&mut self, d: &Deployment) {
        let spec = d.spec.as_ref();
        let replicas = spec.and_then(|s| s.replicas);
        let template = spec.and_then(|s| s.template.spec.as_ref());
        self.workload("deployment", &d.metadata, replicas, template);
    }

    pub fn add_stateful_set(&mut self, s: &StatefulSet) {
        let spec = s.spec.as_ref();
        let replicas = spec.and_then(|s| s.replicas);
        let template = spec.and_then(|s| s.template.spec.as_ref());
        self.workload("statefulset", &s.metadata, replicas, template);
    }

    pub fn add_persistent_volume(&mut self, pv: &PersistentVolume) {
        let meta = &pv.metadata;
        if ZONE_KEYS.iter().any(|k| object::label(meta, k).is_some()) {
            return;
        }
        let spec = pv.spec.as_ref();
        let pinned = spec
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref())
            .is_some_and(|selector| {
                let terms = &selector.node_selector_terms;
                // The terms are alternatives: each must keep the volume to a zone or a node.
                !terms.is_empty()
                    && terms.iter().all(|term| {
                        let keys = term.match_expressions.iter().flatten().map(|e| &e.key);
                        let fields = term.match_fields.iter().flatten().map(|e| &e.key);
                        keys.chain(fields).any(|k| {
                            ZONE_KEYS.contains(&k.as_str())
                                || k == HOSTNAME_KEY
                                || k == "metadata.name"
                        })
                    })
            });
        if pinned {
            return;
        }
        // Network file systems are reached from any zone: they have none to say.
        let source = match spec {
            Some(s) if s.nfs.is_some() || s.cephfs.is_some() || s.glusterfs.is_some() => return,
            Some(s) if s.csi.is_some() => "csi",
            Some(s) if s.local.is_some() => "local",
            Some(s) if s.host_path.is_some() => "hostPath",
            _ => "volume",
        };
        self.volumes
            .push((object::object("persistentvolume", meta), source));
    }

    pub fn finish(self) -> Vec<Finding> {
        let zones: BTreeSet<&str> = self
            .node_zones
            .values()
            .flatten()
            .map(|z| z.as_str())
            .collect();
        let several = zones.len() > 1;
        // Where there is only one zone, an unlabelled object breaks nothing yet.
        let unlabelled_severity = if several {
            Severity::Warning
        } else {
            Severity::Info
        };
        let mut findings = Vec::new();

        for (node, legacy) in &self.unlabelled {
            let message = match legacy {
                Some(z) => {
                    format!("no {ZONE_LABEL} label; only the deprecated {LEGACY_ZONE_LABEL}={z}")
                }
                None => format!("no {ZONE_LABEL} label"),
            };
            findings.push(Finding {
                id: "ZONE-NODE-UNLABELLED",
                severity: unlabelled_severity,
                object: format!("node {node}"),
                message,
                page: PAGE_NODE,
                fix: format!(
                    "let the cloud provider's kubelet or cloud-controller-manager set it, or \
                     label the node: kubectl label node {node} {ZONE_LABEL}=<zone>"
                ),
            });
        }

        let control_plane: Vec<(String, Option<String>)> = self
            .control_plane
            .iter()
            .map(|n| (n.clone(), Some(n.clone())))
            .collect();
        let members = [
            (
                "ZONE-CONTROL-PLANE-SPREAD",
                "control-plane nodes",
                &control_plane,
                MIN_CONTROL_PLANE_ZONES,
                PAGE_CONTROL_PLANE,
                "add control-plane nodes in other zones until they span at least three",
            ),
            (
                "ZONE-APISERVER-ONE-ZONE",
                "kube-apiserver Pods",
                &self.api_servers,
                2,
                PAGE_API_SERVER,
                "run kube-apiserver on control-plane nodes in other zones (at least three \
                 where availability matters), behind a load balancer that spans them",
            ),
            (
                "ZONE-ETCD-SPREAD",
                "etcd members",
                &self.etcd,
                MIN_CONTROL_PLANE_ZONES,
                PAGE_ETCD,
                "add or move etcd members to nodes in other zones until they span at least \
                 three, keeping an odd number of members so that one zone's loss leaves a \
                 quorum",
            ),
        ];
        for (id, what, list, min, page, fix) in members {
            if let Some(message) = self.concentration(what, list, min) {
                findings.push(Finding {
                    id,
                    severity: Severity::Warning,
                    object: CLUSTER.to_owned(),
                    message,
                    page,
                    fix: fix.to_owned(),
                });
            }
        }

        if several {
            let zones = zones.len();
            for (object, replicas) in &self.unspread {
                findings.push(Finding {
                    id: "ZONE-WORKLOAD-SPREAD",
                    severity: Severity::Warning,
                    object: object.clone(),
                    message: format!(
                        "{replicas} replicas and neither a topologySpreadConstraint nor a Pod \
                         anti-affinity on {ZONE_LABEL}, in a cluster of {zones} zones"
                    ),
                    page: PAGE_WORKLOAD,
                    fix: format!(
                        "add to spec.template.spec.topologySpreadConstraints {{maxSkew: 1, \
                         topologyKey: {ZONE_LABEL}, whenUnsatisfiable: ScheduleAnyway, \
                         labelSelector: the Pods' labels}}"
                    ),
                });
            }
        }

        for (object, source) in &self.volumes {
            findings.push(Finding {
                id: "ZONE-PV-UNLABELLED",
                severity: unlabelled_severity,
                object: object.clone(),
                message: format!(
                    "{source} volume with neither a {ZONE_LABEL} (or {LEGACY_ZONE_LABEL}) label \
                     nor a spec.nodeAffinity on the zone or a node"
                ),
                page: PAGE_VOLUME,
                fix: format!(
                    "label the volume with its zone ({ZONE_LABEL}) or set its \
                     spec.nodeAffinity; for provisioned volumes, a StorageClass with \
                     volumeBindingMode: WaitForFirstConsumer and allowedTopologies"
                ),
            });
        }
        findings
    }

    /// Members (name, node) placed on nodes in fewer than `min` zones: the message saying
    /// where they are. None when there are no members: a managed control plane is not listed.
    fn concentration(
        &self,
        what: &str,
        members: &[(String, Option<String>)],
        min: usize,
    ) -> Option<String> {
        if members.is_empty() {
            return None;
        }
        let mut by_zone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut nowhere = Vec::new();
        for (name, node) in members {
            let zone = node
                .as_deref()
                .and_then(|n| self.node_zones.get(n))
                .and_then(|z| z.as_deref());
            match zone {
                Some(z) => by_zone.entry(z).or_default().push(name),
                None => nowhere.push(name.as_str()),
            }
        }
        if by_zone.len() >= min {
            return None;
        }
        let mut places: Vec<String> = by_zone
            .iter()
            .map(|(zone, names)| format!("{zone}: {}", names.join(", ")))
            .collect();
        if !nowhere.is_empty() {
            places.push(format!("no known zone: {}", nowhere.join(", ")));
        }
        Some(format!(
            "{} {what} in {} zone(s), fewer than {min} ({})",
            members.len(),
            by_zone.len(),
            places.join("; ")
        ))
    }

    fn workload(
        &mut self,
        kind: &str,
        meta: &ObjectMeta,
        replicas: Option<i32>,
        template: Option<&PodSpec>,
    ) {
        // An unset count is one replica.
        let replicas = replicas.unwrap_or(1);
        if replicas > 1 && !template.is_some_and(spreads_over_zones) {
            self.unspread.push((object::object(kind, meta), replicas));
        }
    }
}

/// Whether the scheduler is asked to spread these Pods over zones: a topology spread
/// constraint or a Pod anti-affinity term, required or preferred, keyed on the zone.
fn spreads_over_zones(spec: &PodSpec) -> bool {
    let zonal = |key: &String| ZONE_KEYS.contains(&key.as_str());
    let spread = spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .any(|c| zonal(&c.topology_key));
    let anti = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref());
    let required = anti
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten();
    let preferred = anti
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .map(|w| &w.pod_affinity_term);
    spread || required.chain(preferred).any(|t| zonal(&t.topology_key))
}

/// The slice form of [`Zones`].
pub fn zones(
    nodes: &[Node],
    pods: &[Pod],
    deployments: &[Deployment],
    stateful_sets: &[StatefulSet],
    volumes: &[PersistentVolume],
) -> Vec<Finding> {
    let mut z = Zones::new();
    nodes.iter().for_each(|n| z.add_node(n));
    pods.iter().for_each(|p| z.add_pod(p));
    deployments.iter().for_each(|d| z.add_deployment(d));
    stateful_sets.iter().for_each(|s| z.add_stateful_set(s));
    volumes.iter().for_each(|v| z.add_persistent_volume(v));
    z.finish()
}

#[cfg(test)]
mod tests;
