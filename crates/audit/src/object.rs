//! What the cluster checks read alike of any API object: its name as a finding shows it, its
//! labels, and whether a Pod still holds its place. Everything tolerates missing fields: the
//! checks judge whatever a list returned and never panic on it.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The object of a finding about the whole cluster rather than one API object.
pub(crate) const CLUSTER: &str = "cluster";

/// The zone label the kubelet (or the cloud controller manager) sets on each Node.
pub(crate) const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Its deprecated beta name, still set by older kubelets and storage provisioners.
pub(crate) const LEGACY_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";

/// The name, or a placeholder: the API server always sets one, but a hand-built object may not.
pub(crate) fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("(unnamed)")
}

/// `node n1` or, for a namespaced object, `deployment default/web`.
pub(crate) fn object(kind: &str, meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{}", name(meta)),
        _ => format!("{kind} {}", name(meta)),
    }
}

/// A label's value, where it has one: an empty value says nothing (no empty zone exists).
pub(crate) fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    let value = meta.labels.as_ref()?.get(key)?;
    Some(value.as_str()).filter(|v| !v.is_empty())
}

/// Whether the label is there, whatever its value: role labels are set with an empty one.
pub(crate) fn has_label(meta: &ObjectMeta, key: &str) -> bool {
    meta.labels.as_ref().is_some_and(|l| l.contains_key(key))
}

/// A Pod that has ended (phase Succeeded or Failed) holds no node slot and runs no container,
/// so neither the kubelet's pod limit nor the scale limits count it.
pub(crate) fn terminated(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The containers that run for as long as the Pod does: the regular ones and the sidecars
/// (init containers with `restartPolicy: Always`). Plain init containers have exited before
/// the others start, and ephemeral containers are short-lived debugging sessions.
pub(crate) fn long_running_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    sidecars.chain(&spec.containers)
}
