//! Each check's table: clusters where the finding appears, on the right object, and compliant
//! ones where it does not. A case lists every finding the cluster has, so that a check firing
//! where it should not fails it too.

use serde_json::{Value, json};

use super::*;
use crate::testing::{Want, assert_found, k8s, node, pod, summary};
use Severity::{Info, Warning};

fn zoned(name: &str, zone: &str) -> Node {
    node(name, json!({ZONE_LABEL: zone}), None)
}

/// A control-plane node (kubeadm's label, with its empty value) in `zone` where given.
fn control_plane(name: &str, zone: Option<&str>) -> Node {
    let mut labels = json!({"node-role.kubernetes.io/control-plane": ""});
    if let Some(zone) = zone {
        labels[ZONE_LABEL] = json!(zone);
    }
    node(name, labels, None)
}

/// A running kube-system Pod of a control-plane component, as kubeadm's static Pods are labelled.
fn component(component: &str, on: &str) -> Pod {
    let name = format!("{component}-{on}");
    pod(
        "kube-system",
        &name,
        Some(on),
        "Running",
        json!({"component": component}),
    )
}

/// Three control-plane nodes, one in each of the zones a, b and c.
fn three_zones() -> Vec<Node> {
    vec![
        control_plane("cp1", Some("a")),
        control_plane("cp2", Some("b")),
        control_plane("cp3", Some("c")),
    ]
}

#[derive(Default)]
struct Cluster {
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    deployments: Vec<Deployment>,
    stateful_sets: Vec<StatefulSet>,
    volumes: Vec<PersistentVolume>,
}

impl Cluster {
    fn nodes(nodes: Vec<Node>) -> Cluster {
        Cluster {
            nodes,
            ..Cluster::default()
        }
    }

    fn findings(&self) -> Vec<Finding> {
        zones(
            &self.nodes,
            &self.pods,
            &self.deployments,
            &self.stateful_sets,
            &self.volumes,
        )
    }
}

fn run(cases: Vec<(&str, Cluster, Want)>) {
    assert!(
        cases.iter().any(|(.., want)| want.is_empty()),
        "no compliant case"
    );
    assert!(
        cases.iter().any(|(.., want)| !want.is_empty()),
        "no finding case"
    );
    for (case, cluster, want) in cases {
        assert_found(
            case,
            &cluster.findings(),
            want,
            "Running in multiple zones: ",
        );
    }
}

#[test]
fn nodes_without_a_zone_label() {
    run(vec![
        ("labelled", Cluster::nodes(vec![zoned("n1", "a")]), &[]),
        (
            // In a single zone, spreading has nothing to miss yet.
            "unlabelled, one zone",
            Cluster::nodes(vec![zoned("n1", "a"), node("n2", json!({}), None)]),
            &[("ZONE-NODE-UNLABELLED", Info, "node n2")],
        ),
        (
            "unlabelled, two zones",
            Cluster::nodes(vec![
                zoned("n1", "a"),
                zoned("n2", "b"),
                node("n3", json!({}), None),
            ]),
            &[("ZONE-NODE-UNLABELLED", Warning, "node n3")],
        ),
        (
            "only the legacy label, which still places it in zone b",
            Cluster::nodes(vec![
                zoned("n1", "a"),
                node("n2", json!({LEGACY_ZONE_LABEL: "b"}), None),
            ]),
            &[("ZONE-NODE-UNLABELLED", Warning, "node n2")],
        ),
        (
            "an empty zone",
            Cluster::nodes(vec![zoned("n1", "")]),
            &[("ZONE-NODE-UNLABELLED", Info, "node n1")],
        ),
    ]);
    let legacy = Cluster::nodes(vec![node("n2", json!({LEGACY_ZONE_LABEL: "b"}), None)]);
    assert_eq!(
        legacy.findings()[0].message,
        format!("no {ZONE_LABEL} label; only the deprecated {LEGACY_ZONE_LABEL}=b")
    );
}

#[test]
fn control_plane_nodes_in_fewer_than_three_zones() {
    let master = |name, zone| {
        node(
            name,
            json!({"node-role.kubernetes.io/master": "", ZONE_LABEL: zone}),
            None,
        )
    };
    run(vec![
        ("three zones", Cluster::nodes(three_zones()), &[]),
        (
            "two zones",
            Cluster::nodes(vec![
                control_plane("cp1", Some("a")),
                control_plane("cp2", Some("a")),
                control_plane("cp3", Some("b")),
            ]),
            &[("ZONE-CONTROL-PLANE-SPREAD", Warning, "cluster")],
        ),
        (
            "one node",
            Cluster::nodes(vec![control_plane("cp1", Some("a"))]),
            &[("ZONE-CONTROL-PLANE-SPREAD", Warning, "cluster")],
        ),
        (
            "the old master label, three zones",
            Cluster::nodes(vec![
                master("m1", "a"),
                master("m2", "b"),
                master("m3", "c"),
            ]),
            &[],
        ),
        (
            "the old master label, two zones",
            Cluster::nodes(vec![master("m1", "a"), master("m2", "b")]),
            &[("ZONE-CONTROL-PLANE-SPREAD", Warning, "cluster")],
        ),
        (
            "a third node in no known zone",
            Cluster::nodes(vec![
                control_plane("cp1", Some("a")),
                control_plane("cp2", Some("b")),
                control_plane("cp3", None),
            ]),
            &[
                ("ZONE-NODE-UNLABELLED", Warning, "node cp3"),
                ("ZONE-CONTROL-PLANE-SPREAD", Warning, "cluster"),
            ],
        ),
        (
            // A managed control plane: no nodes to judge.
            "workers only",
            Cluster::nodes(vec![zoned("w1", "a"), zoned("w2", "a")]),
            &[],
        ),
    ]);
    let two = Cluster::nodes(vec![
        control_plane("cp1", Some("a")),
        control_plane("cp2", Some("a")),
        control_plane("cp3", None),
    ]);
    assert_eq!(
        two.findings()[1].message,
        "3 control-plane nodes in 1 zone(s), fewer than 3 (a: cp1, cp2; no known zone: cp3)"
    );
}

/// The three-zone control plane with these Pods.
fn with_pods(pods: Vec<Pod>) -> Cluster {
    Cluster {
        pods,
        ..Cluster::nodes(three_zones())
    }
}

#[test]
fn api_servers_in_one_zone() {
    let mut elsewhere = component("kube-apiserver", "cp1");
    elsewhere.metadata.namespace = Some("default".into());
    let mut failed = component("kube-apiserver", "cp2");
    if let Some(status) = failed.status.as_mut() {
        status.phase = Some("Failed".into());
    }
    run(vec![
        (
            "two zones",
            with_pods(vec![
                component("kube-apiserver", "cp1"),
                component("kube-apiserver", "cp2"),
            ]),
            &[],
        ),
        ("none listed", with_pods(vec![]), &[]),
        (
            "one zone",
            with_pods(vec![component("kube-apiserver", "cp1")]),
            &[("ZONE-APISERVER-ONE-ZONE", Warning, "cluster")],
        ),
        (
            "the other one has failed",
            with_pods(vec![component("kube-apiserver", "cp1"), failed]),
            &[("ZONE-APISERVER-ONE-ZONE", Warning, "cluster")],
        ),
        (
            "the other one is not in kube-system",
            with_pods(vec![component("kube-apiserver", "cp1"), elsewhere]),
            &[("ZONE-APISERVER-ONE-ZONE", Warning, "cluster")],
        ),
        (
            "the other one on a node not listed",
            with_pods(vec![
                component("kube-apiserver", "cp1"),
                component("kube-apiserver", "gone"),
            ]),
            &[("ZONE-APISERVER-ONE-ZONE", Warning, "cluster")],
        ),
        (
            "other components are not API servers",
            with_pods(vec![
                component("kube-apiserver", "cp1"),
                component("kube-scheduler", "cp2"),
            ]),
            &[("ZONE-APISERVER-ONE-ZONE", Warning, "cluster")],
        ),
    ]);
    let gone = with_pods(vec![
        component("kube-apiserver", "cp1"),
        component("kube-apiserver", "gone"),
    ]);
    assert_eq!(
        gone.findings()[0].message,
        "2 kube-apiserver Pods in 1 zone(s), fewer than 2 (a: kube-apiserver-cp1; no known \
         zone: kube-apiserver-gone)"
    );
}

#[test]
fn etcd_members_in_fewer_than_three_zones() {
    let mut unscheduled = component("etcd", "cp3");
    if let Some(spec) = unscheduled.spec.as_mut() {
        spec.node_name = None;
    }
    run(vec![
        (
            "three zones",
            with_pods(vec![
                component("etcd", "cp1"),
                component("etcd", "cp2"),
                component("etcd", "cp3"),
            ]),
            &[],
        ),
        (
            "two zones",
            with_pods(vec![component("etcd", "cp1"), component("etcd", "cp2")]),
            &[("ZONE-ETCD-SPREAD", Warning, "cluster")],
        ),
        (
            "the third not scheduled",
            with_pods(vec![
                component("etcd", "cp1"),
                component("etcd", "cp2"),
                unscheduled,
            ]),
            &[("ZONE-ETCD-SPREAD", Warning, "cluster")],
        ),
    ]);
}

/// A workload `default/web` with this many replicas (unset where none) and this much of a Pod
/// spec besides its container.
fn workload(replicas: Option<i32>, spec: Value) -> Value {
    let mut template = json!({"containers": [{"name": "c"}]});
    if let (Some(t), Some(extra)) = (template.as_object_mut(), spec.as_object()) {
        t.extend(extra.clone());
    }
    let mut spec = json!({"selector": {}, "template": {"spec": template}});
    if let Some(r) = replicas {
        spec["replicas"] = json!(r);
    }
    json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec})
}

fn spread_on(key: &str) -> Value {
    json!({"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
    }]})
}

fn anti_affinity(key: &str, preferred: bool) -> Value {
    let term = json!({"topologyKey": key, "labelSelector": {"matchLabels": {"app": "web"}}});
    let anti = if preferred {
        json!({"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term},
        ]})
    } else {
        json!({"requiredDuringSchedulingIgnoredDuringExecution": [term]})
    };
    json!({"affinity": {"podAntiAffinity": anti}})
}

#[test]
fn multi_replica_workloads_not_spread_over_zones() {
    let two_zones = || vec![zoned("n1", "a"), zoned("n2", "b")];
    let deployment = |nodes: Vec<Node>, replicas, spec| Cluster {
        deployments: vec![k8s(workload(replicas, spec))],
        ..Cluster::nodes(nodes)
    };
    let stateful_set = |replicas, spec| Cluster {
        stateful_sets: vec![k8s(workload(replicas, spec))],
        ..Cluster::nodes(two_zones())
    };
    let web: Want = &[("ZONE-WORKLOAD-SPREAD", Warning, "deployment default/web")];
    let none = json!({});
    run(vec![
        (
            "not spread",
            deployment(two_zones(), Some(3), none.clone()),
            web,
        ),
        (
            "spread",
            deployment(two_zones(), Some(3), spread_on(ZONE_LABEL)),
            &[],
        ),
        (
            "spread on the legacy label",
            deployment(two_zones(), Some(3), spread_on(LEGACY_ZONE_LABEL)),
            &[],
        ),
        (
            "spread over nodes only",
            deployment(two_zones(), Some(3), spread_on("kubernetes.io/hostname")),
            web,
        ),
        (
            "required anti-affinity",
            deployment(two_zones(), Some(2), anti_affinity(ZONE_LABEL, false)),
            &[],
        ),
        (
            "preferred anti-affinity",
            deployment(two_zones(), Some(2), anti_affinity(ZONE_LABEL, true)),
            &[],
        ),
        (
            "anti-affinity over nodes only",
            deployment(
                two_zones(),
                Some(2),
                anti_affinity("kubernetes.io/hostname", false),
            ),
            web,
        ),
        (
            "one replica",
            deployment(two_zones(), Some(1), none.clone()),
            &[],
        ),
        (
            "replicas unset",
            deployment(two_zones(), None, none.clone()),
            &[],
        ),
        (
            "scaled to zero",
            deployment(two_zones(), Some(0), none.clone()),
            &[],
        ),
        (
            "one zone: nothing to spread over",
            deployment(
                vec![zoned("n1", "a"), zoned("n2", "a")],
                Some(3),
                none.clone(),
            ),
            &[],
        ),
        (
            "a StatefulSet",
            stateful_set(Some(3), none.clone()),
            &[("ZONE-WORKLOAD-SPREAD", Warning, "statefulset default/web")],
        ),
        (
            "a spread StatefulSet",
            stateful_set(Some(3), spread_on(ZONE_LABEL)),
            &[],
        ),
    ]);
    let c = deployment(two_zones(), Some(3), none);
    assert_eq!(
        c.findings()[0].message,
        format!(
            "3 replicas and neither a topologySpreadConstraint nor a Pod anti-affinity on \
             {ZONE_LABEL}, in a cluster of 2 zones"
        )
    );
}

fn volume(labels: Value, spec: Value) -> PersistentVolume {
    k8s(json!({"metadata": {"name": "pv1", "labels": labels}, "spec": spec}))
}

/// A required node affinity of one term per list of keys.
fn affinity(terms: &[&[&str]]) -> Value {
    let terms: Vec<Value> = terms
        .iter()
        .map(|keys| {
            let exprs: Vec<Value> = keys
                .iter()
                .map(|k| json!({"key": k, "operator": "In", "values": ["x"]}))
                .collect();
            json!({"matchExpressions": exprs})
        })
        .collect();
    json!({"required": {"nodeSelectorTerms": terms}})
}

#[test]
fn persistent_volumes_without_a_zone() {
    let two_zones = || vec![zoned("n1", "a"), zoned("n2", "b")];
    let with = |nodes: Vec<Node>, pv| Cluster {
        volumes: vec![pv],
        ..Cluster::nodes(nodes)
    };
    let csi = json!({"csi": {"driver": "disk.csi.example", "volumeHandle": "v1"}});
    let zonal_csi = |affinity: Value| {
        let mut spec = csi.clone();
        spec["nodeAffinity"] = affinity;
        spec
    };
    let pv1: Want = &[("ZONE-PV-UNLABELLED", Warning, "persistentvolume pv1")];
    run(vec![
        (
            "labelled",
            with(two_zones(), volume(json!({ZONE_LABEL: "a"}), csi.clone())),
            &[],
        ),
        (
            "legacy label",
            with(
                two_zones(),
                volume(json!({LEGACY_ZONE_LABEL: "a"}), csi.clone()),
            ),
            &[],
        ),
        (
            "neither",
            with(two_zones(), volume(json!({}), csi.clone())),
            pv1,
        ),
        (
            "one zone",
            with(vec![zoned("n1", "a")], volume(json!({}), csi.clone())),
            &[("ZONE-PV-UNLABELLED", Info, "persistentvolume pv1")],
        ),
        (
            "empty zone label",
            with(two_zones(), volume(json!({ZONE_LABEL: ""}), csi.clone())),
            pv1,
        ),
        (
            "affinity on the zone",
            with(
                two_zones(),
                volume(json!({}), zonal_csi(affinity(&[&[ZONE_LABEL]]))),
            ),
            &[],
        ),
        (
            "affinity on the zone in each term",
            with(
                two_zones(),
                volume(
                    json!({}),
                    zonal_csi(affinity(&[&[ZONE_LABEL], &["disk", LEGACY_ZONE_LABEL]])),
                ),
            ),
            &[],
        ),
        (
            "a term without the zone",
            with(
                two_zones(),
                volume(json!({}), zonal_csi(affinity(&[&[ZONE_LABEL], &["disk"]]))),
            ),
            pv1,
        ),
        (
            "affinity on another label",
            with(
                two_zones(),
                volume(json!({}), zonal_csi(affinity(&[&["disk"]]))),
            ),
            pv1,
        ),
        (
            "affinity without terms",
            with(two_zones(), volume(json!({}), zonal_csi(affinity(&[])))),
            pv1,
        ),
        (
            "a local volume on one node",
            with(
                two_zones(),
                volume(
                    json!({}),
                    json!({"local": {"path": "/mnt/disk"}, "nodeAffinity": affinity(&[&[HOSTNAME_KEY]])}),
                ),
            ),
            &[],
        ),
        (
            "a node by field",
            with(
                two_zones(),
                volume(
                    json!({}),
                    zonal_csi(json!({"required": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                    ]}})),
                ),
            ),
            &[],
        ),
        (
            "NFS, reached from any zone",
            with(
                two_zones(),
                volume(json!({}), json!({"nfs": {"server": "nfs", "path": "/"}})),
            ),
            &[],
        ),
        (
            "no spec",
            with(two_zones(), k8s(json!({"metadata": {"name": "pv1"}}))),
            pv1,
        ),
    ]);
    let c = with(two_zones(), volume(json!({}), csi));
    assert_eq!(
        c.findings()[0].message,
        format!(
            "csi volume with neither a {ZONE_LABEL} (or {LEGACY_ZONE_LABEL}) label nor a \
             spec.nodeAffinity on the zone or a node"
        )
    );
}

#[test]
fn empty_objects_do_not_panic() {
    let cluster = Cluster {
        nodes: vec![Node::default()],
        pods: vec![
            Pod::default(),
            k8s(json!({"metadata": {"namespace": "kube-system", "labels": {"component": "etcd"}}})),
        ],
        deployments: vec![Deployment::default()],
        stateful_sets: vec![StatefulSet::default()],
        volumes: vec![PersistentVolume::default()],
    };
    let want = [
        ("ZONE-NODE-UNLABELLED", Info, "node (unnamed)".to_owned()),
        ("ZONE-ETCD-SPREAD", Warning, "cluster".to_owned()),
        (
            "ZONE-PV-UNLABELLED",
            Info,
            "persistentvolume (unnamed)".to_owned(),
        ),
    ];
    assert_eq!(summary(&cluster.findings()), want);
}

#[test]
fn the_streaming_form_equals_the_slice_form() {
    let cluster = Cluster {
        deployments: vec![k8s(workload(Some(3), json!({})))],
        volumes: vec![volume(json!({}), json!({}))],
        ..with_pods(vec![component("etcd", "cp1")])
    };
    let mut z = Zones::new();
    // Workloads and Pods before the nodes that decide about them.
    cluster.deployments.iter().for_each(|d| z.add_deployment(d));
    cluster.pods.iter().for_each(|p| z.add_pod(p));
    cluster
        .volumes
        .iter()
        .for_each(|v| z.add_persistent_volume(v));
    cluster.nodes.iter().for_each(|n| z.add_node(n));
    let streamed = z.finish();
    assert_eq!(streamed, cluster.findings());
    let ids: Vec<_> = streamed.iter().map(|f| f.id).collect();
    assert_eq!(
        ids,
        [
            "ZONE-ETCD-SPREAD",
            "ZONE-WORKLOAD-SPREAD",
            "ZONE-PV-UNLABELLED"
        ]
    );
}
