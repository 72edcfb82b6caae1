//! Building API objects for the tests from the JSON the API server would return, so that a
//! case states only the fields it is about.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Finding, Severity};

/// The object this JSON describes; a test's JSON that is no such object is a bug of the test.
pub fn k8s<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// A node with these labels and, where given, this `status.capacity.pods`.
pub fn node(name: &str, labels: Value, capacity_pods: Option<&str>) -> Node {
    let status = capacity_pods.map_or(json!({}), |p| json!({"capacity": {"pods": p}}));
    k8s(json!({"metadata": {"name": name, "labels": labels}, "status": status}))
}

/// A Pod `namespace/name` with one container `c`, bound to `node` where given, in `phase`.
pub fn pod(namespace: &str, name: &str, node: Option<&str>, phase: &str, labels: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c"}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    k8s(json!({
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": spec,
        "status": {"phase": phase},
    }))
}

/// Complies with every control: restricted needs a few fields set, at the pod level where the
/// API has them there.
pub fn restricted_pod() -> Value {
    json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "web",
            "image": "registry.example/web:1",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
        }],
    })
}

/// A table's expected findings: (id, severity, object).
pub type Want = &'static [(&'static str, Severity, &'static str)];

/// Asserts that `case` found exactly `want`, each finding with a message and a fix and citing
/// the page that `page` begins.
pub fn assert_found(case: &str, findings: &[Finding], want: Want, page: &str) {
    let want: Vec<_> = want
        .iter()
        .map(|&(id, s, o)| (id, s, o.to_owned()))
        .collect();
    assert_eq!(summary(findings), want, "{case}");
    for f in findings {
        assert!(!f.message.is_empty() && !f.fix.is_empty(), "{case}: {f:?}");
        assert!(f.page.starts_with(page), "{case}: {f:?}");
    }
}

/// What a table compares of a finding: id, severity and object.
pub fn summary(findings: &[Finding]) -> Vec<(&'static str, Severity, String)> {
    findings
        .iter()
        .map(|f| (f.id, f.severity, f.object.clone()))
        .collect()
}
