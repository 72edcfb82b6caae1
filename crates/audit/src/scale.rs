//! The large-cluster page ("Considerations for large clusters"): how close the cluster is to
//! the sizes Kubernetes is designed for (no more than 110 Pods per node, 5,000 nodes, 150,000
//! Pods and 300,000 containers), which kubelets admit more Pods per node than that, and which
//! addons run without CPU and memory requests and limits.
//!
//! The audit reads paginated lists, so [`Scale`] takes one object at a time and keeps only
//! counts (one per node), never the Pods themselves; [`scale`] is the same over slices.
//!
//! What counts: a Pod that has not terminated (phase neither Succeeded nor Failed), since a
//! finished Pod holds no node slot and runs nothing; its regular containers and its sidecars
//! (init containers with `restartPolicy: Always`). Plain init containers are not counted: they
//! have exited before the regular containers start, so they never add to what runs at once.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::object::{self, CLUSTER};
use crate::{Finding, Severity};

/// The limits the checks compare with. [`Limits::PAGE`] are the page's; a caller lowers them to
/// see a small cluster cross them, or to keep a margin of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub pods_per_node: u64,
    pub nodes: u64,
    pub pods: u64,
    pub containers: u64,
    /// Less headroom than this, in percent of a limit, is a warning.
    pub warn_headroom_percent: u64,
}

impl Limits {
    /// What the page supports, with a warning under 10 % headroom.
    pub const PAGE: Limits = Limits {
        pods_per_node: 110,
        nodes: 5000,
        pods: 150_000,
        containers: 300_000,
        warn_headroom_percent: 10,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::PAGE
    }
}

/// The addons whose resources the page asks to be set: the DaemonSets of every namespace and
/// the Deployments of kube-system (Deployments in other namespaces are passed over, so a caller
/// may hand in any list).
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    pub daemon_sets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
}

/// A count against its limit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Usage {
    pub current: u64,
    pub limit: u64,
    /// How much of the limit is left, in percent of it, cut to one decimal; negative once the
    /// limit is exceeded; none for a zero limit, of which no share can be taken.
    pub headroom_percent: Option<f64>,
}

impl Usage {
    pub fn new(current: u64, limit: u64) -> Usage {
        let headroom_percent = (limit > 0).then(|| {
            // In tenths of a percent, in integers, cut toward zero: 9.996 % shown as 10.0 %
            // would contradict "under 10 %".
            let tenths = (i128::from(limit) - i128::from(current)) * 1000 / i128::from(limit);
            tenths as f64 / 10.0
        });
        Usage {
            current,
            limit,
            headroom_percent,
        }
    }

    pub fn exceeded(&self) -> bool {
        self.current > self.limit
    }

    /// Within the limit but with less than `percent` of it left. In integers (widened so that
    /// no product overflows), so that the verdict does not hang on rounding: a zero limit with
    /// nothing counted is not short of anything.
    pub fn short(&self, percent: u64) -> bool {
        let left = u128::from(self.limit.saturating_sub(self.current));
        !self.exceeded() && left * 100 < u128::from(self.limit) * u128::from(percent)
    }

    fn headroom(&self) -> String {
        self.headroom_percent
            .map_or("no headroom".to_owned(), |p| format!("{p:.1} % headroom"))
    }
}

/// A node's Pods against the per-node limit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeUsage {
    pub node: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// The node's `status.capacity.pods` (its kubelet's maxPods), where it was listed with one.
    pub capacity: Option<u64>,
}

/// The cluster against the page's limits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleReport {
    pub nodes: Usage,
    pub pods: Usage,
    pub containers: Usage,
    /// The nodes with the most Pods, most first (ties by name), at most [`WORST_NODES`].
    pub worst_nodes: Vec<NodeUsage>,
    /// Pods that have ended, counted in none of the above.
    pub terminated_pods: u64,
}

/// How many of the fullest nodes the report lists.
pub const WORST_NODES: usize = 5;

const PAGE_NODES: &str = "Considerations for large clusters: a cluster should have no more \
                          than 5,000 nodes.";
const PAGE_PODS: &str = "Considerations for large clusters: a cluster should have no more than \
                         150,000 Pods in total.";
const PAGE_CONTAINERS: &str = "Considerations for large clusters: a cluster should have no more \
                               than 300,000 containers in total.";
const PAGE_PODS_PER_NODE: &str = "Considerations for large clusters: a node should run no more \
                                  than 110 Pods.";
const PAGE_ADDONS: &str = "Considerations for large clusters: addons, like any workload, should \
                           set CPU and memory requests and limits, which contain memory leaks \
                           and their effect on the rest of the node.";

/// What one node has been seen with so far.
#[derive(Default)]
struct NodeSeen {
    pods: u64,
    capacity: Option<u64>,
}

/// The scale checks, fed one object at a time: [`Scale::add_node`], [`Scale::add_pod`] and the
/// addons in any order, then [`Scale::finish`]. Each object is to be added once.
pub struct Scale {
    limits: Limits,
    nodes: u64,
    pods: u64,
    containers: u64,
    terminated_pods: u64,
    /// By node name: Pods bound to a node that was not listed (deleted meanwhile) count too.
    per_node: BTreeMap<String, NodeSeen>,
    /// Found as their objects came: node capacities and addons.
    findings: Vec<Finding>,
}

impl Scale {
    pub fn new(limits: Limits) -> Scale {
        Scale {
            limits,
            nodes: 0,
            pods: 0,
            containers: 0,
            terminated_pods: 0,
            per_node: BTreeMap::new(),
            findings: Vec::new(),
        }
    }

    pub fn add_node(&mut self, node: &Node) {
        self.nodes += 1;
        let name = object::name(&node.metadata);
        let capacity = node
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("pods"))
            .and_then(|q| count(&q.0));
        self.seen(name, |n| n.capacity = capacity);
        let limit = self.limits.pods_per_node;
        if let Some(capacity) = capacity.filter(|&c| c > limit) {
            self.findings.push(Finding {
                id: "SCALE-NODE-CAPACITY-PODS",
                severity: Severity::Warning,
                object: object::object("node", &node.metadata),
                message: format!(
                    "status.capacity.pods is {capacity}: the kubelet admits more Pods than the \
                     limit of {limit}"
                ),
                page: PAGE_PODS_PER_NODE,
                fix: format!(
                    "set the kubelet's maxPods (--max-pods) to {limit} or less and restart it"
                ),
            });
        }
    }

    pub fn add_pod(&mut self, pod: &Pod) {
        if object::terminated(pod) {
            self.terminated_pods += 1;
            return;
        }
        self.pods += 1;
        let Some(spec) = &pod.spec else { return };
        self.containers += object::long_running_containers(spec).count() as u64;
        if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            self.seen(node, |n| n.pods += 1);
        }
    }

    pub fn add_daemon_set(&mut self, ds: &DaemonSet) {
        let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        self.addon("daemonset", &ds.metadata, spec);
    }

    /// Judged only in kube-system, where the page's addons run.
    pub fn add_deployment(&mut self, deployment: &Deployment) {
        if deployment.metadata.namespace.as_deref() != Some("kube-system") {
            return;
        }
        let spec = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref());
        self.addon("deployment", &deployment.metadata, spec);
    }

    pub fn finish(self) -> (ScaleReport, Vec<Finding>) {
        let limits = self.limits;
        let nodes = Usage::new(self.nodes, limits.nodes);
        let pods = Usage::new(self.pods, limits.pods);
        let containers = Usage::new(self.containers, limits.containers);
        let cluster = [
            ("SCALE-NODES", "nodes", nodes, PAGE_NODES),
            ("SCALE-PODS", "Pods", pods, PAGE_PODS),
            (
                "SCALE-CONTAINERS",
                "containers",
                containers,
                PAGE_CONTAINERS,
            ),
        ];
        let warn = limits.warn_headroom_percent;
        let mut findings: Vec<Finding> = cluster
            .into_iter()
            .filter_map(|(id, what, usage, page)| {
                let (severity, message) = verdict(usage, what, warn)?;
                Some(Finding {
                    id,
                    severity,
                    object: CLUSTER.to_owned(),
                    message,
                    page,
                    fix: "split the workloads over more than one cluster, or scale down what \
                          is idle, before the count grows further"
                        .to_owned(),
                })
            })
            .collect();

        // Sorted by name, as the map was.
        let mut per_node: Vec<NodeUsage> = self
            .per_node
            .into_iter()
            .map(|(node, seen)| NodeUsage {
                node,
                usage: Usage::new(seen.pods, limits.pods_per_node),
                capacity: seen.capacity,
            })
            .collect();
        findings.extend(per_node.iter().filter_map(|n| {
            let (severity, message) = verdict(n.usage, "Pods", warn)?;
            Some(Finding {
                id: "SCALE-PODS-PER-NODE",
                severity,
                object: format!("node {}", n.node),
                message,
                page: PAGE_PODS_PER_NODE,
                fix: format!(
                    "add nodes, or lower the kubelet's maxPods to {} or less so that the \
                     scheduler places the excess elsewhere",
                    limits.pods_per_node
                ),
            })
        }));
        findings.extend(self.findings);

        // Stable: nodes with as many Pods stay in name order.
        per_node.sort_by_key(|n| std::cmp::Reverse(n.usage.current));
        per_node.truncate(WORST_NODES);
        let report = ScaleReport {
            nodes,
            pods,
            containers,
            worst_nodes: per_node,
            terminated_pods: self.terminated_pods,
        };
        (report, findings)
    }

    /// Updates what is known of a node, copying its name only the first time it is seen, not
    /// once per Pod.
    fn seen(&mut self, node: &str, update: impl FnOnce(&mut NodeSeen)) {
        if let Some(seen) = self.per_node.get_mut(node) {
            update(seen);
        } else {
            let mut seen = NodeSeen::default();
            update(&mut seen);
            self.per_node.insert(node.to_owned(), seen);
        }
    }

    /// One finding for each long-running container of the addon that lacks a CPU or memory
    /// request or limit.
    fn addon(&mut self, kind: &str, meta: &ObjectMeta, spec: Option<&PodSpec>) {
        let Some(spec) = spec else { return };
        for container in object::long_running_containers(spec) {
            let missing = missing_resources(container, spec.resources.as_ref());
            if missing.is_empty() {
                continue;
            }
            let name = &container.name;
            let missing = missing.join(", ");
            self.findings.push(Finding {
                id: "SCALE-ADDON-RESOURCES",
                severity: Severity::Warning,
                object: object::object(kind, meta),
                message: format!("container {name} sets no {missing}"),
                page: PAGE_ADDONS,
                fix: format!(
                    "set resources.{{requests,limits}} for cpu and memory on container {name}, \
                     sized for this cluster (a VerticalPodAutoscaler in recommendation mode \
                     suggests values), and raise them as the cluster grows"
                ),
            });
        }
    }
}

/// The slice form of [`Scale`].
pub fn scale(
    nodes: &[Node],
    pods: &[Pod],
    workloads: &Workloads,
    limits: &Limits,
) -> (ScaleReport, Vec<Finding>) {
    let mut scale = Scale::new(*limits);
    nodes.iter().for_each(|n| scale.add_node(n));
    pods.iter().for_each(|p| scale.add_pod(p));
    workloads
        .daemon_sets
        .iter()
        .for_each(|d| scale.add_daemon_set(d));
    workloads
        .deployments
        .iter()
        .for_each(|d| scale.add_deployment(d));
    scale.finish()
}

/// The severity and message for a count over its limit (an error) or short of headroom (a
/// warning); none for a count with room to spare.
fn verdict(usage: Usage, what: &str, warn_percent: u64) -> Option<(Severity, String)> {
    let Usage { current, limit, .. } = usage;
    if usage.exceeded() {
        let over = current - limit;
        let message = format!("{current} {what}, {over} over the limit of {limit}");
        Some((Severity::Error, message))
    } else if usage.short(warn_percent) {
        let headroom = usage.headroom();
        let message =
            format!("{current} {what} of at most {limit}: {headroom}, under {warn_percent} %");
        Some((Severity::Warning, message))
    } else {
        None
    }
}

/// Which of the four the container lacks, as `requests.cpu`, ..., in that order. The API server
/// copies a container's limit into its unset request when it creates each Pod, so a limit
/// alone sets both; a value at the Pod level (`spec.resources`) bounds every container.
fn missing_resources(c: &Container, pod: Option<&ResourceRequirements>) -> Vec<&'static str> {
    let set = |limits: bool, resource: &str| {
        [c.resources.as_ref(), pod].into_iter().flatten().any(|r| {
            let list = if limits { &r.limits } else { &r.requests };
            list.as_ref().is_some_and(|l| l.contains_key(resource))
        })
    };
    let limited = |resource| set(true, resource);
    let requested = |resource| set(false, resource) || limited(resource);
    [
        ("requests.cpu", requested("cpu")),
        ("requests.memory", requested("memory")),
        ("limits.cpu", limited("cpu")),
        ("limits.memory", limited("memory")),
    ]
    .into_iter()
    .filter_map(|(name, set)| (!set).then_some(name))
    .collect()
}

/// A count as a quantity writes it: digits, perhaps with a decimal SI suffix (`1k`). Anything
/// else (fractions, binary suffixes a count would never carry) is not a count.
fn count(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let (digits, factor) = match quantity.char_indices().last()? {
        (i, 'k') => (&quantity[..i], 1_000),
        (i, 'M') => (&quantity[..i], 1_000_000),
        (i, 'G') => (&quantity[..i], 1_000_000_000),
        _ => (quantity, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests;
