//! What an operator installs besides the binary, checked with the real tools: the kustomize
//! base, the renewal overlay and the monitoring objects as kubectl v1.20.2 (kustomize v2.0.3)
//! renders them, and as kube-apiserver v1.20.2 accepts and authorizes them; the alert rules
//! with promtool (syntax and unit tests); the Grafana dashboard's queries against the metric
//! names of the agent/controller contract; the systemd units with the real CLI and
//! systemd-analyze.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::Cluster;
use common::*;
use serde_json::{Value, json};

const IMAGE: &str = "ghcr.io/kubepki/kubepki:0.1.0";
const NS: &str = "kubepki-system";
const AGENT_SA: &str = "system:serviceaccount:kubepki-system:kubepki-agent";

/// Every metric the agent and the controller expose (the contract); `_bucket`, `_sum` and
/// `_count` of the histogram are its series.
const CONTRACT_METRICS: &[&str] = &[
    // agent, x509-certificate-exporter compatible
    "x509_cert_not_before",
    "x509_cert_not_after",
    "x509_cert_expired",
    "x509_read_errors",
    "x509_cert_expires_in_seconds",
    "x509_cert_valid_since_seconds",
    // agent, kubepki's own
    "kubepki_certificate_info",
    "kubepki_read_errors",
    "kubepki_build_info",
    "kubepki_agent_renewal_enabled",
    "kubepki_agent_renewal_stopped",
    "kubepki_agent_renewals_total",
    "kubepki_agent_last_check_timestamp_seconds",
    // controller
    "kubepki_csr_decisions_total",
    "kubepki_csr_pending",
    "kubepki_csr_signed_total",
    "kubepki_csr_sign_refusals_total",
    "kubepki_api_errors_total",
    "kubepki_reconcile_errors_total",
    "kubepki_csr_decision_duration_seconds_bucket",
    "kubepki_csr_decision_duration_seconds_sum",
    "kubepki_csr_decision_duration_seconds_count",
    "kubepki_leader",
];

/// The alerts and their severities.
const ALERTS: &[(&str, &str)] = &[
    ("KubepkiCertificateRenewal", "warning"),
    ("KubepkiCertificateExpiration", "critical"),
    ("KubepkiCAExpiration", "warning"),
    ("KubepkiCertificateExpired", "critical"),
    ("KubepkiCertificateReadErrors", "warning"),
    ("KubepkiRenewalFailed", "critical"),
    ("KubepkiAgentDown", "critical"),
    ("KubepkiApproverErrors", "warning"),
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn promtool() -> Command {
    ensure_installed("promtool", &["prometheus"]);
    let mut c = Command::new("promtool");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// The metric names a PromQL expression (or a Grafana query using `$variables` and
/// `label_values(...)`) selects: identifiers outside label matchers, ranges, strings, label
/// lists of by/without/on/ignoring/group_*, that are neither functions nor keywords.
fn metric_names(expr: &str) -> Vec<String> {
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["bool", "and", "or", "unless", "offset", "inf", "nan"];
    let b: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // The index just past the bracket closing the one at `open`, quotes respected.
    let close = |open: usize| {
        let (o, c) = (
            b[open],
            match b[open] {
                '(' => ')',
                '{' => '}',
                _ => ']',
            },
        );
        let (mut depth, mut i, mut quote) = (0, open, None);
        while i < b.len() {
            match (quote, b[i]) {
                (Some(_), '\\') => i += 1,
                (Some(q), ch) if ch == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => quote = Some(b[i]),
                (None, ch) if ch == o => depth += 1,
                (None, ch) if ch == c => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {o} in {expr}");
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if matches!(ch, '"' | '\'' | '`') {
            i += 1;
            while i < b.len() && b[i] != ch {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '{' || ch == '[' {
            i = close(i);
        } else if ch == '$' {
            i += 1;
            if i < b.len() && b[i] == '{' {
                i = close(i);
            } else {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() || ch == '.' {
            while i < b.len() && (ident(b[i]) || b[i] == '.') {
                i += 1;
            }
        } else if ident(ch) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let call = j < b.len() && b[j] == '(';
            // `sum by (l) (...)`: an aggregation whose modifier comes first.
            let next: String = b[j..].iter().take_while(|c| ident(**c)).collect();
            let aggregation = next == "by" || next == "without";
            if call && LABEL_LISTS.contains(&word.as_str()) {
                i = close(j);
            } else if call && word == "label_values" {
                // Grafana's label_values(selector, label): only the selector names metrics.
                let end = close(j);
                let inner: String = b[j + 1..end - 1].iter().collect();
                let selector = inner.rsplit_once(',').map_or(inner.as_str(), |(s, _)| s);
                out.extend(metric_names(selector));
                i = end;
            } else if !call && !aggregation && !KEYWORDS.contains(&word.as_str()) {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (node, le) (rate(a_total{x="}", y=~"b|c"}[5m] offset 1h)) > bool 0.5
               and on(filepath) group_left(name) info{ca="true"} or vector(1e3) unless c:rec"#
        ),
        ["a_total", "info", "c:rec"]
    );
    assert_eq!(
        metric_names("label_values(x509_cert_not_after{node=~\"$node\"}, node)"),
        ["x509_cert_not_after"]
    );
    assert_eq!(
        metric_names("histogram_quantile(0.9, sum(rate(h_bucket[$__rate_interval])) by (le))"),
        ["h_bucket"]
    );
}

/// Every rule of the plain rule file: (group, rule) in file order.
fn rules() -> Vec<Value> {
    let doc = yaml("deploy/prometheus/kubepki-rules.yaml");
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let out = run_ok(promtool().args(["check", "rules", "deploy/prometheus/kubepki-rules.yaml"]));
    assert!(stdout(&out).contains("SUCCESS"), "{}", stdout(&out));
    let out =
        run_ok(promtool().args(["test", "rules", "tests/prometheus/kubepki-rules.test.yaml"]));
    assert!(stdout(&out).contains("SUCCESS"), "{}", stdout(&out));

    // Exactly the alerts of the contract, each with its severity, a summary, a description and
    // a runbook, and queries on the contract's metrics (and Prometheus's own `up`).
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    let want: BTreeSet<&str> = ALERTS.iter().map(|(a, _)| *a).collect();
    assert_eq!(names, want);
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        let severity = ALERTS.iter().find(|(a, _)| *a == name).unwrap().1;
        assert_eq!(r["labels"]["severity"], severity, "{name}");
        for a in ["summary", "description", "runbook_url"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| !s.is_empty()),
                "{name} has no {a}"
            );
        }
        let anchor = format!("#{}", name.to_lowercase());
        assert!(
            r["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .ends_with(&anchor),
            "{name}'s runbook_url"
        );
        assert!(
            read("deploy/README.md")
                .lines()
                .any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == name),
            "deploy/README.md has no runbook section (heading) for {name}"
        );
        let expr = r["expr"].as_str().unwrap();
        for m in metric_names(expr) {
            assert!(
                m == "up" || CONTRACT_METRICS.contains(&m.as_str()),
                "{name} queries {m}, which is not a metric of the contract"
            );
        }
    }
    // The thresholds as documented.
    let expr = |name: &str| {
        rules
            .iter()
            .find(|r| r["alert"] == name)
            .unwrap()
            .get("expr")
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        expr("KubepkiCertificateRenewal").contains("(x509_cert_not_after - time()) / 86400 < 28")
    );
    assert!(expr("KubepkiCertificateExpiration").contains("/ 86400 < 14"));
    assert!(expr("KubepkiCAExpiration").contains("/ 86400 < 180"));

    // Every alert is tested both firing and not firing.
    let tests = yaml("tests/prometheus/kubepki-rules.test.yaml");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    for (alert, _) in ALERTS {
        let of: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == *alert).collect();
        let firing = |c: &&&Value| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
        assert!(of.iter().any(firing), "no test has {alert} firing");
        assert!(
            of.iter().any(|c| !firing(c)),
            "no test has {alert} not firing"
        );
    }
}

#[test]
fn prometheusrule_groups_are_the_plain_rule_file() {
    let plain = yaml("deploy/prometheus/kubepki-rules.yaml");
    let cr = yaml("deploy/monitoring/prometheusrule.yaml");
    assert_eq!(cr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(cr["kind"], "PrometheusRule");
    assert_eq!(
        cr["spec"]["groups"], plain["groups"],
        "deploy/monitoring/prometheusrule.yaml's spec.groups differ from \
         deploy/prometheus/kubepki-rules.yaml: regenerate it as its header says"
    );
    assert_eq!(
        plain.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["groups"],
        "a rule file for `rule_files:` has only groups"
    );
}

#[test]
fn grafana_dashboard_queries_only_contract_metrics() {
    let d: Value = serde_json::from_str(&read("deploy/grafana/kubepki-dashboard.json"))
        .expect("the dashboard is JSON");
    let vars = d["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "no Prometheus datasource variable"
    );
    // Every query, with the variables' (label_values) too.
    let mut exprs = Vec::new();
    fn walk(v: &Value, exprs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "definition", Value::String(s)) => exprs.push(s.clone()),
                        _ => walk(x, exprs),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, exprs)),
            _ => {}
        }
    }
    walk(&d, &mut exprs);
    let panels = d["panels"].as_array().unwrap();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} does not use the datasource variable",
            p["title"]
        );
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    let mut used = BTreeSet::new();
    for e in &exprs {
        for m in metric_names(e) {
            assert!(
                CONTRACT_METRICS.contains(&m.as_str()),
                "the dashboard queries {m} ({e}), which is not a metric of the contract"
            );
            used.insert(m);
        }
    }
    // What the dashboard is for: expiry by node/file, read errors, renewals, decisions by
    // reason, pending requests, decision latency.
    for m in [
        "x509_cert_not_after",
        "kubepki_read_errors",
        "kubepki_agent_renewals_total",
        "kubepki_csr_decisions_total",
        "kubepki_csr_pending",
        "kubepki_csr_decision_duration_seconds_bucket",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
    // Every query is PromQL that Prometheus parses (as recording rules, Grafana's variables
    // replaced by values).
    let dir = scratch();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$node", ".*");
        let e = match e.strip_prefix("label_values(") {
            Some(rest) => rest.rsplit_once(',').unwrap().0.to_string(),
            None => e,
        };
        rules += &format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        );
    }
    let file = dir.path().join("dashboard-queries.yaml");
    write_file(&file, rules.as_bytes());
    run_ok(promtool().arg("check").arg("rules").arg(&file));
}

/// kubectl v1.20.2 (its kustomize is v2.0.3), built once by ../shared/tools/k8s-test-binaries.
fn kubectl_1_20() -> PathBuf {
    let k = k8s_bin_dir_with("kubectl").join("kubectl");
    let v = stdout(&run_ok(
        Command::new(&k).args(["version", "--client", "--short"]),
    ));
    assert!(v.contains("v1.20.2"), "{}: {v}", k.display());
    k
}

/// `kubectl kustomize DIR` as kubectl v1.20.2 renders it: the objects.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = run_ok(Command::new(kubectl_1_20()).arg("kustomize").arg(repo(dir)));
    serde_saphyr::from_multiple::<Value>(&stdout(&out))
        .unwrap_or_else(|e| panic!("kubectl kustomize {dir}: {e}"))
        .into_iter()
        .filter(|o| !o.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn pod_spec(o: &Value) -> &Value {
    &o["spec"]["template"]["spec"]
}

fn container<'a>(o: &'a Value, name: &str) -> &'a Value {
    pod_spec(o)["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// mountPath -> readOnly of the agent container (a mount without readOnly is writable).
fn mounts(ds: &Value) -> Vec<(String, bool)> {
    container(ds, "agent")["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels[k] == *v)
}

/// What both agent DaemonSets must be, as the contract says.
fn check_agent_daemonset(ds: &Value, component: &str) {
    let name = ds["metadata"]["name"].as_str().unwrap();
    let labels = json!({"app.kubernetes.io/name": "kubepki-agent", "app.kubernetes.io/component": component});
    assert_eq!(ds["spec"]["selector"]["matchLabels"], labels, "{name}");
    assert_eq!(
        ds["spec"]["template"]["metadata"]["labels"], labels,
        "{name}"
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}),
        "{name}"
    );
    let spec = pod_spec(ds);
    assert_eq!(spec["serviceAccountName"], "kubepki-agent", "{name}");
    assert_eq!(spec["hostNetwork"], true, "{name}");
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet", "{name}");
    assert_eq!(
        spec["priorityClassName"], "system-cluster-critical",
        "{name}"
    );
    let c = container(ds, "agent");
    assert_eq!(c["image"], IMAGE, "{name}");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..2], ["agent", "--log-format=json"], "{name}");
    assert_eq!(
        c["env"],
        json!([
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
        ]),
        "{name}"
    );
    assert_eq!(
        c["securityContext"],
        json!({
            "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false,
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]}
        }),
        "{name}"
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 9794}])
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{name} {probe}");
        assert_eq!(c[probe]["httpGet"]["port"], 9794, "{name} {probe}");
    }
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}),
        "{name}"
    );
    // The host's directories, at the same paths.
    let volumes = spec["volumes"].as_array().unwrap();
    for m in c["volumeMounts"].as_array().unwrap() {
        let v = volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("volume");
        assert_eq!(v["hostPath"]["path"], m["mountPath"], "{name}");
    }
    let paths: BTreeSet<String> = mounts(ds).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        BTreeSet::from(["/etc/kubernetes".into(), "/var/lib/kubelet/pki".into()]),
        "{name}"
    );
    let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let roles = [
        "node-role.kubernetes.io/master",
        "node-role.kubernetes.io/control-plane",
    ];
    let taints = json!([
        {"key": roles[0], "operator": "Exists", "effect": "NoSchedule"},
        {"key": roles[1], "operator": "Exists", "effect": "NoSchedule"}
    ]);
    if component == "worker" {
        // One term: neither label.
        assert_eq!(
            *terms,
            json!([{"matchExpressions": [
                {"key": roles[0], "operator": "DoesNotExist"},
                {"key": roles[1], "operator": "DoesNotExist"}
            ]}])
        );
        assert!(spec.get("tolerations").is_none());
    } else {
        // Two terms (ORed): either label; both taints tolerated.
        assert_eq!(
            *terms,
            json!([
                {"matchExpressions": [{"key": roles[0], "operator": "Exists"}]},
                {"matchExpressions": [{"key": roles[1], "operator": "Exists"}]}
            ])
        );
        assert_eq!(spec["tolerations"], taints);
    }
}

#[test]
fn kustomize_base_overlay_and_monitoring_render_with_kubectl_1_20() {
    let base = kustomize("deploy");
    // Every namespaced object in kubepki-system; the namespace itself first.
    assert_eq!(base[0]["kind"], "Namespace");
    assert_eq!(base[0]["metadata"]["name"], NS);
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    for o in &base {
        let kind = o["kind"].as_str().unwrap();
        if !cluster_scoped.contains(&kind) {
            assert_eq!(
                o["metadata"]["namespace"], NS,
                "{kind} {}",
                o["metadata"]["name"]
            );
        }
    }
    // One image everywhere.
    for o in &base {
        if let Some(cs) = pod_spec(o)["containers"].as_array() {
            for c in cs {
                assert_eq!(c["image"], IMAGE, "{}", o["metadata"]["name"]);
            }
        }
    }

    // kustomize refuses a base that contains its overlay, so the base is deploy/base/; the old
    // paths of `kubectl apply -f` are links into it, not copies that could drift.
    for f in ["kubepki-controller.yaml", "namespace.yaml"] {
        let link = fs::read_link(repo(&format!("deploy/{f}"))).expect("a symlink");
        assert_eq!(link, Path::new("base").join(f));
    }

    // The controller as before (deploy/kubepki-controller.yaml), placed and protected.
    let controller = find(&base, "Deployment", "kubepki-controller");
    let on_disk: Vec<Value> =
        serde_saphyr::from_multiple(&read("deploy/kubepki-controller.yaml")).unwrap();
    let mut expected = on_disk
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
        .clone();
    let spec = &mut expected["spec"]["template"]["spec"];
    spec["priorityClassName"] = json!("system-cluster-critical");
    spec["tolerations"] = json!([
        {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
    ]);
    assert_eq!(
        *controller, expected,
        "the controller is deploy/kubepki-controller.yaml's, plus placement"
    );
    for o in on_disk.iter().filter(|o| o["kind"] != "Deployment") {
        let name = o["metadata"]["name"].as_str().unwrap();
        assert_eq!(find(&base, o["kind"].as_str().unwrap(), name), o, "{name}");
    }
    let pod_labels = &controller["spec"]["template"]["metadata"]["labels"];
    let pdb = find(&base, "PodDisruptionBudget", "kubepki-controller");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(labels_match(
        &pdb["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    let svc = find(&base, "Service", "kubepki-controller");
    assert!(labels_match(&svc["spec"]["selector"], pod_labels));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics"}])
    );
    assert_eq!(
        container(controller, "controller")["ports"][0]["name"],
        "metrics"
    );

    // The agent.
    let worker = find(&base, "DaemonSet", "kubepki-agent");
    let cp = find(&base, "DaemonSet", "kubepki-agent-control-plane");
    check_agent_daemonset(worker, "worker");
    check_agent_daemonset(cp, "control-plane");
    for ds in [worker, cp] {
        for (path, read_only) in mounts(ds) {
            assert!(
                read_only,
                "{} mounts {path} writable in the base",
                ds["metadata"]["name"]
            );
        }
        assert!(
            !container(ds, "agent")["args"]
                .to_string()
                .contains("--renew-before"),
            "renewal is off in the base"
        );
    }
    let svc = find(&base, "Service", "kubepki-agent");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": 9794, "targetPort": "metrics"}])
    );
    for ds in [worker, cp] {
        assert!(labels_match(
            &svc["spec"]["selector"],
            &ds["spec"]["template"]["metadata"]["labels"]
        ));
    }
    // RBAC: exactly the contract's.
    assert_eq!(
        find(&base, "ClusterRole", "kubepki:agent")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
        ])
    );
    assert_eq!(
        find(&base, "Role", "kubepki:agent")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kubepki-agent"], "verbs": ["get"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]}
        ])
    );
    let subject = json!([{"kind": "ServiceAccount", "name": "kubepki-agent", "namespace": NS}]);
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let b = find(&base, kind, "kubepki:agent");
        assert_eq!(b["subjects"], subject, "{kind}");
        assert_eq!(b["roleRef"]["name"], "kubepki:agent", "{kind}");
    }
    find(&base, "ServiceAccount", "kubepki-agent");

    // The renewal overlay: the base, plus the ConfigMap, with /etc/kubernetes writable and
    // --renew-before on the control-plane agents only.
    let renewal = kustomize("deploy/overlays/renewal");
    assert_eq!(renewal.len(), base.len() + 1);
    for o in &base {
        let (kind, name) = (
            o["kind"].as_str().unwrap(),
            o["metadata"]["name"].as_str().unwrap(),
        );
        if (kind, name) != ("DaemonSet", "kubepki-agent-control-plane") {
            assert_eq!(
                find(&renewal, kind, name),
                o,
                "the overlay changed {kind} {name}"
            );
        }
    }
    let cm = find(&renewal, "ConfigMap", "kubepki-agent");
    assert_eq!(cm["metadata"]["namespace"], NS);
    assert!(
        cm["data"].get("renewBefore").is_none(),
        "a renewBefore key would turn renewal on for the workers too"
    );
    let cp_renew = find(&renewal, "DaemonSet", "kubepki-agent-control-plane");
    check_agent_daemonset(cp_renew, "control-plane");
    assert_eq!(
        mounts(cp_renew),
        [
            ("/etc/kubernetes".to_string(), false),
            ("/var/lib/kubelet/pki".to_string(), true)
        ]
    );
    assert_eq!(
        container(cp_renew, "agent")["args"],
        json!(["agent", "--log-format=json", "--renew-before=720h"])
    );
    let mut undone = cp_renew.clone();
    undone["spec"]["template"]["spec"]["containers"][0]["args"] =
        container(cp, "agent")["args"].clone();
    undone["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] =
        json!(true);
    assert_eq!(
        &undone, cp,
        "the overlay changes only the mount and the arguments"
    );

    // Monitoring: what the prometheus-operator needs, selecting the base's Services.
    let mon = kustomize("deploy/monitoring");
    let kinds: BTreeSet<(String, String)> = mon
        .iter()
        .map(|o| {
            assert_eq!(o["apiVersion"], "monitoring.coreos.com/v1");
            assert_eq!(o["metadata"]["namespace"], NS);
            (
                o["kind"].as_str().unwrap().to_string(),
                o["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("PrometheusRule".into(), "kubepki".into()),
            ("ServiceMonitor".into(), "kubepki-agent".into()),
            ("ServiceMonitor".into(), "kubepki-controller".into()),
        ])
    );
    for name in ["kubepki-agent", "kubepki-controller"] {
        let sm = find(&mon, "ServiceMonitor", name);
        let svc = find(&base, "Service", name);
        assert!(labels_match(
            &sm["spec"]["selector"]["matchLabels"],
            &svc["metadata"]["labels"]
        ));
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    }
    assert_eq!(
        find(&mon, "ServiceMonitor", "kubepki-agent")["spec"]["endpoints"][0]["relabelings"],
        json!([{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}])
    );
    assert_eq!(
        find(&mon, "PrometheusRule", "kubepki")["spec"]["groups"],
        yaml("deploy/prometheus/kubepki-rules.yaml")["groups"]
    );
}

/// kubectl v1.20.2 as the cluster admin of `c`.
fn admin(c: &Cluster, dir: &Path) -> Command {
    let mut k = Command::new(kubectl_1_20());
    k.arg("--kubeconfig")
        .arg(c.conf("super-admin.conf"))
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"))
        .arg("--request-timeout=20s");
    k
}

#[test]
fn kube_apiserver_1_20_accepts_the_manifests_and_authorizes_only_the_contract() {
    let bin = common::cluster::ensure_control_plane_tools();
    let dir = scratch();
    let mut c = Cluster::start(bin, dir.path(), "n1", loopback(57));
    c.wait_etcd_healthy();
    c.wait_apiserver_ready();
    let d = dir.path();

    // As an operator installs it; then with renewal.
    run_ok(admin(&c, d).arg("apply").arg("-k").arg(repo("deploy")));
    run_ok(
        admin(&c, d)
            .arg("apply")
            .arg("-k")
            .arg(repo("deploy/overlays/renewal")),
    );
    // The monitoring objects need the prometheus-operator's CRDs, which is why they are apart.
    let out = run_fail(
        admin(&c, d)
            .arg("apply")
            .arg("-k")
            .arg(repo("deploy/monitoring")),
    );
    assert!(
        stderr(&out).contains("no matches for kind"),
        "{}",
        stderr(&out)
    );

    // The pods the DaemonSets and the Deployment would make pass validation and admission
    // (the Priority plugin resolves system-cluster-critical in kubepki-system).
    for (kind, name) in [
        ("DaemonSet", "kubepki-agent"),
        ("DaemonSet", "kubepki-agent-control-plane"),
        ("Deployment", "kubepki-controller"),
    ] {
        let out = run_ok(admin(&c, d).args(["-n", NS, "get", kind, name, "-o", "json"]));
        let o: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": format!("{name}-test"), "namespace": NS,
                         "labels": o["spec"]["template"]["metadata"]["labels"]},
            "spec": pod_spec(&o),
        });
        // No kube-controller-manager runs here to make service-account token Secrets, which
        // v1.20's ServiceAccount admission wants for a pod that mounts one.
        let mut pod = pod;
        pod["spec"]["automountServiceAccountToken"] = json!(false);
        let file = d.join(format!("{name}-pod.json"));
        write_file(&file, pod.to_string().as_bytes());
        let out = run_ok(
            admin(&c, d)
                .args(["create", "--dry-run=server", "-o", "json", "-f"])
                .arg(&file),
        );
        let created: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(created["spec"]["priority"], 2000000000, "{name}");
    }

    // The agent's service account may do what the contract says, and nothing near it.
    let can = |args: &[&str]| {
        let out = admin(&c, d)
            .args(["auth", "can-i", "--as", AGENT_SA])
            .args(args)
            .output()
            .unwrap();
        stdout(&out).trim() == "yes"
    };
    // RBAC sees new roles through an informer.
    wait_for("the agent's RBAC", Duration::from_secs(20), 40, || {
        can(&["get", "nodes"]).then_some(())
    });
    // (verb, resource, namespace ("" for cluster-scoped), allowed)
    let leases = "leases.coordination.k8s.io";
    let events = "events.events.k8s.io";
    for (verb, resource, ns, allowed) in [
        ("get", "nodes", "", true),
        ("list", "nodes", "", false),
        ("patch", "nodes", "", false),
        ("create", events, "default", true),
        ("patch", events, "default", true),
        ("delete", events, "default", false),
        ("create", "events", "default", false),
        ("get", "configmaps/kubepki-agent", NS, true),
        ("get", "configmaps/other", NS, false),
        ("list", "configmaps", NS, false),
        ("update", "configmaps/kubepki-agent", NS, false),
        ("get", leases, NS, true),
        ("create", leases, NS, true),
        ("update", leases, NS, true),
        ("patch", leases, NS, true),
        ("delete", leases, NS, false),
        ("create", leases, "default", false),
        ("get", "secrets", NS, false),
        ("list", "pods", NS, false),
    ] {
        let mut args = vec![verb, resource];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        assert_eq!(can(&args), allowed, "kubectl auth can-i {}", args.join(" "));
    }
}

/// The value of `key=` in a unit file (the last one).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn systemd_units_run_the_real_cli() {
    let service = read("packaging/systemd/kubepki-renew.service");
    let timer = read("packaging/systemd/kubepki-renew.timer");
    assert_eq!(unit_value(&service, "Type"), "oneshot");
    assert_eq!(unit_value(&service, "ProtectSystem"), "strict");
    assert_eq!(unit_value(&service, "ReadWritePaths"), "/etc/kubernetes");
    assert_eq!(unit_value(&timer, "OnCalendar"), "daily");
    assert_eq!(unit_value(&timer, "Persistent"), "true");
    assert!(!unit_value(&timer, "RandomizedDelaySec").is_empty());

    let exec = shlex::split(unit_value(&service, "ExecStart")).expect("ExecStart");
    assert_eq!(
        exec,
        [
            "/usr/local/bin/kubepki",
            "certs",
            "renew",
            "all",
            "--expiring-within",
            "720h",
            "--restart-static-pods"
        ]
    );
    // Those arguments as the real CLI parses them, on a scratch PKI whose leaves expire
    // 2027-01-01, dry-run: on 2026-12-15 (17 days left) everything of `all` would be renewed,
    // on 2026-06-01 nothing. Nothing changes either way.
    let dir = fresh_pki("n1", "10.0.0.1", &["--now", "2026-01-01T00:00:00Z"]);
    let before = snapshot(dir.path());
    let run = |now: &str| {
        let mut c = kubepki();
        c.args(&exec[1..])
            .arg("--dry-run")
            .arg("--cert-dir")
            .arg(dir.path().join("pki"))
            .arg("--kubeconfig-dir")
            .arg(dir.path())
            .arg("--manifests-dir")
            .arg(dir.path().join("manifests"))
            .args(["--now", now]);
        let out = run_ok(&mut c);
        stdout(&out) + &stderr(&out)
    };
    let due = run("2026-12-15T00:00:00Z");
    for name in common::pki::cert_names() {
        assert!(
            due.contains(&format!("certificate {name} would be renewed")),
            "{name}:\n{due}"
        );
    }
    let not_due = run("2026-06-01T00:00:00Z");
    assert!(not_due.contains("nothing would be renewed"), "{not_due}");
    assert_eq!(snapshot(dir.path()), before, "a dry run changed files");

    // systemd's own check, with the binary where ExecStart names it.
    ensure_installed("systemd-analyze", &["systemd"]);
    let units = scratch();
    write_file(
        &units.path().join("kubepki-renew.service"),
        service
            .replace("/usr/local/bin/kubepki", env!("CARGO_BIN_EXE_kubepki"))
            .as_bytes(),
    );
    write_file(&units.path().join("kubepki-renew.timer"), timer.as_bytes());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.path().join("kubepki-renew.service"))
        .arg(units.path().join("kubepki-renew.timer"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn ci_installs_promtool() {
    let ci = read(".ci/run");
    let pkgs = ci.lines().find(|l| l.starts_with("pkgs=(")).unwrap();
    assert!(pkgs.split_whitespace().any(|w| w == "prometheus"), "{pkgs}");
    let checks = ci.lines().find(|l| l.starts_with("for b in ")).unwrap();
    assert!(
        checks.split_whitespace().any(|w| w == "promtool"),
        "{checks}"
    );
}
