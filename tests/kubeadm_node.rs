//! kubepki on a real kubeadm v1.20.2 node (harness/up.sh: containerd, runc, a real kubelet, the
//! control plane as static pods, a bridge CNI, kube-proxy, all in the harness's own network
//! namespace). One cluster for the whole binary, in phases:
//!
//! 1. `kubepki init` first, then `kubeadm init` on the same /etc/kubernetes: kubeadm says it uses
//!    every certificate, key and kubeconfig kubepki wrote, leaves them byte-identical (but
//!    kubelet.conf, which its kubelet-finalize phase points at the rotated certificate), and the
//!    node comes up Ready;
//! 2. the approver for real: kubepki's controller runs as the Deployment in deploy/ (the image
//!    built from this binary, exactly the RBAC the manifests grant) and approves the kubelet's own
//!    serving CSR; `kubectl logs` and `exec`, which the API server verifies against the cluster
//!    CA (--kubelet-certificate-authority), work; a forged CSR for the node with another IP is
//!    denied;
//! 3. static pods restarted for real: `certs renew all --restart-static-pods` restarts
//!    kube-apiserver, the controller-manager and the scheduler through the kubelet (etcd reads
//!    its certificates per connection and keeps running), each serves its renewed certificate,
//!    kubectl works with the renewed admin.conf;
//!    (renewed for 3 hours only, so that the agent has something to do next); before that, the
//!    agent, deployed by `kubectl apply -k deploy/`, lists every certificate of the node with the
//!    notAfter openssl reads, and after it, with `deploy/overlays/renewal` applied, renews the
//!    3-hour certificates, restarts the static pods one at a time through the kubelet, a client
//!    on admin.conf sees no authentication failure, and the Node's Events tell the story;
//! 4. kubelet recovery for real: the kubelet's client certificate expired, the node goes NotReady;
//!    `kubeconfig kubelet --write` and a kubelet restart bring it back Ready;
//! 5. the harness itself: after a crash (containerd, the kubelet and kube-proxy killed with
//!    SIGKILL) the next `up` cleans what is left and brings a fresh node up; `down` then leaves
//!    nothing behind (it checks processes, mounts, the namespace, cgroups, sysctls and the host
//!    directories it moved aside, and fails otherwise).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::cert_serial;
use common::node::{NODE_IP, NODE_NAME, Node};
use common::*;

#[test]
fn kubepki_on_a_real_kubeadm_node() {
    let started = Instant::now();
    let node = Node::up(&[
        ("KH_KUBEPKI", env!("CARGO_BIN_EXE_kubepki")),
        ("KH_KUBE_PROXY", "1"),
    ]);
    eprintln!("harness up in {:.1?}", node.up_time);
    kubeadm_uses_kubepkis_pki(&node);
    eprintln!("[{:.0?}] kubeadm used kubepki's PKI", started.elapsed());
    approver_runs_as_the_deployment(&node);
    eprintln!("[{:.0?}] approver phase done", started.elapsed());
    agent_reports_every_certificate(&node);
    eprintln!("[{:.0?}] agent metrics checked", started.elapsed());
    static_pods_restart_for_real(&node);
    eprintln!("[{:.0?}] static pod restarts done", started.elapsed());
    agent_renews_before_expiry(&node);
    eprintln!("[{:.0?}] agent renewal done", started.elapsed());
    kubelet_recovers(&node);
    eprintln!("[{:.0?}] kubelet recovery done", started.elapsed());
    let node = a_crashed_run_is_cleaned_by_the_next_up(node);
    eprintln!(
        "[{:.0?}] up again after a crash in {:.1?}",
        started.elapsed(),
        node.up_time
    );
    let down = node.down();
    eprintln!(
        "harness down in {down:.1?}; whole test {:.0?}",
        started.elapsed()
    );
}

/// kubeadm's own words, for every file kubepki wrote, and the files untouched.
fn kubeadm_uses_kubepkis_pki(node: &Node) {
    let log = fs::read_to_string(node.run.join("kubeadm-init.log")).unwrap();
    let mut expected: Vec<String> = ["ca", "front-proxy-ca", "etcd/ca"]
        .iter()
        .map(|c| format!("[certs] Using existing {c} certificate authority"))
        .collect();
    for leaf in [
        "apiserver",
        "apiserver-kubelet-client",
        "front-proxy-client",
        "etcd/server",
        "etcd/peer",
        "etcd/healthcheck-client",
        "apiserver-etcd-client",
    ] {
        expected.push(format!(
            "[certs] Using existing {leaf} certificate and key on disk"
        ));
    }
    expected.push("[certs] Using the existing \"sa\" key".into());
    for conf in ["admin", "kubelet", "controller-manager", "scheduler"] {
        expected.push(format!(
            "[kubeconfig] Using existing kubeconfig file: \"/etc/kubernetes/{conf}.conf\""
        ));
    }
    let missing: Vec<&String> = expected.iter().filter(|l| !log.contains(*l)).collect();
    assert!(
        missing.is_empty(),
        "kubeadm did not say it used: {missing:#?}\n--- kubeadm-init.log:\n{log}"
    );
    for generated in ["Generating", "Writing \""] {
        assert!(
            !log.lines().any(
                |l| (l.starts_with("[certs]") || l.starts_with("[kubeconfig]"))
                    && l.contains(generated)
            ),
            "kubeadm generated or wrote a PKI file itself:\n{log}"
        );
    }
    // Byte-identical after kubeadm init, but kubelet.conf (kubelet-finalize repoints it).
    let recorded = fs::read_to_string(node.run.join("kubepki-init.sha256")).unwrap();
    let mut checked = 0;
    for line in recorded.lines() {
        let (sum, file) = line.split_once("  ").unwrap();
        if file == "./kubelet.conf" {
            continue;
        }
        let path = Path::new("/etc/kubernetes").join(file);
        let now = stdout(&run_ok(Command::new("sha256sum").arg(&path)));
        assert!(
            now.starts_with(sum),
            "{} changed after kubeadm init",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} files recorded:\n{recorded}");
    let ready = node.kubectl_ok(&[
        "get",
        "node",
        NODE_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready, "True");
}

/// The kubelet-serving CSRs; None when the API server did not answer (retried by the caller).
fn serving_csrs(node: &Node) -> Option<Vec<serde_json::Value>> {
    let out = node
        .kubectl(&["get", "csr", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .filter(|c| c["spec"]["signerName"] == "kubernetes.io/kubelet-serving")
            .cloned()
            .collect(),
    )
}

fn condition<'a>(csr: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    csr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// The controller as an operator installs it, deciding the kubelet's real serving CSR.
fn approver_runs_as_the_deployment(node: &Node) {
    node.deploy_controller();

    // The kubelet asked for its serving certificate at start; kubepki approves it, the
    // controller-manager signs it, the kubelet serves it.
    let approved = node.wait(
        "the kubelet's serving CSR approved by kubepki and issued",
        Duration::from_secs(120),
        || {
            serving_csrs(node)?.into_iter().find(|c| {
                condition(c, "Approved").is_some_and(|a| a["reason"] == "KubepkiApproved")
                    && c["status"]["certificate"].is_string()
            })
        },
    );
    assert_eq!(
        approved["spec"]["username"],
        format!("system:node:{NODE_NAME}")
    );
    // What the kubelet serves on :10250 is the certificate issued for that CSR.
    let issued = {
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(approved["status"]["certificate"].as_str().unwrap())
            .unwrap();
        let p = scratch();
        let f = p.path().join("issued.pem");
        fs::write(&f, pem).unwrap();
        let verify = run_ok(
            Command::new("openssl")
                .args(["verify", "-CAfile", "/etc/kubernetes/pki/ca.crt"])
                .arg(&f),
        );
        assert!(stdout(&verify).contains(": OK"), "{}", stdout(&verify));
        cert_serial(&f)
    };
    node.wait(
        "the kubelet serving the certificate issued for its CSR",
        Duration::from_secs(90),
        || (node.served_serial(&format!("{NODE_IP}:10250")) == issued).then_some(()),
    );

    // logs and exec go through the kubelet's serving certificate, verified by the API server.
    let pods = node.kubectl_ok(&[
        "-n",
        "kubepki-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=kubepki-controller",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let pod = pods.trim();
    let logs = node.wait(
        "kubectl logs through the kubelet",
        Duration::from_secs(60),
        || {
            let out = node
                .kubectl(&["-n", "kubepki-system", "logs", pod])
                .output()
                .unwrap();
            out.status.success().then(|| stdout(&out))
        },
    );
    assert!(logs.contains("\"level\""), "{logs}");
    let version = node.kubectl_ok(&[
        "-n",
        "kubepki-system",
        "exec",
        pod,
        "--",
        "/usr/local/bin/kubepki",
        "--version",
    ]);
    assert!(version.starts_with("kubepki "), "{version}");

    forged_csr_is_denied(node);
}

/// A request for this node's name with an IP the node does not have, made with the node's own
/// credentials: denied.
fn forged_csr_is_denied(node: &Node) {
    let dir = scratch();
    let file = csr_object(
        dir.path(),
        "forged-serving",
        &format!("/O=system:nodes/CN=system:node:{NODE_NAME}"),
        &[
            "-addext",
            &format!("subjectAltName=DNS:{NODE_NAME},IP:10.9.9.9"),
        ],
        "kubernetes.io/kubelet-serving",
        "digital signature, key encipherment, server auth",
    );
    // As the node: its kubelet.conf (the kubelet's rotated client certificate).
    node.kubectl_ok(&[
        "--kubeconfig",
        "/etc/kubernetes/kubelet.conf",
        "create",
        "-f",
        file.to_str().unwrap(),
    ]);
    let denied = node.wait("the forged CSR denied", Duration::from_secs(60), || {
        let out = node
            .kubectl(&["get", "csr", "forged-serving", "-o", "json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
        condition(&v, "Denied").cloned()
    });
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.contains("10.9.9.9")),
        "{denied}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&node.kubectl_ok(&["get", "csr", "forged-serving", "-o", "json"]))
            .unwrap();
    assert!(
        v["status"]["certificate"].is_null(),
        "a forged CSR was issued"
    );
    assert!(condition(&v, "Approved").is_none());
}

/// `certs renew all --restart-static-pods` on the live node: kube-apiserver, the
/// controller-manager and the scheduler are restarted by the real kubelet and healthy again;
/// etcd, which reads its certificates on every new connection, is left running and serves the
/// renewed ones; kube-apiserver serves its renewed certificate; kubectl works with the renewed
/// admin.conf.
fn static_pods_restart_for_real(node: &Node) {
    let api = format!("{NODE_IP}:6443");
    let etcd = "127.0.0.1:2379";
    let before = node.control_plane_containers();
    for (c, ids) in &before {
        assert_eq!(ids.len(), 1, "{c}: running containers {ids:?}");
    }
    let old_api = node.served_serial(&api);
    assert_eq!(
        old_api,
        cert_serial(Path::new("/etc/kubernetes/pki/apiserver.crt"))
    );
    let old_etcd = node.served_serial(etcd);
    assert_eq!(
        old_etcd,
        cert_serial(Path::new("/etc/kubernetes/pki/etcd/server.crt"))
    );
    // Short-lived on purpose: the agent phase after this one must renew them before they expire.
    let out = run_ok(&mut node.kubepki(&[
        "certs",
        "renew",
        "all",
        "--validity",
        "3h",
        "--restart-static-pods",
    ]));
    let text = stdout(&out);
    for l in text.lines().filter(|l| l.starts_with("[restart]")) {
        eprintln!("    {l}");
    }
    assert!(
        text.contains("restarted kube-apiserver, kube-controller-manager, kube-scheduler"),
        "{text}"
    );
    let after = node.control_plane_containers();
    for ((c, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(
            new.len(),
            1,
            "{c}: running containers after renew {new:?}\n{text}"
        );
        if c == "etcd" {
            assert_eq!(old, new, "etcd was restarted:\n{text}");
        } else {
            assert_ne!(old, new, "{c} was not restarted:\n{text}");
        }
    }
    let new_api = cert_serial(Path::new("/etc/kubernetes/pki/apiserver.crt"));
    assert_ne!(new_api, old_api);
    assert_eq!(
        node.served_serial(&api),
        new_api,
        "kube-apiserver serves the old certificate"
    );
    let new_etcd = cert_serial(Path::new("/etc/kubernetes/pki/etcd/server.crt"));
    assert_ne!(new_etcd, old_etcd);
    assert_eq!(
        node.served_serial(etcd),
        new_etcd,
        "etcd serves the old certificate"
    );
    let nodes = node.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), format!("node/{NODE_NAME}"));
}

/// The agent's /metrics on this node (it runs with hostNetwork).
fn agent_metrics(node: &Node) -> String {
    node.wait("the agent's /metrics", Duration::from_secs(60), || {
        let out = node
            .cmd("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://{NODE_IP}:9794/metrics"))
            .output()
            .unwrap();
        out.status.success().then(|| stdout(&out))
    })
}

/// The values of `metric` on series carrying every label of `labels`.
fn series(text: &str, metric: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// notAfter of a PEM certificate file, in Unix seconds, as openssl reads it.
fn openssl_not_after(path: &Path) -> f64 {
    let o = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-in"])
            .arg(path),
    );
    let date = stdout(&o)
        .trim()
        .trim_start_matches("notAfter=")
        .to_string();
    let o = run_ok(Command::new("date").args(["-u", "-d", &date, "+%s"]));
    stdout(&o).trim().parse().unwrap()
}

/// The agent, deployed by `kubectl apply -k deploy/`, lists every certificate of the node with
/// the notAfter openssl reads: the PKI, every kubeconfig's client certificate and CA, the
/// kubelet's client and serving certificates.
fn agent_reports_every_certificate(node: &Node) {
    let text = agent_metrics(node);
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["/etc/kubernetes/pki", "/etc/kubernetes/pki/etcd"] {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "crt") {
                files.push(p);
            }
        }
    }
    files.push("/var/lib/kubelet/pki/kubelet-client-current.pem".into());
    let serving = Path::new("/var/lib/kubelet/pki/kubelet-server-current.pem");
    if serving.exists() {
        files.push(serving.into());
    }
    assert!(files.len() >= 12, "{files:?}");
    for f in &files {
        let want = openssl_not_after(f);
        let got = series(
            &text,
            "x509_cert_not_after",
            &[("filepath", f.to_str().unwrap())],
        );
        assert_eq!(got, vec![want], "{}: x509_cert_not_after", f.display());
    }
    for conf in ["admin.conf", "controller-manager.conf", "scheduler.conf"] {
        let path = Path::new("/etc/kubernetes").join(conf);
        let yaml = fs::read_to_string(&path).unwrap();
        let dir = scratch();
        for (kind, key) in [
            ("user", "client-certificate-data"),
            ("cluster", "certificate-authority-data"),
        ] {
            let pem = dir.path().join(kind);
            fs::write(&pem, kubeconfig_field(&yaml, key)).unwrap();
            let got = series(
                &text,
                "x509_cert_not_after",
                &[
                    ("filepath", path.to_str().unwrap()),
                    ("embedded_kind", kind),
                ],
            );
            assert_eq!(got, vec![openssl_not_after(&pem)], "{conf} {kind}");
        }
    }
    for (name, renewable) in [
        ("apiserver", "true"),
        ("ca", "false"),
        ("admin.conf", "true"),
    ] {
        assert!(
            !series(
                &text,
                "kubepki_certificate_info",
                &[("name", name), ("renewable", renewable)]
            )
            .is_empty(),
            "kubepki_certificate_info for {name}:\n{text}"
        );
    }
    assert!(text.contains("\nx509_read_errors 0\n"), "{text}");
}

/// The Events on this Node with `reason`.
fn node_events(node: &Node, reason: &str) -> Vec<String> {
    // The API server may be restarting (the agent restarts it): no answer, no Events yet.
    let out = node
        .kubectl(&["get", "events", "-A", "-o", "json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason && e["involvedObject"]["name"] == NODE_NAME)
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Automatic renewal on the real node: with the renewal overlay applied, the agent renews the
/// 3-hour certificates before they expire, restarts the static pods through the real kubelet
/// one at a time (each healthy before the next), a client using admin.conf sees no
/// authentication failure throughout, and the Node's Events tell the story.
fn agent_renews_before_expiry(node: &Node) {
    let apiserver = Path::new("/etc/kubernetes/pki/apiserver.crt");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!(openssl_not_after(apiserver) - now < 3.0 * 3600.0);
    let before = node.control_plane_containers();
    let auth_failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = {
        let (failures, calls) = (auth_failures.clone(), calls.clone());
        let kubectl = node.kubectl(&["get", "--raw", "/api"]);
        let program = kubectl.get_program().to_owned();
        let args: Vec<_> = kubectl.get_args().map(|a| a.to_owned()).collect();
        common::cluster::Background::spawn(move |stop| {
            for _ in 0..4000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let out = Command::new(&program)
                    .args(&args)
                    .env("KUBECONFIG", "/etc/kubernetes/admin.conf")
                    .output()
                    .unwrap();
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let err = stderr(&out);
                if !out.status.success()
                    && (err.contains("Unauthorized")
                        || err.contains("x509")
                        || err.contains("certificate")
                        || err.contains("Forbidden"))
                {
                    failures.lock().unwrap().push(err);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    node.apply_kustomization("deploy/overlays/renewal");
    let renewed = node.wait(
        "the agent's CertificateRenewed Event",
        Duration::from_secs(480),
        || node_events(node, "CertificateRenewed").pop(),
    );
    eprintln!("    CertificateRenewed: {renewed}");
    let mut client = client;
    client.halt();
    let failures = auth_failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "authentication failures with admin.conf during the renewal ({} of {} calls): {failures:?}",
        failures.len(),
        calls.load(std::sync::atomic::Ordering::SeqCst)
    );
    // Renewed for the default year, and served.
    let left =
        openssl_not_after(apiserver) - time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!(left > 300.0 * 86400.0, "apiserver.crt has {left}s left");
    assert_eq!(
        node.served_serial(&format!("{NODE_IP}:6443")),
        cert_serial(apiserver),
        "kube-apiserver serves the old certificate"
    );
    let after = node.control_plane_containers();
    for ((c, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(new.len(), 1, "{c}: running containers {new:?}");
        if c != "etcd" {
            assert_ne!(old, new, "{c} was not restarted by the agent");
        }
    }
    // One at a time: each component healthy again before the next one's manifest moves out.
    let logs = node.kubectl_ok(&[
        "-n",
        "kubepki-system",
        "logs",
        "daemonset/kubepki-agent-control-plane",
        "--tail=-1",
    ]);
    let restart: Vec<&str> = logs.lines().filter(|l| l.contains("[restart] ")).collect();
    let mut order = Vec::new();
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let out_at = restart
            .iter()
            .position(|l| l.contains(&format!("[restart] {c}: manifest moved out")))
            .unwrap_or_else(|| panic!("no restart of {c} in the agent's log:\n{logs}"));
        let healthy_at = restart
            .iter()
            .position(|l| l.contains(&format!("[restart] {c} is healthy again")))
            .unwrap_or_else(|| panic!("{c} not healthy in the agent's log:\n{logs}"));
        assert!(out_at < healthy_at);
        order.push((out_at, healthy_at));
    }
    order.sort();
    for w in order.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "two restarts overlapped in the agent's log:\n{}",
            restart.join("\n")
        );
    }
    // The story, on the Node.
    let expiring = node_events(node, "CertificateExpiring");
    assert!(
        expiring.iter().any(|m| m.contains("apiserver")),
        "{expiring:?}"
    );
    node.wait(
        "a StaticPodRestarted Event for each restarted component",
        Duration::from_secs(60),
        || {
            let restarted = node_events(node, "StaticPodRestarted");
            [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ]
            .iter()
            .all(|c| restarted.iter().any(|m| m.contains(c)))
            .then_some(())
        },
    );
    assert!(node_events(node, "CertificateRenewalFailed").is_empty());
    // Handed back after the settle time, with no failure recorded.
    let lease = node.wait(
        "the renewal Lease released",
        Duration::from_secs(120),
        || {
            let out = node
                .kubectl(&[
                    "-n",
                    "kubepki-system",
                    "get",
                    "lease",
                    "kubepki-renewal",
                    "-o",
                    "json",
                ])
                .output()
                .unwrap();
            let lease: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
            lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .is_empty()
                .then_some(lease)
        },
    );
    assert!(
        lease["metadata"]["annotations"]["kubepki.io/renewal-failed"].is_null(),
        "{lease}"
    );
    let nodes = node.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), format!("node/{NODE_NAME}"));
}

/// The value of `key:` in a kubeconfig kubepki printed (one line each, base64).
fn kubeconfig_field(yaml: &str, key: &str) -> Vec<u8> {
    use base64::Engine;
    let line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{yaml}"));
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .unwrap()
}

/// The kubelet's client certificate expired: the node goes NotReady; `kubeconfig kubelet
/// --write` and a kubelet restart bring it back, and `--rotated --write` points kubelet.conf at
/// the kubelet's own rotated file again.
fn kubelet_recovers(node: &Node) {
    // An expired client certificate for this node, where kubelet.conf points (kubeadm's
    // kubelet-finalize made it the rotated file).
    let conf = fs::read_to_string("/etc/kubernetes/kubelet.conf").unwrap();
    assert!(
        conf.contains("/var/lib/kubelet/pki/kubelet-client-current.pem"),
        "{conf}"
    );
    let past = time::OffsetDateTime::now_utc() - time::Duration::hours(3);
    let past = past
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expired = stdout(&run_ok(&mut node.kubepki(&[
        "kubeconfig",
        "kubelet",
        "--node-name",
        NODE_NAME,
        "--validity-period",
        "1h",
        "--now",
        &past,
    ])));
    let pem = [
        kubeconfig_field(&expired, "client-certificate-data"),
        kubeconfig_field(&expired, "client-key-data"),
    ]
    .concat();
    node.script("kubeletctl.sh", &["stop"]);
    let pki = Path::new("/var/lib/kubelet/pki");
    fs::write(pki.join("kubelet-client-expired.pem"), pem).unwrap();
    let current = pki.join("kubelet-client-current.pem");
    fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink(pki.join("kubelet-client-expired.pem"), &current).unwrap();
    assert!(
        !Path::new("/etc/kubernetes/bootstrap-kubelet.conf").exists(),
        "a bootstrap kubeconfig would let the kubelet recover by itself"
    );
    node.script("kubeletctl.sh", &["start"]);
    node.wait("the node NotReady", Duration::from_secs(150), || {
        node.ready().filter(|s| s != "True")
    });
    // It does not come back by itself.
    std::thread::sleep(Duration::from_secs(15));
    assert_ne!(
        node.ready().as_deref(),
        Some("True"),
        "recovered without kubepki"
    );

    // The documented recovery, by kubepki.
    let out =
        run_ok(&mut node.kubepki(&["kubeconfig", "kubelet", "--node-name", NODE_NAME, "--write"]));
    assert!(stdout(&out).contains("kubelet.conf"), "{}", stdout(&out));
    let conf = fs::read_to_string("/etc/kubernetes/kubelet.conf").unwrap();
    assert!(conf.contains("client-certificate-data:"), "{conf}");
    node.script("kubeletctl.sh", &["restart"]);
    node.wait("the node Ready again", Duration::from_secs(120), || {
        node.ready().filter(|s| s == "True")
    });
    // The kubelet put the new certificate in its store; kubelet.conf can point there again.
    node.wait(
        "a current client certificate in the kubelet's store",
        Duration::from_secs(60),
        || {
            let out = Command::new("openssl")
                .args(["x509", "-noout", "-checkend", "600", "-in"])
                .arg(&current)
                .output()
                .ok()?;
            out.status.success().then_some(())
        },
    );
    run_ok(&mut node.kubepki(&[
        "kubeconfig",
        "kubelet",
        "--node-name",
        NODE_NAME,
        "--rotated",
        "--write",
    ]));
    node.script("kubeletctl.sh", &["restart"]);
    node.wait(
        "the node Ready on its rotated certificate",
        Duration::from_secs(120),
        || node.ready().filter(|s| s == "True"),
    );
    let conf = fs::read_to_string("/etc/kubernetes/kubelet.conf").unwrap();
    assert!(
        conf.contains("/var/lib/kubelet/pki/kubelet-client-current.pem"),
        "{conf}"
    );
}

/// SIGKILL to every daemon of the harness (a crashed test run), then `up` again: it cleans the
/// leftovers first and brings up a node that works.
fn a_crashed_run_is_cleaned_by_the_next_up(node: Node) -> Node {
    for pidfile in [
        "kubelet-supervisor.pid",
        "kubelet.pid",
        "kube-proxy.pid",
        "containerd.pid",
    ] {
        let pid: i32 = fs::read_to_string(node.run.join(pidfile))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let run = node.run.clone();
    std::mem::forget(node);
    fs::remove_file(run.join("kubeadm-init.log")).unwrap();
    let node = Node::up(&[("KH_KUBEPKI", env!("CARGO_BIN_EXE_kubepki"))]);
    assert!(
        node.up_log.contains("leftovers of an earlier run"),
        "{}",
        node.up_log
    );
    let log = fs::read_to_string(node.run.join("kubeadm-init.log")).unwrap();
    assert!(
        log.contains("Using existing apiserver certificate"),
        "{log}"
    );
    let ready = node.wait("the new node Ready", Duration::from_secs(60), || {
        node.ready().filter(|s| s == "True")
    });
    assert_eq!(ready, "True");
    node
}
