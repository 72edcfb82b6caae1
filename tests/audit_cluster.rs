//! `kubepki audit` against a real kube-apiserver v1.20.2 and etcd (processes on 127.0.0.70),
//! populated by the test with Nodes (zones, capacities), namespaces (labelled and not), Pods,
//! Deployments, a StatefulSet, DaemonSets and PersistentVolumes, each built to trip one check
//! or to pass it. Every audit runs as a user who may only get and list (the ClusterRole of
//! deploy/audit), so the audit provably changes nothing.
//!
//! 1. Pod Security Standards, one table row per control: a Pod compliant with `restricted`
//!    gives no finding; a Pod that breaks one control (and only what that breaks with it) gives
//!    exactly that control's finding, at its level. Every control of `pss::CONTROLS` has a row
//!    or a reason why v1.20 cannot store such a Pod. The severity follows the namespace's own
//!    labels (error where the namespace asks for the level, else warning/info).
//! 2. Namespace labels: unlabelled, privileged, enforce without warn/audit, an invalid level, a
//!    version pinned before the cluster's v1.20 and one that is not.
//! 3. Scale, with the limits lowered by flags so that a small cluster crosses each: nodes, Pods,
//!    containers, Pods per node, kubelet capacity over the limit, addons without resources; the
//!    report's counts are the objects created (a terminated Pod not counted); a page size of 1
//!    gives the same report as one LIST.
//! 4. Zones: an unlabelled node, control plane / API servers / etcd in two zones, an unspread
//!    Deployment and StatefulSet (and a spread one that passes), an unlabelled PV (and a labelled
//!    one that passes).
//! 5. Failures: a user who may not list Pods gets exit 2 naming pods; an API server that does
//!    not answer, exit 2; `--fail-on` decides 0 or 1.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::cluster::*;
use common::*;
use kubepki_audit::pss::{CONTROLS, Level};
use serde_json::{Value, json};

const LOOPBACK: u8 = 70;
const NODE: &str = "cp1";

#[test]
fn audit_against_a_real_apiserver() {
    let started = std::time::Instant::now();
    let bin = ensure_control_plane_tools();
    let tmp = scratch();
    let mut cluster = Cluster::start(bin, tmp.path(), NODE, loopback(LOOPBACK));
    run_checks(&mut cluster, checks, Cluster::log_tails);
    eprintln!(
        "audit_cluster: all checks passed in {:?}",
        started.elapsed()
    );
}

fn checks(c: &mut Cluster) {
    c.wait_etcd_healthy();
    c.wait_apiserver_ready();
    let admin = c.conf("super-admin.conf");
    create(&admin, &objects(), "the test's objects");
    // The enforced namespace tightens its policy after its Pods run.
    run_ok(kctl(&admin).args(["label", "namespace", ENFORCED_NS]).args(
        ["enforce", "warn", "audit"].map(|m| format!("pod-security.kubernetes.io/{m}=restricted")),
    ));
    // A Pod that has ended holds no slot. Its phase is status, written through the status
    // subresource (PUT; kubectl 1.20 has no --subresource).
    let pod = run_ok(kctl(&admin).args(["get", "pod", "-n", "scale", "finished", "-o", "json"]));
    let mut pod: Value = serde_json::from_slice(&pod.stdout).unwrap();
    pod["status"]["phase"] = json!("Succeeded");
    let file = c.dir.join("finished.json");
    fs::write(&file, pod.to_string()).unwrap();
    run_ok(
        kctl(&admin)
            .args([
                "replace",
                "--raw",
                "/api/v1/namespaces/scale/pods/finished/status",
                "-f",
            ])
            .arg(&file),
    );
    let phase = run_ok(kctl(&admin).args([
        "get",
        "pod",
        "-n",
        "scale",
        "finished",
        "-o",
        "jsonpath={.status.phase}",
    ]));
    assert_eq!(stdout(&phase), "Succeeded");

    let auditor = auditor(c, &admin);
    pss_controls(&auditor);
    namespace_labels(&auditor);
    scale(&auditor);
    zones(&auditor);
    failures(c, &admin);
    cron_job(&auditor);
}

/// deploy/audit renders with kubectl 1.20's kustomize, and its CronJob's arguments are ones the
/// binary takes: run as they are (with the auditor's kubeconfig), they audit this cluster and
/// fail the Job (exit 1) on its errors.
fn cron_job(conf: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/audit");
    let o = run_ok(kctl(conf).arg("kustomize").arg(&dir));
    let docs: Vec<Value> = stdout(&o)
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let kinds: BTreeSet<String> = docs.iter().map(|d| s(&d["kind"])).collect();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CronJob",
            "Namespace",
            "ServiceAccount"
        ]
        .map(String::from)
        .into(),
    );
    let job = docs.iter().find(|d| d["kind"] == "CronJob").unwrap();
    assert_eq!(job["metadata"]["namespace"], "kubepki-system");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let o = kubepki()
        .args(&args)
        .arg("--kubeconfig")
        .arg(conf)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["summary"]["error"].as_u64().unwrap() > 0);
}

// ---------------------------------------------------------------------------------------------
// The audit and its report.

/// `kubepki audit -o json` with `args`; exit 0 expected (no --fail-on).
fn audit_json(conf: &Path, args: &[&str]) -> Value {
    let o = run_ok(
        kubepki()
            .arg("audit")
            .arg("--kubeconfig")
            .arg(conf)
            .args(args)
            .args(["-o", "json"]),
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("audit output is not JSON: {e}\n{}", stdout(&o)))
}

fn findings(report: &Value) -> Vec<Value> {
    report["findings"].as_array().expect("findings").clone()
}

/// (id, severity) of the findings about `object`.
fn about(report: &Value, object: &str) -> BTreeSet<(String, String)> {
    findings(report)
        .iter()
        .filter(|f| f["object"] == object)
        .map(|f| (s(&f["id"]), s(&f["severity"])))
        .collect()
}

fn ids(report: &Value) -> BTreeSet<String> {
    findings(report).iter().map(|f| s(&f["id"])).collect()
}

fn with_id(report: &Value, id: &str) -> Vec<Value> {
    findings(report)
        .into_iter()
        .filter(|f| f["id"] == id)
        .collect()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn show_report(report: &Value) -> String {
    findings(report)
        .iter()
        .map(|f| {
            format!(
                "{} {} {}: {}",
                f["severity"], f["id"], f["object"], f["message"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// 1. Pod Security Standards, control by control.

/// The namespace of the control table: unlabelled, so that a baseline violation is a warning
/// and a restricted one is information.
const PSS_NS: &str = "pss";
/// A namespace that asks for `restricted` (labels set after its Pods were created, as happens
/// when a policy is tightened): its violations are errors.
const ENFORCED_NS: &str = "pss-enforced";

/// A container compliant with `restricted`.
fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "busybox",
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        },
    })
}

/// A Pod compliant with `restricted`, bound to a node (no scheduler runs).
fn restricted_pod(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "nodeName": "n1",
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container("app")],
        },
    })
}

/// Merges `patch` into `v` (objects key by key, anything else replaced; null removes).
fn merge(v: &mut Value, patch: &Value) {
    match (v, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, pv) in b {
                if pv.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), pv);
                }
            }
        }
        (v, p) => *v = p.clone(),
    }
}

/// One row: a Pod name, what is changed from the restricted Pod, and the controls (admission
/// plugin ids) it then breaks.
struct Row {
    name: &'static str,
    patch: Value,
    breaks: &'static [&'static str],
}

/// The controls v1.20 cannot store a violation of (its API server drops the field), with why.
/// The unit tests of crates/audit/src/pss cover them.
const NOT_ON_V1_20: &[(&str, &str)] = &[
    (
        "windowsHostProcess",
        "windowsOptions.hostProcess exists from v1.22",
    ),
    (
        "procMount",
        "procMount is behind the ProcMountType gate, off in v1.20",
    ),
    (
        "procMount_restricted",
        "procMount is behind the ProcMountType gate, off in v1.20",
    ),
];

fn rows() -> Vec<Row> {
    let c = |patch: Value| json!({"spec": {"containers": [merge_into(container("app"), patch)]}});
    vec![
        Row {
            name: "compliant",
            patch: json!({}),
            breaks: &[],
        },
        Row {
            name: "host-network",
            patch: json!({"spec": {"hostNetwork": true}}),
            breaks: &["hostNamespaces"],
        },
        Row {
            name: "host-pid",
            patch: json!({"spec": {"hostPID": true}}),
            breaks: &["hostNamespaces"],
        },
        Row {
            name: "host-ipc",
            patch: json!({"spec": {"hostIPC": true}}),
            breaks: &["hostNamespaces"],
        },
        Row {
            // The API server refuses privileged with allowPrivilegeEscalation: false.
            name: "privileged",
            patch: c(
                json!({"securityContext": {"privileged": true, "allowPrivilegeEscalation": null}}),
            ),
            breaks: &["privileged", "allowPrivilegeEscalation"],
        },
        Row {
            name: "privileged-init",
            patch: json!({"spec": {"initContainers": [merge_into(container("init"),
                json!({"securityContext": {"privileged": true, "allowPrivilegeEscalation": null}}))]}}),
            breaks: &["privileged", "allowPrivilegeEscalation"],
        },
        Row {
            name: "cap-sys-admin",
            patch: c(json!({"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}})),
            breaks: &["capabilities_baseline"],
        },
        Row {
            // In the runtime's default set, so baseline allows it; restricted allows only
            // NET_BIND_SERVICE back.
            name: "cap-chown",
            patch: c(json!({"securityContext": {"capabilities": {"add": ["CHOWN"]}}})),
            breaks: &["capabilities_restricted"],
        },
        Row {
            name: "cap-net-bind",
            patch: c(json!({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}})),
            breaks: &[],
        },
        Row {
            name: "cap-no-drop",
            patch: c(json!({"securityContext": {"capabilities": null}})),
            breaks: &["capabilities_restricted"],
        },
        Row {
            name: "host-path",
            patch: json!({"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}}),
            breaks: &["hostPathVolumes"],
        },
        Row {
            name: "host-port",
            patch: c(json!({"ports": [{"containerPort": 80, "hostPort": 8080}]})),
            breaks: &["hostPorts"],
        },
        Row {
            name: "container-port",
            patch: c(json!({"ports": [{"containerPort": 80}]})),
            breaks: &[],
        },
        Row {
            name: "apparmor-unconfined",
            patch: json!({"metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/app": "unconfined"}}}),
            breaks: &["appArmorProfile"],
        },
        Row {
            name: "apparmor-default",
            patch: json!({"metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/app": "runtime/default"}}}),
            breaks: &[],
        },
        Row {
            name: "selinux-type",
            patch: c(json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}})),
            breaks: &["seLinuxOptions"],
        },
        Row {
            name: "selinux-user",
            patch: json!({"spec": {"securityContext": {"seLinuxOptions": {"user": "system_u"}}}}),
            breaks: &["seLinuxOptions"],
        },
        Row {
            name: "selinux-level",
            patch: json!({"spec": {"securityContext": {"seLinuxOptions": {"level": "s0:c1,c2"}}}}),
            breaks: &[],
        },
        Row {
            name: "seccomp-unconfined",
            patch: json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}}),
            breaks: &["seccompProfile_baseline"],
        },
        Row {
            name: "seccomp-unset",
            patch: json!({"spec": {"securityContext": {"seccompProfile": null}}}),
            breaks: &["seccompProfile_restricted"],
        },
        Row {
            name: "seccomp-per-container",
            patch: json!({"spec": {
                "securityContext": {"seccompProfile": null},
                "containers": [merge_into(container("app"),
                    json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}))],
            }}),
            breaks: &[],
        },
        Row {
            name: "sysctl-unsafe",
            patch: json!({"spec": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}}}),
            breaks: &["sysctls"],
        },
        Row {
            name: "sysctl-safe",
            patch: json!({"spec": {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}}}),
            breaks: &[],
        },
        Row {
            name: "probe-host",
            patch: c(json!({"livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}})),
            breaks: &["hostProbesAndHostLifecycle"],
        },
        Row {
            name: "lifecycle-host",
            patch: c(
                json!({"lifecycle": {"preStop": {"tcpSocket": {"host": "10.0.0.1", "port": 80}}}}),
            ),
            breaks: &["hostProbesAndHostLifecycle"],
        },
        Row {
            name: "probe-local",
            patch: c(json!({"readinessProbe": {"httpGet": {"port": 80}}})),
            breaks: &[],
        },
        Row {
            name: "escalation-unset",
            patch: c(json!({"securityContext": {"allowPrivilegeEscalation": null}})),
            breaks: &["allowPrivilegeEscalation"],
        },
        Row {
            name: "escalation-true",
            patch: c(json!({"securityContext": {"allowPrivilegeEscalation": true}})),
            breaks: &["allowPrivilegeEscalation"],
        },
        Row {
            name: "non-root-unset",
            patch: json!({"spec": {"securityContext": {"runAsNonRoot": null}}}),
            breaks: &["runAsNonRoot"],
        },
        Row {
            name: "non-root-false",
            patch: c(json!({"securityContext": {"runAsNonRoot": false}})),
            breaks: &["runAsNonRoot"],
        },
        Row {
            name: "run-as-root",
            patch: c(json!({"securityContext": {"runAsUser": 0}})),
            breaks: &["runAsUser"],
        },
        Row {
            name: "volume-git-repo",
            patch: json!({"spec": {"volumes": [{"name": "g", "gitRepo": {"repository": "https://example.com/r.git"}}]}}),
            breaks: &["restrictedVolumes"],
        },
        Row {
            name: "volume-nfs",
            patch: json!({"spec": {"volumes": [{"name": "n", "nfs": {"server": "10.0.0.2", "path": "/x"}}]}}),
            breaks: &["restrictedVolumes"],
        },
        Row {
            name: "volume-allowed",
            patch: json!({"spec": {"volumes": [
                {"name": "e", "emptyDir": {}},
                {"name": "c", "configMap": {"name": "x"}},
                {"name": "s", "secret": {"secretName": "x"}},
                {"name": "p", "persistentVolumeClaim": {"claimName": "x"}},
                {"name": "d", "downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            ]}}),
            breaks: &[],
        },
    ]
}

fn merge_into(mut v: Value, patch: Value) -> Value {
    merge(&mut v, &patch);
    v
}

fn pss_pods() -> Vec<Value> {
    let mut pods: Vec<Value> = rows()
        .into_iter()
        .map(|r| merge_into(restricted_pod(PSS_NS, r.name), r.patch))
        .collect();
    // Against the enforced namespace's labels: baseline and restricted breaks are errors.
    pods.push(merge_into(
        restricted_pod(ENFORCED_NS, "host-network"),
        json!({"spec": {"hostNetwork": true}}),
    ));
    pods.push(merge_into(
        restricted_pod(ENFORCED_NS, "run-as-root"),
        json!({"spec": {"containers": [merge_into(container("app"),
            json!({"securityContext": {"runAsUser": 0}}))]}}),
    ));
    pods
}

fn pss_controls(conf: &Path) {
    let report = audit_json(conf, &["--checks", "pss"]);
    let rows = rows();
    // Each row's pod is bare and gets findings of its own: fewer than the bare pods a namespace
    // names one by one (the rest share one finding on the namespace).
    assert!(rows.len() < kubepki_audit::namespaces::BARE_PODS_NAMED);
    // Every control has a row that breaks it, or a reason it cannot be stored on v1.20.
    for control in CONTROLS {
        let tested = rows.iter().any(|r| r.breaks.contains(&control.id));
        let excused = NOT_ON_V1_20.iter().any(|(id, _)| *id == control.id);
        assert!(
            tested ^ excused,
            "control {} needs one row (or an excuse), not both/none",
            control.id
        );
    }
    let mut wrong = Vec::new();
    for row in &rows {
        let object = format!("pod {PSS_NS}/{}", row.name);
        let want: BTreeSet<(String, String)> = row
            .breaks
            .iter()
            .map(|id| {
                let control = CONTROLS.iter().find(|c| c.id == *id).unwrap();
                let severity = match control.level {
                    Level::Baseline => "warning",
                    _ => "info",
                };
                (control.finding.to_owned(), severity.to_owned())
            })
            .collect();
        let got: BTreeSet<_> = about(&report, &object)
            .into_iter()
            .filter(|(id, _)| id.starts_with("PSS-BASELINE-") || id.starts_with("PSS-RESTRICTED-"))
            .collect();
        if got != want {
            wrong.push(format!("{object}: want {want:?}, got {got:?}"));
        }
        // The message names the field that breaks the control.
        for f in findings(&report)
            .iter()
            .filter(|f| f["object"] == object.as_str())
        {
            assert!(
                !s(&f["message"]).is_empty() && !s(&f["fix"]).is_empty(),
                "{f}"
            );
        }
    }
    for (name, id) in [
        ("host-network", "PSS-BASELINE-HOST-NAMESPACES"),
        ("run-as-root", "PSS-RESTRICTED-RUN-AS-USER"),
    ] {
        let object = format!("pod {ENFORCED_NS}/{name}");
        let got = about(&report, &object);
        if !got.contains(&(id.to_owned(), "error".to_owned())) {
            wrong.push(format!(
                "{object}: want {id} as an error (the namespace enforces restricted), got {got:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "PSS findings differ:\n{}\n--- report\n{}",
        wrong.join("\n"),
        show_report(&report)
    );

    // Per namespace: how many running Pods each level would reject.
    let rejects = with_id(&report, "PSS-NAMESPACE-REJECTS");
    let pss = rejects
        .iter()
        .find(|f| f["object"] == format!("namespace {PSS_NS}"))
        .unwrap_or_else(|| {
            panic!(
                "no PSS-NAMESPACE-REJECTS for {PSS_NS}\n{}",
                show_report(&report)
            )
        });
    let baseline = rows
        .iter()
        .filter(|r| r.breaks.iter().any(|id| level(id) == Level::Baseline))
        .count();
    let restricted = rows.iter().filter(|r| !r.breaks.is_empty()).count();
    let message = s(&pss["message"]);
    assert!(
        message.contains(&baseline.to_string()) && message.contains(&restricted.to_string()),
        "{PSS_NS}: {baseline} Pods rejected at baseline and {restricted} at restricted, but: {message}"
    );
}

fn level(control: &str) -> Level {
    CONTROLS.iter().find(|c| c.id == control).unwrap().level
}

// ---------------------------------------------------------------------------------------------
// 2. Namespace labels.

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn labelled_namespaces() -> Vec<Value> {
    let e = "pod-security.kubernetes.io/enforce";
    let w = "pod-security.kubernetes.io/warn";
    let a = "pod-security.kubernetes.io/audit";
    vec![
        namespace("ns-unlabelled", json!({})),
        namespace(
            "ns-privileged",
            json!({e: "privileged", w: "privileged", a: "privileged"}),
        ),
        namespace("ns-enforce-only", json!({e: "restricted"})),
        namespace(
            "ns-warn-weaker",
            json!({e: "restricted", w: "baseline", a: "restricted"}),
        ),
        namespace(
            "ns-good",
            json!({e: "baseline", w: "restricted", a: "restricted"}),
        ),
        namespace(
            "ns-invalid",
            json!({e: "strict", w: "restricted", a: "restricted"}),
        ),
        namespace(
            "ns-pinned-old",
            json!({e: "baseline", "pod-security.kubernetes.io/enforce-version": "v1.19", w: "baseline", a: "baseline"}),
        ),
        namespace(
            "ns-pinned-current",
            json!({e: "baseline", "pod-security.kubernetes.io/enforce-version": "v1.20", w: "baseline", a: "baseline"}),
        ),
        namespace(
            "ns-latest",
            json!({e: "baseline", "pod-security.kubernetes.io/enforce-version": "latest", w: "baseline", a: "baseline"}),
        ),
    ]
}

fn namespace_labels(conf: &Path) {
    let report = audit_json(conf, &["--checks", "pss"]);
    let label_ids = |ns: &str| -> BTreeSet<String> {
        about(&report, &format!("namespace {ns}"))
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| id != "PSS-NAMESPACE-REJECTS")
            .collect()
    };
    let cases: &[(&str, &[&str])] = &[
        ("ns-unlabelled", &["PSS-NAMESPACE-UNLABELLED"]),
        ("ns-privileged", &["PSS-NAMESPACE-PRIVILEGED"]),
        ("ns-enforce-only", &["PSS-NAMESPACE-WARN-AUDIT"]),
        ("ns-warn-weaker", &["PSS-NAMESPACE-WARN-AUDIT"]),
        ("ns-good", &[]),
        ("ns-invalid", &["PSS-NAMESPACE-INVALID-LEVEL"]),
        ("ns-pinned-old", &["PSS-NAMESPACE-VERSION-PINNED"]),
        ("ns-pinned-current", &[]),
        ("ns-latest", &[]),
    ];
    let mut wrong = Vec::new();
    for (ns, want) in cases {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        let got = label_ids(ns);
        if got != want {
            wrong.push(format!("namespace {ns}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "namespace findings differ:\n{}\n--- report\n{}",
        wrong.join("\n"),
        show_report(&report)
    );
    // The unlabelled namespace of the control table is told the strictest level its Pods allow:
    // some break baseline, so it is privileged; ns-unlabelled has no Pods, so restricted.
    let fix = |ns: &str| {
        with_id(&report, "PSS-NAMESPACE-UNLABELLED")
            .into_iter()
            .find(|f| f["object"] == format!("namespace {ns}"))
            .map(|f| s(&f["fix"]))
            .unwrap_or_default()
    };
    assert!(
        fix("ns-unlabelled").contains("restricted"),
        "{}",
        fix("ns-unlabelled")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Scale.

/// Pods per node in the namespace `scale`: n1 3, n2 2, n3 1, plus `finished` on n1, which has
/// ended. One of n1's Pods has a sidecar-free init container and two containers.
fn scale_pods() -> Vec<Value> {
    let pod = |name: &str, node: &str| {
        let mut p = restricted_pod("scale", name);
        p["spec"]["nodeName"] = json!(node);
        p
    };
    let mut two = pod("two-containers", "n1");
    two["spec"]["containers"] = json!([container("a"), container("b")]);
    two["spec"]["initContainers"] = json!([container("init")]);
    vec![
        two,
        pod("a", "n1"),
        pod("b", "n1"),
        pod("c", "n2"),
        pod("d", "n2"),
        pod("e", "n3"),
        pod("finished", "n1"),
    ]
}

/// Running Pods per node, of every Pod the test creates.
fn pods_per_node() -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for p in all_pods()
        .iter()
        .filter(|p| p["metadata"]["name"] != "finished")
    {
        *m.entry(s(&p["spec"]["nodeName"])).or_default() += 1;
    }
    m
}

/// The running Pods created in total (the control table, the enforced namespace, scale's and
/// the kube-system Pods of the zones), and their containers.
fn expected_counts() -> (u64, u64) {
    let pods: Vec<Value> = all_pods();
    let running: Vec<&Value> = pods
        .iter()
        .filter(|p| p["metadata"]["name"] != "finished")
        .collect();
    let containers = running
        .iter()
        .map(|p| p["spec"]["containers"].as_array().unwrap().len() as u64)
        .sum();
    (running.len() as u64, containers)
}

fn scale(conf: &Path) {
    let (pods, containers) = expected_counts();
    let nodes = NODES.len() as u64;
    let base = ["--checks", "scale"];
    let report = audit_json(conf, &base);
    let sc = &report["scale"];
    assert_eq!(sc["nodes"]["current"], nodes, "{sc}");
    assert_eq!(sc["pods"]["current"], pods, "{sc}");
    assert_eq!(sc["containers"]["current"], containers, "{sc}");
    assert_eq!(sc["terminated_pods"], 1, "{sc}");
    assert_eq!(sc["nodes"]["limit"], 5000);
    // Within the page's limits: no count finding; n2's kubelet admits 250 Pods; the addons
    // without resources are reported, the one with them is not.
    let got = ids(&report);
    for id in [
        "SCALE-NODES",
        "SCALE-PODS",
        "SCALE-CONTAINERS",
        "SCALE-PODS-PER-NODE",
    ] {
        assert!(
            !got.contains(id),
            "{id} within the limits\n{}",
            show_report(&report)
        );
    }
    assert_eq!(
        about(&report, "node n2"),
        set(&[("SCALE-NODE-CAPACITY-PODS", "warning")])
    );
    assert_eq!(
        about(&report, "node n1"),
        set(&[]),
        "{} Pods of 110",
        pods_per_node()["n1"]
    );
    assert_eq!(
        about(&report, "daemonset kube-system/proxy-bare"),
        set(&[("SCALE-ADDON-RESOURCES", "warning")])
    );
    assert_eq!(
        about(&report, "deployment kube-system/dns-bare"),
        set(&[("SCALE-ADDON-RESOURCES", "warning")])
    );
    assert_eq!(
        about(&report, "daemonset kube-system/proxy-sized"),
        set(&[])
    );
    assert_eq!(about(&report, "deployment kube-system/dns-sized"), set(&[]));
    // Deployments elsewhere are not addons.
    assert_eq!(about(&report, "deployment apps/web"), set(&[]));

    // Each limit crossed by one: an error; at the limit with under 50 % left: a warning.
    let per_node = pods_per_node();
    let mut fullest: Vec<(&String, &u64)> = per_node.iter().collect();
    fullest.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    let (worst, most) = (format!("node {}", fullest[0].0), *fullest[0].1);
    let second = *fullest[1].1;
    assert!(
        most > second,
        "the test needs one fullest node: {per_node:?}"
    );
    let n = |v: u64| v.to_string();
    let cases: Vec<(Vec<String>, &str, &str, &str)> = vec![
        (
            vec!["--max-nodes".into(), n(nodes - 1)],
            "SCALE-NODES",
            "cluster",
            "error",
        ),
        (
            vec![
                "--max-nodes".into(),
                n(nodes),
                "--headroom-warn".into(),
                "50".into(),
            ],
            "SCALE-NODES",
            "cluster",
            "warning",
        ),
        (
            vec!["--max-pods".into(), n(pods - 1)],
            "SCALE-PODS",
            "cluster",
            "error",
        ),
        (
            vec!["--max-containers".into(), n(containers - 1)],
            "SCALE-CONTAINERS",
            "cluster",
            "error",
        ),
        (
            vec!["--max-pods-per-node".into(), n(most - 1)],
            "SCALE-PODS-PER-NODE",
            &worst,
            "error",
        ),
        (
            vec!["--max-pods-per-node".into(), n(most)],
            "SCALE-PODS-PER-NODE",
            &worst,
            "warning",
        ),
    ];
    for (flags, id, object, severity) in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(flags.iter().map(String::as_str));
        let r = audit_json(conf, &args);
        let hits: Vec<(String, String)> = with_id(&r, id)
            .iter()
            .map(|f| (s(&f["object"]), s(&f["severity"])))
            .collect();
        assert_eq!(
            hits,
            [(object.to_owned(), severity.to_owned())],
            "{flags:?}: want {id} on {object} ({severity}) only\n{}",
            show_report(&r)
        );
    }
    // With the limit at the second fullest node's count, only the fullest is over it; the
    // fullest is first of the worst nodes, with its count.
    let r = audit_json(
        conf,
        &["--checks", "scale", "--max-pods-per-node", &n(second)],
    );
    let first = &r["scale"]["worst_nodes"][0];
    assert_eq!(
        format!("node {}", s(&first["node"])),
        worst,
        "{}",
        r["scale"]
    );
    assert_eq!(first["current"], most, "{}", r["scale"]);
    let over: Vec<String> = with_id(&r, "SCALE-PODS-PER-NODE")
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| s(&f["object"]))
        .collect();
    assert_eq!(over, std::slice::from_ref(&worst));

    // Pagination: one object per LIST gives the same report as 500.
    let mut one = audit_json(conf, &["--checks", "scale,zones,pss", "--page-size", "1"]);
    let mut many = audit_json(conf, &["--checks", "scale,zones,pss"]);
    one["kubepkiVersion"] = Value::Null;
    many["kubepkiVersion"] = Value::Null;
    assert_eq!(one, many, "--page-size 1 and 500 disagree");
}

fn set(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 4. Zones.

/// n1 and n2 are control-plane nodes in zones a and b; n3 and n4 workers, n4 without a zone
/// label (only the deprecated one).
const NODES: [(&str, Option<&str>, bool, &str); 4] = [
    ("n1", Some("zone-a"), true, "110"),
    ("n2", Some("zone-b"), true, "250"),
    ("n3", Some("zone-c"), false, "110"),
    ("n4", None, false, "110"),
];

fn nodes() -> Vec<Value> {
    NODES
        .iter()
        .map(|(name, zone, cp, pods)| {
            let mut labels = json!({"kubernetes.io/hostname": name});
            match zone {
                Some(z) => labels["topology.kubernetes.io/zone"] = json!(z),
                None => labels["failure-domain.beta.kubernetes.io/zone"] = json!("zone-a"),
            }
            if *cp {
                labels["node-role.kubernetes.io/control-plane"] = json!("");
            }
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                // Nodes take their status on create.
                "status": {
                    "capacity": {"pods": pods, "cpu": "2", "memory": "4Gi"},
                    "nodeInfo": {"kubeletVersion": "v1.20.2", "machineID": "", "systemUUID": "",
                        "bootID": "", "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "",
                        "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
                },
            })
        })
        .collect()
}

/// The control plane's static pods, as the kubelet mirrors them into kube-system.
fn control_plane_pods() -> Vec<Value> {
    ["n1", "n2"]
        .iter()
        .flat_map(|node| {
            ["kube-apiserver", "etcd"].map(|component| {
                let mut p = restricted_pod("kube-system", &format!("{component}-{node}"));
                p["metadata"]["labels"] = json!({"component": component, "tier": "control-plane"});
                p["spec"]["nodeName"] = json!(node);
                p
            })
        })
        .collect()
}

fn workloads() -> Vec<Value> {
    let template = |app: &str| {
        let mut spec = restricted_pod("x", "x")["spec"].clone();
        spec.as_object_mut().unwrap().remove("nodeName");
        json!({"metadata": {"labels": {"app": app}}, "spec": spec})
    };
    let sized = |mut t: Value| {
        t["spec"]["containers"][0]["resources"] = json!({
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        });
        t
    };
    let spread = |mut t: Value| {
        t["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "spread"}},
        }]);
        t
    };
    let deployment = |ns: &str, name: &str, replicas: i32, t: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": t["metadata"]["labels"].clone()}, "template": t}})
    };
    let daemon_set = |name: &str, t: Value| {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"namespace": "kube-system", "name": name},
            "spec": {"selector": {"matchLabels": t["metadata"]["labels"].clone()}, "template": t}})
    };
    vec![
        deployment("kube-system", "dns-bare", 2, spread(template("dns-bare"))),
        deployment(
            "kube-system",
            "dns-sized",
            2,
            spread(sized(template("dns-sized"))),
        ),
        daemon_set("proxy-bare", template("proxy-bare")),
        daemon_set("proxy-sized", sized(template("proxy-sized"))),
        deployment("apps", "web", 3, template("web")),
        deployment("apps", "spread", 3, spread(template("spread"))),
        deployment("apps", "single", 1, template("single")),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"namespace": "apps", "name": "db"},
            "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-bare"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "csi": {"driver": "x.csi.example", "volumeHandle": "v1"}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-zoned", "labels": {"topology.kubernetes.io/zone": "zone-a"}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "csi": {"driver": "x.csi.example", "volumeHandle": "v2"}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-nfs"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "nfs": {"server": "10.0.0.2", "path": "/x"}}}),
    ]
}

fn zones(conf: &Path) {
    let report = audit_json(conf, &["--checks", "zones"]);
    let expect: &[(&str, &[(&str, &str)])] = &[
        ("node n4", &[("ZONE-NODE-UNLABELLED", "warning")]),
        ("node n1", &[]),
        (
            "deployment apps/web",
            &[("ZONE-WORKLOAD-SPREAD", "warning")],
        ),
        (
            "statefulset apps/db",
            &[("ZONE-WORKLOAD-SPREAD", "warning")],
        ),
        ("deployment apps/spread", &[]),
        ("deployment apps/single", &[]),
        (
            "persistentvolume pv-bare",
            &[("ZONE-PV-UNLABELLED", "warning")],
        ),
        ("persistentvolume pv-zoned", &[]),
        ("persistentvolume pv-nfs", &[]),
    ];
    let mut wrong = Vec::new();
    for (object, want) in expect {
        let got = about(&report, object);
        if got != set(want) {
            wrong.push(format!("{object}: want {want:?}, got {got:?}"));
        }
    }
    let cluster = about(&report, "cluster");
    for id in ["ZONE-CONTROL-PLANE-SPREAD", "ZONE-ETCD-SPREAD"] {
        if !cluster.contains(&(id.to_owned(), "warning".to_owned())) {
            wrong.push(format!(
                "cluster: want {id} (control plane in two zones), got {cluster:?}"
            ));
        }
    }
    // Two zones for the API servers is not one: that finding is about a single zone.
    if cluster
        .iter()
        .any(|(id, _)| id == "ZONE-APISERVER-ONE-ZONE")
    {
        wrong.push("ZONE-APISERVER-ONE-ZONE with API servers in two zones".into());
    }
    assert!(
        wrong.is_empty(),
        "zone findings differ:\n{}\n--- report\n{}",
        wrong.join("\n"),
        show_report(&report)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Failures and exit codes.

fn failures(c: &Cluster, admin: &Path) {
    let auditor = c.dir.join("auditor.conf");
    // --fail-on: the control table has warnings and errors, no critical finding.
    let status = |args: &[&str]| -> (Option<i32>, Output) {
        let o = kubepki()
            .arg("audit")
            .arg("--kubeconfig")
            .arg(&auditor)
            .args(["--checks", "pss"])
            .args(args)
            .output()
            .unwrap();
        (o.status.code(), o)
    };
    assert_eq!(status(&["--fail-on", "warning"]).0, Some(1));
    assert_eq!(status(&["--fail-on", "critical"]).0, Some(0));
    assert_eq!(status(&[]).0, Some(0));
    let (code, o) = status(&["--fail-on", "fatal"]);
    assert_eq!(
        code,
        Some(2),
        "an unknown severity is a usage error\n{}",
        stderr(&o)
    );

    // A user who may list everything the audit reads but Pods: exit 2, naming pods, and no
    // report on stdout (a partial one would read as a clean cluster).
    let limited = c.dir.join("limited.conf");
    user_kubeconfig(c, "limited", &limited);
    let role = run_ok(kctl(admin).args(["get", "clusterrole", "kubepki-audit", "-o", "json"]));
    let mut role: Value = serde_json::from_slice(&role.stdout).unwrap();
    for rule in role["rules"].as_array_mut().unwrap() {
        rule["resources"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r != "pods");
    }
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "no-pods"}, "rules": role["rules"]});
    create(admin, &[role], "no pods role");
    run_ok(kctl(admin).args([
        "create",
        "clusterrolebinding",
        "limited",
        "--clusterrole=no-pods",
        "--user=limited",
    ]));
    let o = kubepki()
        .arg("audit")
        .arg("--kubeconfig")
        .arg(&limited)
        .args(["--checks", "pss"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot list pods"), "{}", stderr(&o));
    assert!(stderr(&o).contains("forbidden"), "{}", stderr(&o));
    assert!(
        o.stdout.is_empty(),
        "no report on a failed audit: {}",
        stdout(&o)
    );

    // An API server that does not answer: exit 2, quickly.
    let dead = c.dir.join("dead.conf");
    let text = fs::read_to_string(admin).unwrap();
    let port = free_port(loopback(LOOPBACK));
    let text = text.replace(
        &c.server(),
        &format!("https://{}:{port}", loopback(LOOPBACK)),
    );
    fs::write(&dead, text).unwrap();
    let o = kubepki()
        .arg("audit")
        .arg("--kubeconfig")
        .arg(&dead)
        .args(["--checks", "scale"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("version") || stderr(&o).contains("connect"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Setting up.

fn all_pods() -> Vec<Value> {
    let mut pods = pss_pods();
    pods.extend(scale_pods());
    pods.extend(control_plane_pods());
    pods
}

fn objects() -> Vec<Value> {
    let mut v = vec![
        namespace(PSS_NS, json!({})),
        namespace("scale", json!({})),
        namespace("apps", json!({})),
    ];
    v.extend(labelled_namespaces());
    v.push(namespace(ENFORCED_NS, json!({})));
    let namespaces: Vec<String> = v
        .iter()
        .map(|n| s(&n["metadata"]["name"]))
        .chain(["kube-system".to_owned()])
        .collect();
    // Pods need their namespace's ServiceAccount (the controller manager that makes it does
    // not run here).
    for ns in &namespaces {
        v.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": ns, "name": "default"}}));
    }
    v.extend(nodes());
    v.extend(all_pods());
    v.extend(workloads());
    v
}

/// `kubectl create` of a List, failing with kubectl's output.
fn create(conf: &Path, items: &[Value], what: &str) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let file = conf
        .parent()
        .unwrap()
        .join(format!("{}.json", what.replace(' ', "-")));
    fs::write(&file, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    run_ok(kctl(conf).arg("create").arg("-f").arg(&file));
}

/// A kubeconfig for user `name` (CN=name), made by `kubepki kubeconfig user`.
fn user_kubeconfig(c: &Cluster, name: &str, to: &Path) {
    let o = run_ok(
        kubepki()
            .args(["kubeconfig", "user", "--client-name", name])
            .arg("--cert-dir")
            .arg(c.dir.join("pki"))
            .arg("--kubeconfig-dir")
            .arg(&c.dir),
    );
    fs::write(to, &o.stdout).unwrap();
}

/// The user `auditor`, bound to deploy/audit's ClusterRole (get and list only), and its
/// kubeconfig: every audit of this test runs as it, so none can write.
fn auditor(c: &Cluster, admin: &Path) -> PathBuf {
    let to = c.dir.join("auditor.conf");
    user_kubeconfig(c, "auditor", &to);
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/audit/rbac.yaml");
    run_ok(kctl(admin).arg("apply").arg("-f").arg(&rbac));
    run_ok(kctl(admin).args([
        "create",
        "clusterrolebinding",
        "auditor",
        "--clusterrole=kubepki-audit",
        "--user=auditor",
    ]));
    // The role carries no verb but get and list.
    let role = run_ok(kctl(admin).args(["get", "clusterrole", "kubepki-audit", "-o", "json"]));
    let role: Value = serde_json::from_slice(&role.stdout).unwrap();
    let verbs: BTreeSet<String> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["verbs"].as_array().unwrap().iter().map(s))
        .collect();
    assert_eq!(
        verbs,
        BTreeSet::from(["get".to_owned(), "list".to_owned()]),
        "{role}"
    );
    to
}
