//! `kubepki ca rotate all` on a real single-node kubeadm v1.20.2 cluster (the harness: containerd,
//! runc, a supervised kubelet, the control plane as static pods), every phase, with the node
//! Ready and its pods running throughout:
//!
//! 1. trust, switch and finish with `--restart-static-pods` (etcd, kube-apiserver, the
//!    controller-manager and the scheduler restarted one at a time through the real kubelet),
//!    the kubelet restarted where the step says so;
//! 2. after switch, `ca rotate kubelet`: the kubelet's client certificate and its serving
//!    certificate (serverTLSBootstrap, approved by the kubepki controller running as its
//!    Deployment) come from the new CA through the kubelet's own CSRs, signed by the
//!    controller-manager from `ca-signer.*`;
//! 3. `finish` refuses while the kubelet's certificates are signed by the old CA, and goes
//!    through once they are not;
//! 4. after finish: no file under /etc/kubernetes or /var/lib/kubelet/pki trusts or is signed by
//!    the old CA; kubectl logs and exec work (API server -> kubelet, both new); the
//!    controller-manager manifest is kubeadm's again; `kubeadm certs check-expiration` reads the
//!    PKI.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::node::{NODE_NAME, Node};
use common::*;
use kubepki_pki::crypto::cert::Certificate;

const PKI: &str = "/etc/kubernetes/pki";

fn certs(path: &Path) -> Vec<Certificate> {
    Certificate::from_pem_chain(&fs::read(path).unwrap()).unwrap()
}

/// The certificate of a file holding a certificate and its key (the kubelet's).
fn cert_of_pair(path: &Path) -> Option<Certificate> {
    Certificate::from_pem_with_key(&fs::read(path).ok()?)
        .ok()?
        .into_iter()
        .next()
}

/// Runs a rotation step on the node, printing kubepki's lines; its JSON report.
fn step(node: &Node, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["ca", "rotate"];
    full.extend_from_slice(args);
    full.extend_from_slice(&[
        "--restart-static-pods",
        "--kubeconfig",
        "/etc/kubernetes/admin.conf",
        "--node-name",
        NODE_NAME,
        "-o",
        "json",
    ]);
    let out = run_ok(&mut node.kubepki(&full));
    for l in stderr(&out).lines() {
        eprintln!("    {l}");
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Restarts the kubelet when the step says so, then waits for the node to be Ready.
fn restart_kubelet_if_listed(node: &Node, report: &serde_json::Value) {
    let listed = report["restart"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "kubelet");
    if listed {
        node.script("kubeletctl.sh", &["restart"]);
    }
    node.wait("the node Ready", Duration::from_secs(180), || {
        node.ready().filter(|s| s == "True")
    });
}

/// The controller's running pods (not terminating), by name; they must keep running through
/// the rotation.
fn controller_pods(node: &Node) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&node.kubectl_ok(&[
        "-n",
        "kubepki-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=kubepki-controller",
        "-o",
        "json",
    ]))
    .unwrap();
    let mut names: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The controller reads the cluster CA from its token Secret at start: restarted (as any
/// in-cluster client must be between trust and switch) once every token Secret carries the
/// bundle. (The harness runs kube-proxy as a process with admin.conf; its iptables rules stay
/// while it cannot reach the API server.)
fn restart_in_cluster_clients(node: &Node, bundle_len: usize) {
    node.wait(
        "every token Secret carrying the CA bundle",
        Duration::from_secs(120),
        || {
            let out = node
                .kubectl(&[
                    "get",
                    "secrets",
                    "-A",
                    "-o",
                    "jsonpath={.items[?(@.type==\"kubernetes.io/service-account-token\")].data.ca\\.crt}",
                ])
                .output()
                .unwrap();
            use base64::Engine;
            let all = stdout(&out);
            let ok = all.split_whitespace().all(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()
                    .and_then(|pem| Certificate::from_pem_chain(&pem).ok())
                    .is_some_and(|c| c.len() == bundle_len)
            });
            (ok && !all.trim().is_empty()).then_some(())
        },
    );
    node.kubectl_ok(&[
        "-n",
        "kubepki-system",
        "rollout",
        "restart",
        "deployment/kubepki-controller",
    ]);
    node.kubectl_ok(&[
        "-n",
        "kubepki-system",
        "rollout",
        "status",
        "deployment/kubepki-controller",
        "--timeout=180s",
    ]);
}

#[test]
fn ca_rotation_on_a_real_kubeadm_node() {
    ensure_openssl();
    let started = Instant::now();
    // kube-proxy: the controller pods reach the API server through the kubernetes Service.
    let node = Node::up(&[
        ("KH_KUBEPKI", env!("CARGO_BIN_EXE_kubepki")),
        ("KH_KUBE_PROXY", "1"),
    ]);
    eprintln!("harness up in {:.1?}", node.up_time);
    node.deploy_controller();
    let old_ca = certs(&Path::new(PKI).join("ca.crt")).remove(0);
    let kcm = fs::read("/etc/kubernetes/manifests/kube-controller-manager.yaml").unwrap();
    // The kubelet serves a certificate from the old CA (its first serving CSR, approved by
    // kubepki).
    node.wait(
        "the kubelet's serving certificate",
        Duration::from_secs(120),
        || cert_of_pair(Path::new("/var/lib/kubelet/pki/kubelet-server-current.pem")),
    );
    let ready = |what: &str| {
        assert_eq!(
            node.ready().as_deref(),
            Some("True"),
            "node not Ready {what}"
        );
        eprintln!("[{:.0?}] {what}", started.elapsed());
    };

    let r = step(&node, &["trust", "all"]);
    assert_eq!(
        r["restart"],
        serde_json::json!([
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet"
        ])
    );
    let manifest =
        fs::read_to_string("/etc/kubernetes/manifests/kube-controller-manager.yaml").unwrap();
    assert!(
        manifest.contains("--cluster-signing-cert-file=/etc/kubernetes/pki/ca-signer.crt"),
        "{manifest}"
    );
    restart_kubelet_if_listed(&node, &r);
    ready("after trust");
    restart_in_cluster_clients(&node, 2);
    let pods = node.wait(
        "two controller pods running after the restart",
        Duration::from_secs(120),
        || {
            let p = controller_pods(&node);
            (p.len() == 2).then_some(p)
        },
    );

    let r = step(&node, &["switch", "all"]);
    restart_kubelet_if_listed(&node, &r);
    ready("after switch");
    let new_ca = certs(&Path::new(PKI).join("ca.crt")).remove(0);
    assert_ne!(new_ca.der(), old_ca.der());
    // cluster-info trusts both CAs, new first, as ca.crt does.
    let info = node.kubectl_ok(&[
        "-n",
        "kube-public",
        "get",
        "cm",
        "cluster-info",
        "-o",
        "jsonpath={.data.kubeconfig}",
    ]);
    assert!(
        info.contains(&{
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(fs::read(Path::new(PKI).join("ca.crt")).unwrap())
        }),
        "{info}"
    );

    // Legacy token Secrets signed by the old service-account key are re-issued with the new
    // one (finish refuses while one remains).
    let out = run_ok(&mut node.kubepki(&[
        "ca",
        "rotate",
        "tokens",
        "--kubeconfig",
        "/etc/kubernetes/admin.conf",
    ]));
    eprintln!("{}", stdout(&out));
    assert!(stdout(&out).contains("re-issued"), "{}", stdout(&out));

    // finish refuses: the kubelet's certificates are still the old CA's.
    let out = run_fail(&mut node.kubepki(&[
        "ca",
        "rotate",
        "finish",
        "all",
        "--kubeconfig",
        "/etc/kubernetes/admin.conf",
        "--node-name",
        NODE_NAME,
    ]));
    assert!(
        stderr(&out).contains("kubelet-client-current.pem")
            && stderr(&out).contains("still signed by the old ca"),
        "{}",
        stderr(&out)
    );

    // The kubelet asks for new certificates itself.
    let out = run_ok(&mut node.kubepki(&["ca", "rotate", "kubelet"]));
    eprintln!("{}", stdout(&out));
    node.script("kubeletctl.sh", &["restart"]);
    let client = node.wait(
        "the kubelet's client certificate from the new CA",
        Duration::from_secs(180),
        || {
            cert_of_pair(Path::new("/var/lib/kubelet/pki/kubelet-client-current.pem"))
                .filter(|c| c.is_signed_by(&new_ca))
        },
    );
    assert_eq!(client.common_name, format!("system:node:{NODE_NAME}"));
    let serving = node.wait(
        "the kubelet's serving certificate from the new CA (approved by kubepki)",
        Duration::from_secs(180),
        || {
            cert_of_pair(Path::new("/var/lib/kubelet/pki/kubelet-server-current.pem"))
                .filter(|c| c.is_signed_by(&new_ca))
        },
    );
    assert!(serving.server_auth);
    run_ok(&mut node.kubepki(&[
        "kubeconfig",
        "kubelet",
        "--node-name",
        NODE_NAME,
        "--rotated",
        "--write",
    ]));
    node.script("kubeletctl.sh", &["restart"]);
    node.wait("the node Ready", Duration::from_secs(180), || {
        node.ready().filter(|s| s == "True")
    });
    ready("the kubelet on the new CA");

    let r = step(&node, &["finish", "all"]);
    restart_kubelet_if_listed(&node, &r);
    ready("after finish");
    assert_eq!(
        fs::read("/etc/kubernetes/manifests/kube-controller-manager.yaml").unwrap(),
        kcm,
        "the controller-manager manifest is not kubeadm's again"
    );
    // The controller pods ran through it all (only the one rollout above replaced them).
    assert_eq!(controller_pods(&node), pods);

    // Nothing trusts or is signed by the old CA.
    let old_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(old_ca.der())[..60].to_string()
    };
    for root in ["/etc/kubernetes", "/var/lib/kubelet/pki"] {
        for (p, bytes, _) in snapshot(Path::new(root)) {
            if p.components().any(|c| c.as_os_str() == "kubepki-backups") {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&old_b64), "{} holds the old CA", p.display());
            if p.extension().is_some_and(|e| e == "crt" || e == "pem")
                && let Ok(chain) = Certificate::from_pem_with_key(&bytes)
                    .or_else(|_| Certificate::from_pem_chain(&bytes))
                && p.file_name().is_some_and(|n| n != "kubelet.crt")
            {
                assert!(
                    !chain[0].is_signed_by(&old_ca) || chain[0].der() == old_ca.der(),
                    "{} is signed by the old CA",
                    p.display()
                );
            }
        }
    }
    // What the API server publishes to extension API servers no longer holds the old CA.
    let published = node.wait(
        "kube-system/extension-apiserver-authentication published again",
        Duration::from_secs(60),
        || {
            let out = node
                .kubectl(&[
                    "-n",
                    "kube-system",
                    "get",
                    "cm",
                    "extension-apiserver-authentication",
                    "-o",
                    "json",
                ])
                .output()
                .unwrap();
            out.status.success().then(|| stdout(&out))
        },
    );
    let old_pem_line = old_ca.to_pem().lines().nth(1).unwrap().to_string();
    assert!(
        !published.contains(&old_pem_line),
        "the old CA is still published:\n{published}"
    );
    // logs and exec: the API server reaches the kubelet with the new certificates.
    let pod = &pods[0];
    let logs = node.wait(
        "kubectl logs through the restarted kubelet",
        Duration::from_secs(90),
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
    // kubeadm's own report reads the rotated PKI.
    let kubeadm = k8s_bin_dir_with("kubeadm").join("kubeadm");
    let out = run_ok(Command::new(kubeadm).args(["certs", "check-expiration"]));
    assert!(stdout(&out).contains("apiserver "), "{}", stdout(&out));
    ready("checked");
    let down = node.down();
    eprintln!(
        "harness down in {down:.1?}; whole test {:.0?}",
        started.elapsed()
    );
}
