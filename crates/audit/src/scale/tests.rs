//! Each check's table: a small cluster and the limits lowered until it crosses each of them,
//! compliant cases included; the headroom arithmetic at its edges.

use serde_json::{Value, json};

use super::*;
use crate::testing::{Want, assert_found, k8s, node, pod, summary};
use Severity::{Error, Warning};

/// The page's limits with some lowered.
fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::PAGE;
    change(&mut l);
    l
}

/// Three nodes; n1 runs 4 Pods, n2 runs 2, n3 none, one Pod waits unscheduled and two have
/// ended on n1: 7 Pods. One of n2's Pods has a sidecar and a plain init container: 8
/// containers.
fn small_cluster() -> (Vec<Node>, Vec<Pod>) {
    let nodes = ["n1", "n2", "n3"]
        .map(|n| node(n, json!({}), None))
        .to_vec();
    let mut pods = Vec::new();
    for (i, on) in ["n1", "n1", "n1", "n1", "n2", "n2"].iter().enumerate() {
        pods.push(pod(
            "default",
            &format!("p{i}"),
            Some(on),
            "Running",
            json!({}),
        ));
    }
    pods.push(pod("default", "waiting", None, "Pending", json!({})));
    pods.push(pod("default", "done", Some("n1"), "Succeeded", json!({})));
    pods.push(pod("default", "crashed", Some("n1"), "Failed", json!({})));
    let sidecar = json!([
        {"name": "log", "restartPolicy": "Always"},
        {"name": "migrate"},
    ]);
    if let Some(spec) = pods[5].spec.as_mut() {
        spec.init_containers = Some(k8s(sidecar));
    }
    (nodes, pods)
}

#[test]
fn the_small_cluster_is_counted_as_the_page_counts() {
    let (nodes, pods) = small_cluster();
    let (report, findings) = scale(&nodes, &pods, &Workloads::default(), &Limits::PAGE);
    assert_eq!(findings, []);
    assert_eq!(report.nodes, Usage::new(3, 5000));
    assert_eq!(report.pods, Usage::new(7, 150_000));
    assert_eq!(report.containers, Usage::new(8, 300_000));
    assert_eq!(report.terminated_pods, 2);
    let worst: Vec<_> = report
        .worst_nodes
        .iter()
        .map(|n| (n.node.as_str(), n.usage.current, n.usage.headroom_percent))
        .collect();
    assert_eq!(
        worst,
        [
            ("n1", 4, Some(96.3)),
            ("n2", 2, Some(98.1)),
            ("n3", 0, Some(100.0))
        ]
    );
}

/// Sets one of the limits.
type Set = fn(&mut Limits, u64);

#[test]
fn lowered_limits_cross_each_limit() {
    let (nodes, pods) = small_cluster();
    let page = "Considerations for large clusters: ";
    // Each limit at one under the small cluster's count, at it, and one over: an error, a
    // warning (no headroom) and nothing (at least 11 % headroom).
    let each: [(&str, &str, u64, Set); 4] = [
        ("SCALE-NODES", "cluster", 3, |l, v| l.nodes = v),
        ("SCALE-PODS", "cluster", 7, |l, v| l.pods = v),
        ("SCALE-CONTAINERS", "cluster", 8, |l, v| l.containers = v),
        ("SCALE-PODS-PER-NODE", "node n1", 4, |l, v| {
            l.pods_per_node = v
        }),
    ];
    for (id, object, count, set) in each {
        for (limit, want) in [
            (count - 1, Some(Error)),
            (count, Some(Warning)),
            (count + 1, None),
        ] {
            let limits = limits(|l| set(l, limit));
            let (_, findings) = scale(&nodes, &pods, &Workloads::default(), &limits);
            let want: Vec<_> = want
                .into_iter()
                .map(|s| (id, s, object.to_owned()))
                .collect();
            assert_eq!(summary(&findings), want, "{id} at a limit of {limit}");
        }
    }

    let cases: Vec<(&str, Limits, Want)> = vec![
        ("page", Limits::PAGE, &[]),
        (
            "nodes at, no warning asked",
            limits(|l| {
                l.nodes = 3;
                l.warn_headroom_percent = 0;
            }),
            &[],
        ),
        (
            "pods 12.5 % left, warned under 20 %",
            limits(|l| {
                l.pods = 8;
                l.warn_headroom_percent = 20;
            }),
            &[("SCALE-PODS", Warning, "cluster")],
        ),
        (
            "per node over and at",
            limits(|l| l.pods_per_node = 2),
            &[
                ("SCALE-PODS-PER-NODE", Error, "node n1"),
                ("SCALE-PODS-PER-NODE", Warning, "node n2"),
            ],
        ),
        (
            "every limit zero",
            Limits {
                pods_per_node: 0,
                nodes: 0,
                pods: 0,
                containers: 0,
                warn_headroom_percent: 10,
            },
            // n3 runs nothing: 0 of 0 is not over.
            &[
                ("SCALE-NODES", Error, "cluster"),
                ("SCALE-PODS", Error, "cluster"),
                ("SCALE-CONTAINERS", Error, "cluster"),
                ("SCALE-PODS-PER-NODE", Error, "node n1"),
                ("SCALE-PODS-PER-NODE", Error, "node n2"),
            ],
        ),
    ];
    for (case, limits, want) in cases {
        let (_, findings) = scale(&nodes, &pods, &Workloads::default(), &limits);
        assert_found(case, &findings, want, page);
    }
}

#[test]
fn messages_state_the_values() {
    let (nodes, pods) = small_cluster();
    let over = limits(|l| l.pods = 6);
    let (_, findings) = scale(&nodes, &pods, &Workloads::default(), &over);
    assert_eq!(findings[0].message, "7 Pods, 1 over the limit of 6");
    let at = limits(|l| l.pods_per_node = 4);
    let (_, findings) = scale(&nodes, &pods, &Workloads::default(), &at);
    assert_eq!(
        findings[0].message,
        "4 Pods of at most 4: 0.0 % headroom, under 10 %"
    );
}

#[test]
fn headroom_arithmetic_is_safe_at_the_edges() {
    let max = u64::MAX;
    // (current, limit, headroom, exceeded, short of 10 %)
    let cases = [
        (0, 0, None, false, false),
        (1, 0, None, true, false),
        (max, 0, None, true, false),
        (0, 110, Some(100.0), false, false),
        (99, 110, Some(10.0), false, false),
        (100, 110, Some(9.0), false, true),
        // 9.996 %: cut, so that a warning under 10 % never shows 10.0 %.
        (2251, 2501, Some(9.9), false, true),
        (110, 110, Some(0.0), false, true),
        (111, 110, Some(-0.9), true, false),
        (220, 110, Some(-100.0), true, false),
        (0, max, Some(100.0), false, false),
        (max, max, Some(0.0), false, true),
        (max - 1, max, Some(0.0), false, true),
    ];
    for (current, limit, headroom, exceeded, short) in cases {
        let u = Usage::new(current, limit);
        let case = format!("{current} of {limit}");
        assert_eq!(u.headroom_percent, headroom, "{case}");
        assert_eq!(u.exceeded(), exceeded, "{case}");
        assert_eq!(u.short(10), short, "{case}");
        // No threshold overflows or panics; none is ever short of 0 %.
        assert!(!u.short(0), "{case}");
        assert_eq!(u.short(max), !exceeded && limit > 0, "{case}");
        assert!(verdict(u, "things", max).is_some() || limit == 0 && current == 0);
    }
    let (severity, message) = verdict(Usage::new(max, 0), "Pods", 10).unwrap();
    assert_eq!(severity, Error);
    assert_eq!(message, format!("{max} Pods, {max} over the limit of 0"));
}

#[test]
fn only_the_five_fullest_nodes_are_reported() {
    // Seven nodes with 1..=7 Pods, and two more with 7 and 3 Pods on a node that is not listed.
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for i in 1..=7 {
        let name = format!("n{i}");
        nodes.push(node(&name, json!({}), Some("110")));
        for j in 0..i {
            pods.push(pod(
                "default",
                &format!("{name}-{j}"),
                Some(&name),
                "Running",
                json!({}),
            ));
        }
    }
    for j in 0..7 {
        pods.push(pod(
            "default",
            &format!("gone-{j}"),
            Some("gone"),
            "Running",
            json!({}),
        ));
    }
    let (report, _) = scale(&nodes, &pods, &Workloads::default(), &Limits::PAGE);
    let worst: Vec<_> = report
        .worst_nodes
        .iter()
        .map(|n| (n.node.as_str(), n.usage.current, n.capacity))
        .collect();
    assert_eq!(
        worst,
        [
            ("gone", 7, None),
            ("n7", 7, Some(110)),
            ("n6", 6, Some(110)),
            ("n5", 5, Some(110)),
            ("n4", 4, Some(110)),
        ]
    );
    assert_eq!(report.nodes.current, 7);
}

#[test]
fn nodes_admitting_more_pods_than_the_limit() {
    // (capacity.pods, pods-per-node limit, finding)
    let cases = [
        (Some("110"), 110, false),
        (Some("111"), 110, true),
        (Some("250"), 110, true),
        (Some("1k"), 110, true),
        (Some("110"), 100, true),
        (Some("100"), 100, false),
        (Some("0"), 0, false),
        // Not a count: nothing can be said.
        (Some("lots"), 110, false),
        (None, 110, false),
    ];
    for (capacity, limit, found) in cases {
        let nodes = [node("n1", json!({}), capacity)];
        let limits = limits(|l| l.pods_per_node = limit);
        let (report, findings) = scale(&nodes, &[], &Workloads::default(), &limits);
        let want = if found {
            vec![("SCALE-NODE-CAPACITY-PODS", Warning, "node n1".to_owned())]
        } else {
            vec![]
        };
        assert_eq!(summary(&findings), want, "{capacity:?} against {limit}");
        assert_eq!(report.worst_nodes[0].capacity, capacity.and_then(count));
    }
    let (_, findings) = scale(
        &[node("n1", json!({}), Some("250"))],
        &[],
        &Workloads::default(),
        &Limits::PAGE,
    );
    assert_eq!(
        findings[0].message,
        "status.capacity.pods is 250: the kubelet admits more Pods than the limit of 110"
    );
}

#[test]
fn quantities_that_are_counts() {
    let cases = [
        ("110", Some(110)),
        (" 5 ", Some(5)),
        ("1k", Some(1000)),
        ("2M", Some(2_000_000)),
        ("3G", Some(3_000_000_000)),
        ("", None),
        ("k", None),
        ("1.5k", None),
        ("-1", None),
        ("1Ki", None),
        ("1e3", None),
        ("18446744073709551615G", None),
        ("é", None),
    ];
    for (q, want) in cases {
        assert_eq!(count(q), want, "{q:?}");
    }
}

/// A DaemonSet or Deployment whose Pod template has this spec.
fn workload(kind: &str, namespace: &str, spec: Value) -> Value {
    json!({
        "kind": kind,
        "metadata": {"namespace": namespace, "name": "addon"},
        "spec": {"selector": {}, "template": {"spec": spec}},
    })
}

fn containers(resources: Value) -> Value {
    json!({"containers": [{"name": "agent", "resources": resources}]})
}

#[test]
fn addons_without_requests_and_limits() {
    let all = json!({
        "requests": {"cpu": "10m", "memory": "20Mi"},
        "limits": {"cpu": "100m", "memory": "200Mi"},
    });
    const NONE: &str = "requests.cpu, requests.memory, limits.cpu, limits.memory";
    // (case, kind, namespace, template spec, missing per finding)
    let cases: Vec<(&str, &str, &str, Value, &[&str])> = vec![
        (
            "all four",
            "DaemonSet",
            "logging",
            containers(all.clone()),
            &[],
        ),
        (
            "none",
            "DaemonSet",
            "logging",
            containers(json!({})),
            &[NONE],
        ),
        (
            "no resources field",
            "DaemonSet",
            "logging",
            json!({"containers": [{"name": "agent"}]}),
            &[NONE],
        ),
        (
            // The API server copies a limit into the unset request.
            "limits alone",
            "DaemonSet",
            "logging",
            containers(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
            &[],
        ),
        (
            "requests alone",
            "DaemonSet",
            "logging",
            containers(json!({"requests": {"cpu": "1", "memory": "1Gi"}})),
            &["limits.cpu, limits.memory"],
        ),
        (
            "no memory",
            "DaemonSet",
            "logging",
            containers(json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}})),
            &["requests.memory, limits.memory"],
        ),
        (
            "set at the Pod level",
            "DaemonSet",
            "logging",
            json!({"resources": all.clone(), "containers": [{"name": "agent"}]}),
            &[],
        ),
        (
            "one of two containers",
            "DaemonSet",
            "logging",
            json!({"containers": [
                {"name": "agent", "resources": all.clone()},
                {"name": "exporter"},
            ]}),
            &[NONE],
        ),
        (
            "a sidecar without, a plain init container without",
            "DaemonSet",
            "logging",
            json!({
                "initContainers": [
                    {"name": "setup"},
                    {"name": "log", "restartPolicy": "Always"},
                ],
                "containers": [{"name": "agent", "resources": all.clone()}],
            }),
            &[NONE],
        ),
        (
            "kube-system Deployment",
            "Deployment",
            "kube-system",
            containers(json!({})),
            &[NONE],
        ),
        (
            "other Deployment",
            "Deployment",
            "default",
            containers(json!({})),
            &[],
        ),
    ];
    for (case, kind, ns, spec, want) in cases {
        let object = workload(kind, ns, spec);
        let mut workloads = Workloads::default();
        match kind {
            "DaemonSet" => workloads.daemon_sets.push(k8s(object)),
            _ => workloads.deployments.push(k8s(object)),
        }
        let (_, findings) = scale(&[], &[], &workloads, &Limits::PAGE);
        let got: Vec<_> = findings
            .iter()
            .map(|f| (f.id, f.severity, f.object.as_str()))
            .collect();
        let object = format!("{} {ns}/addon", kind.to_lowercase());
        let ids: Vec<_> = want
            .iter()
            .map(|_| ("SCALE-ADDON-RESOURCES", Warning, object.as_str()))
            .collect();
        assert_eq!(got, ids, "{case}");
        for (f, missing) in findings.iter().zip(want) {
            assert!(
                f.message.ends_with(&format!("sets no {missing}")),
                "{case}: {f:?}"
            );
        }
    }
}

#[test]
fn the_missing_resources_are_named_per_container() {
    let spec = json!({
        "initContainers": [{"name": "log", "restartPolicy": "Always"}],
        "containers": [{"name": "agent", "resources": {"limits": {"cpu": "1"}}}],
    });
    let workloads = Workloads {
        daemon_sets: vec![k8s(workload("DaemonSet", "kube-system", spec))],
        deployments: vec![],
    };
    let (_, findings) = scale(&[], &[], &workloads, &Limits::PAGE);
    let messages: Vec<_> = findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "container log sets no requests.cpu, requests.memory, limits.cpu, limits.memory",
            "container agent sets no requests.memory, limits.memory",
        ]
    );
}

#[test]
fn empty_objects_do_not_panic() {
    let workloads = Workloads {
        daemon_sets: vec![DaemonSet::default()],
        deployments: vec![k8s(json!({"metadata": {"namespace": "kube-system"}}))],
    };
    let pods = [
        Pod::default(),
        k8s(json!({"spec": {"containers": [], "nodeName": ""}, "status": {}})),
    ];
    let (report, findings) = scale(&[Node::default()], &pods, &workloads, &Limits::PAGE);
    assert_eq!(findings, []);
    assert_eq!((report.nodes.current, report.pods.current), (1, 2));
    assert_eq!(report.containers.current, 0);
    assert_eq!(report.worst_nodes[0].node, "(unnamed)");
}

#[test]
fn the_streaming_form_equals_the_slice_form() {
    let (nodes, pods) = small_cluster();
    let limits = limits(|l| l.pods_per_node = 2);
    let mut s = Scale::new(limits);
    // Pods before their nodes, as separate lists may come.
    pods.iter().for_each(|p| s.add_pod(p));
    nodes.iter().for_each(|n| s.add_node(n));
    assert_eq!(
        s.finish(),
        scale(&nodes, &pods, &Workloads::default(), &limits)
    );
}

#[test]
fn the_report_serializes_flat() {
    let (nodes, pods) = small_cluster();
    let (report, _) = scale(
        &nodes[..1],
        &pods[..1],
        &Workloads::default(),
        &Limits::PAGE,
    );
    assert_eq!(
        serde_json::to_value(&report).unwrap_or_default(),
        json!({
            "nodes": {"current": 1, "limit": 5000, "headroom_percent": 99.9},
            "pods": {"current": 1, "limit": 150_000, "headroom_percent": 99.9},
            "containers": {"current": 1, "limit": 300_000, "headroom_percent": 99.9},
            "worst_nodes": [
                {"node": "n1", "current": 1, "limit": 110, "headroom_percent": 99.0, "capacity": null},
            ],
            "terminated_pods": 0,
        })
    );
}
