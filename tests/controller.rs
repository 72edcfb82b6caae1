//! `kubepki controller` against a real kube-apiserver and kube-controller-manager v1.20.2 on a
//! PKI made by `kubepki init`, running with only the RBAC of deploy/kubepki-controller.yaml
//! (the service account's own token).
//!
//! Phases, on one cluster (starting it is the slow part):
//! 1. the deploy manifests pass `kubectl apply --dry-run=server`, then are applied;
//! 2. `--no-deny`: a node's own request (made with its own client certificate) ends Approved
//!    and Issued by the real controller-manager and verifies against ca.crt; bad requests stay
//!    pending; `kubepki csr list` gives their verdicts and `kubepki csr approve` refuses them;
//! 3. with the controller stopped, the bad-request matrix (and a duplicate pair) is created;
//!    a normal controller then denies each with the expected reason, records Events and
//!    counts its decisions in /metrics;
//! 4. two replicas with leader election: every request gets exactly one decision, from one
//!    replica; when the leader is killed the other takes over;
//! 5. with the controller-manager stopped, `--sign` issues the certificate itself.
//!
//! Everything listens on 127.0.0.40; every process is stopped by PID.

mod common;

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

const LOOPBACK: u8 = 40;
const NODE: &str = "cp-40";

/// A Node object and its status.addresses.
struct NodeSpec {
    name: &'static str,
    addresses: &'static [(&'static str, &'static str)],
}

const NODES: &[NodeSpec] = &[
    NodeSpec {
        name: "n1",
        addresses: &[
            ("InternalIP", "10.0.0.1"),
            ("ExternalIP", "203.0.113.7"),
            ("InternalIP", "fd00::1"),
            ("Hostname", "n1.lan"),
        ],
    },
    NodeSpec {
        name: "n2",
        addresses: &[("InternalIP", "10.0.0.2"), ("Hostname", "n2")],
    },
    NodeSpec {
        name: "a",
        addresses: &[("InternalIP", "192.168.14.34"), ("Hostname", "a")],
    },
    NodeSpec {
        name: "unresolved",
        addresses: &[("InternalIP", "192.168.14.35")],
    },
    NodeSpec {
        name: "ndup",
        addresses: &[("InternalIP", "10.0.0.5")],
    },
];

/// Nodes for the leader-election phase: l0..l19 at 10.1.0.x.
const LEADER_NODES: usize = 20;

/// How a test request is made.
#[derive(Clone)]
struct Req {
    name: String,
    /// Impersonated requester and groups (super-admin may impersonate); None: the node's own
    /// kubeconfig.
    as_user: Option<(String, Vec<String>)>,
    subject: String,
    san: Option<String>,
    key: &'static str,
    usages: Vec<&'static str>,
    signer: &'static str,
    /// A ready-made PEM instead of one built from subject/san/key.
    pem: Option<Vec<u8>>,
}

const SERVING: &str = "kubernetes.io/kubelet-serving";
const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256";

fn usages_std() -> Vec<&'static str> {
    vec!["digital signature", "key encipherment", "server auth"]
}

/// A request from node `node` (impersonated, in system:nodes) with these SANs.
fn node_req(name: &str, node: &str, san: Option<&str>) -> Req {
    Req {
        name: name.into(),
        as_user: Some((format!("system:node:{node}"), vec!["system:nodes".into()])),
        subject: format!("/O=system:nodes/CN=system:node:{node}"),
        san: san.map(str::to_string),
        key: EC,
        usages: usages_std(),
        signer: SERVING,
        pem: None,
    }
}

struct Env {
    c: Cluster,
    work: PathBuf,
    super_admin: PathBuf,
    sa_conf: PathBuf,
}

impl Env {
    fn ca(&self) -> PathBuf {
        self.c.pki("ca.crt")
    }

    fn kc(&self, args: &[&str]) -> std::process::Output {
        kc(&self.super_admin, args)
    }

    fn kc_ok(&self, args: &[&str]) -> String {
        let o = self.kc(args);
        assert!(o.status.success(), "kubectl {args:?}\n{}", show(&o));
        stdout(&o)
    }

    fn create(&self, r: &Req) {
        let o = self.try_create(r);
        assert!(o.status.success(), "creating CSR {}\n{}", r.name, show(&o));
    }

    /// openssl makes the key and request; the CSR object goes in with kubectl.
    fn try_create(&self, r: &Req) -> std::process::Output {
        let pem = match &r.pem {
            Some(p) => p.clone(),
            None => {
                let key = self.work.join(format!("{}.key", r.name));
                let csr = self.work.join(format!("{}.csr", r.name));
                let mut cmd = Command::new("sh");
                let san = r
                    .san
                    .as_ref()
                    .map(|s| format!("-addext 'subjectAltName={s}'"))
                    .unwrap_or_default();
                cmd.arg("-c").arg(format!(
                    "openssl req -new {} -nodes -keyout {} -subj '{}' {} -out {}",
                    r.key,
                    key.display(),
                    r.subject,
                    san,
                    csr.display()
                ));
                run_ok(&mut cmd);
                std::fs::read(&csr).unwrap()
            }
        };
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
        let usages: Vec<String> = r.usages.iter().map(|u| format!("\"{u}\"")).collect();
        let yaml = format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {}\nspec:\n  request: {b64}\n  signerName: {}\n  usages: [{}]\n",
            r.name,
            r.signer,
            usages.join(", ")
        );
        let file = self.work.join(format!("{}.yaml", r.name));
        write_file(&file, yaml.as_bytes());
        let file = file.display().to_string();
        match &r.as_user {
            Some((user, groups)) => {
                let mut args = vec!["create", "-f", &file, "--as", user];
                for g in groups {
                    args.push("--as-group");
                    args.push(g);
                }
                self.kc(&args)
            }
            None => {
                let conf = self.node_conf(r.subject.rsplit("system:node:").next().unwrap());
                kc(&conf, &["create", "-f", &file])
            }
        }
    }

    /// A node's own kubeconfig (`kubepki kubeconfig user`), as its kubelet would have.
    fn node_conf(&self, node: &str) -> PathBuf {
        let p = self.work.join(format!("node-{node}.conf"));
        if !p.exists() {
            let out = run_ok(
                kubepki()
                    .args(["kubeconfig", "user", "--client-name"])
                    .arg(format!("system:node:{node}"))
                    .args(["--org", "system:nodes", "--cert-dir"])
                    .arg(self.c.dir.join("pki"))
                    .arg("--kubeconfig-dir")
                    .arg(&self.c.dir)
                    .arg("--encryption-algorithm")
                    .arg("ECDSA-P256"),
            );
            write_file(&p, &out.stdout);
        }
        p
    }

    /// Every CSR: name → (condition types, condition reason, message).
    fn conditions(&self) -> BTreeMap<String, Vec<(String, String, String)>> {
        let out = self.kc_ok(&["get", "csr", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut m = BTreeMap::new();
        for item in v["items"].as_array().unwrap() {
            let name = item["metadata"]["name"].as_str().unwrap().to_string();
            let conds = item["status"]["conditions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            (
                                c["type"].as_str().unwrap_or("").to_string(),
                                c["reason"].as_str().unwrap_or("").to_string(),
                                c["message"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            m.insert(name, conds);
        }
        m
    }

    fn controller(&self, tag: &str, extra: &[&str]) -> (Proc, u16) {
        let port = free_port(self.c.ip);
        let mut cmd = kubepki();
        cmd.arg("controller")
            .arg("--kubeconfig")
            .arg(&self.sa_conf)
            .arg("--metrics-bind-address")
            .arg(format!("{}:{port}", self.c.ip))
            .arg("--health-probe-bind-address")
            .arg("0")
            .args(["--leader-elect-resource-namespace", "kubepki-system"])
            .args(["--identity", tag])
            .args(extra)
            .env("RUST_LOG", "info,kubepki_controller=debug");
        let p = Proc::spawn(
            &format!("kubepki controller {tag}"),
            cmd,
            &self.c.dir.join(format!("kubepki-controller-{tag}.log")),
        );
        (p, port)
    }

    fn metrics(&self, port: u16) -> Option<String> {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{}:{port}/metrics", self.c.ip))
            .output()
            .ok()?;
        o.status.success().then(|| stdout(&o))
    }
}

/// Sum of a metric's samples whose line contains every one of `filters`.
fn metric_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_ready(env: &Env, p: &mut Proc, port: u16) {
    wait_for(
        &format!("{} /readyz", p.name),
        Duration::from_secs(30),
        120,
        || {
            assert_running(p);
            let o = Command::new("curl")
                .args(["-sS", "--max-time", "2"])
                .arg(format!("http://{}:{port}/readyz", env.c.ip))
                .output()
                .ok()?;
            (stdout(&o) == "ok").then_some(())
        },
    );
}

/// Waits (bounded: 60 s) until CSR `name` has a certificate, while `ctl` keeps running; returns
/// `.status.certificate` (base64 PEM).
fn wait_issued(env: &Env, ctl: &mut Proc, name: &str, what: &str) -> String {
    wait_for(what, Duration::from_secs(60), 120, || {
        assert_running(ctl);
        let o = env.kc(&["get", "csr", name, "-o", "jsonpath={.status.certificate}"]);
        let c = stdout(&o);
        (o.status.success() && !c.is_empty()).then_some(c)
    })
}

/// Writes the issued certificate (`.status.certificate`) of CSR `name` to `work/<name>.crt`
/// and checks it is a server certificate of ca.crt; returns the file.
fn verify_serving(env: &Env, name: &str, cert_b64: &str) -> PathBuf {
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(cert_b64.trim())
        .unwrap();
    let crt = env.work.join(format!("{name}.crt"));
    write_file(&crt, &pem);
    let o = run_ok(
        Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(env.ca())
            .arg(&crt),
    );
    assert!(stdout(&o).contains(": OK"), "{}", stdout(&o));
    crt
}

#[test]
fn controller_binds_kubelet_serving_requests_to_their_node() {
    let started = Instant::now();
    let bin = ensure_control_plane_tools();
    let tmp = scratch();
    let dir = tmp.path().join("cluster");
    std::fs::create_dir_all(&dir).unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let c = Cluster::start(bin, &dir, NODE, loopback(LOOPBACK));
    let mut env = Env {
        super_admin: dir.join("super-admin.conf"),
        sa_conf: work.join("sa.conf"),
        c,
        work,
    };
    run_checks(&mut env, phases, |env| {
        let mut logs = env.c.log_tails();
        for f in std::fs::read_dir(&env.c.dir).unwrap().flatten() {
            let n = f.file_name().to_string_lossy().to_string();
            if n.starts_with("kubepki-controller-") && n.ends_with(".log") {
                let t = std::fs::read_to_string(f.path()).unwrap_or_default();
                logs.push_str(&format!("\n--- {n}, last 40 lines:\n{}", tail(&t, 40)));
            }
        }
        logs
    });
    eprintln!(
        "controller test: all phases passed in {:?}",
        started.elapsed()
    );
}

fn phases(env: &mut Env) {
    setup(env);
    let valid = no_deny_phase(env);
    matrix_phase(env, &valid);
    leader_phase(env);
    signing_phase(env);
}

fn setup(env: &mut Env) {
    env.c.wait_apiserver_ready();
    // The real signer for kubelet-serving, and the token controller for the service account.
    env.c.kcm = Some(start_kcm(
        &env.c.bin,
        &env.c.dir,
        env.c.ip,
        "csrsigning,serviceaccount-token,clusterrole-aggregation",
    ));

    // Nodes and their addresses (status is a subresource: patched separately).
    let mut nodes: Vec<(String, Vec<(String, String)>)> = NODES
        .iter()
        .map(|n| {
            (
                n.name.to_string(),
                n.addresses
                    .iter()
                    .map(|(k, a)| (k.to_string(), a.to_string()))
                    .collect(),
            )
        })
        .collect();
    for i in 0..LEADER_NODES {
        nodes.push((
            format!("l{i}"),
            vec![("InternalIP".into(), format!("10.1.0.{}", i + 1))],
        ));
    }
    let list: Vec<String> = nodes
        .iter()
        .map(|(n, _)| format!("- apiVersion: v1\n  kind: Node\n  metadata:\n    name: {n}\n"))
        .collect();
    let f = env.work.join("nodes.yaml");
    write_file(
        &f,
        format!("apiVersion: v1\nkind: List\nitems:\n{}", list.concat()).as_bytes(),
    );
    env.kc_ok(&["create", "-f", f.to_str().unwrap()]);
    for (n, addrs) in &nodes {
        let a: Vec<String> = addrs
            .iter()
            .map(|(k, v)| format!("{{\"type\":\"{k}\",\"address\":\"{v}\"}}"))
            .collect();
        let patch = format!("{{\"status\":{{\"addresses\":[{}]}}}}", a.join(","));
        env.kc_ok(&[
            "patch",
            "node",
            n,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }
    // Let any authenticated user create CSRs, so requesters that are not nodes can try.
    env.kc_ok(&[
        "create",
        "clusterrolebinding",
        "test-anyone-creates-csrs",
        "--clusterrole=system:node-bootstrapper",
        "--group=system:authenticated",
    ]);

    // The deploy manifests: validated by the real API server, then applied.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubepki-controller.yaml");
    let m = manifest.to_str().unwrap();
    let ns = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/namespace.yaml");
    env.kc_ok(&["apply", "-f", ns.to_str().unwrap()]);
    let out = env.kc_ok(&["apply", "--dry-run=server", "-f", m]);
    assert!(
        out.contains("deployment.apps/kubepki-controller created (server dry run)"),
        "{out}"
    );
    env.kc_ok(&["apply", "-f", m]);
    let signing = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/signing-rbac.yaml");
    env.kc_ok(&["apply", "--dry-run=server", "-f", signing.to_str().unwrap()]);

    // The controller's service-account token (v1.20: a Secret made by the token controller).
    let token = wait_for(
        "service account token secret",
        Duration::from_secs(60),
        120,
        || {
            let o = env.kc(&[
                "-n",
                "kubepki-system",
                "get",
                "secrets",
                "-o",
                "jsonpath={.items[?(@.type==\"kubernetes.io/service-account-token\")].data.token}",
            ]);
            let t = stdout(&o);
            (o.status.success() && !t.trim().is_empty()).then(|| t.trim().to_string())
        },
    );
    use base64::Engine;
    let token = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(token.split_whitespace().next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let conf = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: sa\ncurrent-context: c\n",
        env.c.server(),
        env.ca().display()
    );
    write_file(&env.sa_conf, conf.as_bytes());
    // The token authenticates as the service account, with none of the admin's rights.
    let o = kc(&env.sa_conf, &["auth", "can-i", "create", "secrets"]);
    assert_eq!(stdout(&o).trim(), "no", "{}", show(&o));
    // What it may do is proven by the phases below: they run on this token alone.
}

/// The bad requests phase 2 leaves pending.
fn early_bad() -> Vec<(Req, &'static str)> {
    vec![
        (
            node_req("early-cn-mismatch", "n1", Some("DNS:n2")).with_subject("system:node:n2"),
            "KubepkiCommonNameMismatch",
        ),
        (
            node_req("early-ip-not-node", "n1", Some("DNS:n1,IP:10.0.0.99")),
            "KubepkiIPNotNodeAddress",
        ),
        (
            node_req("early-rsa-1024", "n1", Some("DNS:n1")).with_key("-newkey rsa:1024"),
            "KubepkiKeyTooWeak",
        ),
    ]
}

impl Req {
    fn with_subject(mut self, cn: &str) -> Req {
        self.subject = format!("/O=system:nodes/CN={cn}");
        self
    }
    fn with_raw_subject(mut self, s: &str) -> Req {
        self.subject = s.into();
        self
    }
    fn with_key(mut self, k: &'static str) -> Req {
        self.key = k;
        self
    }
    fn with_usages(mut self, u: &[&'static str]) -> Req {
        self.usages = u.to_vec();
        self
    }
    fn requested_by(mut self, user: &str, groups: &[&str]) -> Req {
        self.as_user = Some((user.into(), groups.iter().map(|g| g.to_string()).collect()));
        self
    }
}

/// Phase 2: --no-deny. Returns the name of the valid request.
fn no_deny_phase(env: &mut Env) -> String {
    let (mut ctl, port) = env.controller("nodeny", &["--no-deny"]);
    wait_ready(env, &mut ctl, port);

    for (r, _) in early_bad() {
        env.create(&r);
    }
    // The valid request, made with n1's own client certificate (not impersonated).
    let valid = Req {
        as_user: None,
        ..node_req(
            "n1-serving",
            "n1",
            Some("DNS:n1,DNS:n1.lan,IP:10.0.0.1,IP:203.0.113.7,IP:fd00::1"),
        )
    };
    env.create(&valid);
    let cert = wait_issued(
        env,
        &mut ctl,
        "n1-serving",
        "n1-serving Approved and Issued",
    );
    let conds = env.conditions();
    let c = &conds["n1-serving"];
    assert_eq!(c.len(), 1, "n1-serving conditions: {c:?}");
    assert_eq!(
        (c[0].0.as_str(), c[0].1.as_str()),
        ("Approved", "KubepkiApproved")
    );
    let o = env.kc_ok(&[
        "get",
        "csr",
        "n1-serving",
        "-o",
        "jsonpath={.spec.username} {.spec.groups}",
    ]);
    assert!(o.starts_with("system:node:n1 "), "requester: {o}");
    let crt = verify_serving(env, "n1-serving", &cert);
    let text = stdout(&run_ok(
        Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(&crt),
    ));
    for want in [
        "CN = system:node:n1",
        "DNS:n1",
        "DNS:n1.lan",
        "IP Address:10.0.0.1",
        "IP Address:203.0.113.7",
        "IP Address:FD00:0:0:0:0:0:0:1",
    ] {
        assert!(text.contains(want), "issued cert lacks {want}:\n{text}");
    }

    // The bad ones were judged (the metric counts the skip) and left pending.
    wait_for(
        "3 skipped decisions in /metrics",
        Duration::from_secs(30),
        60,
        || {
            let m = env.metrics(port)?;
            (metric_sum(&m, "kubepki_csr_decisions_total", &["decision=\"skip\""]) >= 3.0)
                .then_some(())
        },
    );
    let conds = env.conditions();
    for (r, _) in early_bad() {
        assert!(
            conds[&r.name].is_empty(),
            "{} should be pending with --no-deny: {:?}",
            r.name,
            conds[&r.name]
        );
    }
    let m = env.metrics(port).unwrap();
    assert_eq!(
        metric_sum(
            &m,
            "kubepki_csr_decisions_total",
            &[
                "decision=\"approve\"",
                "signer=\"kubernetes.io/kubelet-serving\""
            ]
        ),
        1.0,
        "{m}"
    );

    // `csr list` shows each pending request with the rules' verdict and reason.
    let out = run_ok(
        kubepki()
            .args(["csr", "list", "--kubeconfig"])
            .arg(&env.super_admin)
            .args(["-o", "json"]),
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let row = |n: &str| {
        rows.iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("csr list lacks {n}: {rows:?}"))
    };
    assert_eq!(row("early-cn-mismatch")["verdict"], "deny");
    assert_eq!(row("early-cn-mismatch")["reasonCode"], "cn_mismatch");
    assert_eq!(
        row("early-ip-not-node")["reasonCode"],
        "ip_not_node_address"
    );
    assert!(
        row("early-ip-not-node")["reason"]
            .as_str()
            .unwrap()
            .contains("10.0.0.99 is not one of Node \"n1\"'s status.addresses")
    );
    assert_eq!(row("early-rsa-1024")["reasonCode"], "key_too_weak");
    assert!(
        rows.iter().all(|r| r["name"] != "n1-serving"),
        "decided requests are not listed without --all"
    );
    let text = stdout(&run_ok(
        kubepki()
            .args(["csr", "list", "--all", "--kubeconfig"])
            .arg(&env.super_admin),
    ));
    assert!(text.starts_with("NAME "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("n1-serving ") && l.contains("Approved,Issued")),
        "{text}"
    );

    // `csr approve` refuses what the rules reject, and says why.
    let o = run_fail(
        kubepki()
            .args(["csr", "approve", "early-cn-mismatch", "--kubeconfig"])
            .arg(&env.super_admin),
    );
    let err = stderr(&o);
    assert!(
        err.contains("refused")
            && err.contains(
                "common name \"system:node:n2\" is not the requester's name \"system:node:n1\""
            )
            && err.contains("--force"),
        "{err}"
    );
    assert!(env.conditions()["early-cn-mismatch"].is_empty());
    ctl.stop(Duration::from_secs(10));
    valid.name
}

/// Phase 3: every bad request denied with its reason.
fn matrix_phase(env: &mut Env, valid: &str) {
    let tampered = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/controller/tests/data/tampered.csr"),
    )
    .unwrap();
    let n1 = |name: &str, san: &str| node_req(name, "n1", Some(san));
    let both = [
        "digital signature",
        "key encipherment",
        "server auth",
        "client auth",
    ];
    let cases: Vec<(Req, &str)> = vec![
        // Identity.
        (
            n1("cn-other-node", "DNS:n2").with_subject("system:node:n2"),
            "KubepkiCommonNameMismatch",
        ),
        (
            n1("cn-no-prefix", "DNS:n1").with_subject("n1"),
            "KubepkiCommonNameMismatch",
        ),
        (
            n1("cn-upper-case", "DNS:n1").with_subject("system:node:N1"),
            "KubepkiCommonNameMismatch",
        ),
        (
            // kubelet-csr-approver: TestNonMatchingCommonNameUsername
            n1("cn-funny", "DNS:n1").with_subject("funny-common-name"),
            "KubepkiCommonNameMismatch",
        ),
        (
            node_req("requester-other-node", "n1", Some("DNS:n1"))
                .requested_by("system:node:n2", &["system:nodes"]),
            "KubepkiCommonNameMismatch",
        ),
        (
            n1("requester-alice", "DNS:n1").requested_by("alice", &[]),
            "KubepkiRequesterNotNode",
        ),
        (
            n1("requester-node-name-without-group", "DNS:n1").requested_by("system:node:n1", &[]),
            "KubepkiRequesterNotNode",
        ),
        (
            // kubelet-csr-approver: the service-account requester (their commented-out test)
            n1("requester-serviceaccount", "DNS:n1")
                .requested_by(
                    "system:serviceaccount:default:stackgres-operator-init",
                    &["system:serviceaccounts"],
                )
                .with_subject("system:serviceaccount:default:stackgres-operator-init"),
            "KubepkiRequesterNotNode",
        ),
        (
            n1("requester-masters", "DNS:n1").requested_by("system:node:n1", &["system:masters"]),
            "KubepkiRequesterNotNode",
        ),
        // Organization.
        (
            n1("o-masters", "DNS:n1").with_raw_subject("/O=system:masters/CN=system:node:n1"),
            "KubepkiOrganization",
        ),
        (
            n1("o-missing", "DNS:n1").with_raw_subject("/CN=system:node:n1"),
            "KubepkiOrganization",
        ),
        (
            n1("o-extra", "DNS:n1")
                .with_raw_subject("/O=system:nodes/O=system:masters/CN=system:node:n1"),
            "KubepkiOrganization",
        ),
        // Usages.
        (
            n1("usage-client-auth", "DNS:n1").with_usages(&[
                "digital signature",
                "key encipherment",
                "client auth",
            ]),
            "KubepkiUsages",
        ),
        (
            n1("usage-extra", "DNS:n1").with_usages(&both),
            "KubepkiUsages",
        ),
        (
            n1("usage-no-digital-signature", "DNS:n1")
                .with_usages(&["key encipherment", "server auth"]),
            "KubepkiUsages",
        ),
        // SAN kinds.
        (node_req("no-sans", "n1", None), "KubepkiNoSubjectAltNames"),
        (
            n1("email-san", "DNS:n1,email:root@n1.lan"),
            "KubepkiEmailSAN",
        ),
        (
            n1("uri-san", "DNS:n1,URI:spiffe://cluster/n1"),
            "KubepkiURISAN",
        ),
        // DNS SANs.
        (n1("dns-other-node", "DNS:n2"), "KubepkiDNSNotNodeName"),
        (
            n1("dns-prefix-only", "DNS:n1.evil.example"),
            "KubepkiDNSNotNodeName",
        ),
        (n1("dns-prefix-suffix", "DNS:n1x"), "KubepkiDNSNotNodeName"),
        (n1("dns-wildcard", "DNS:*.n1.lan"), "KubepkiDNSNotNodeName"),
        (
            n1("dns-localhost", "DNS:n1,DNS:localhost"),
            "KubepkiDNSNotNodeName",
        ),
        (
            n1("dns-ip-as-name", "DNS:10.0.0.1"),
            "KubepkiDNSNotNodeName",
        ),
        (
            // kubelet-csr-approver: TestRegexCheckActiveWithBypass (second name shares the prefix)
            node_req("dns-second-name-evil", "a", Some("DNS:a,DNS:auth.evil.io")),
            "KubepkiDNSNotNodeName",
        ),
        (
            // kubelet-csr-approver: TestInvalidDNSName
            n1("dns-fishing", "DNS:fishing.google.com"),
            "KubepkiDNSNotNodeName",
        ),
        (
            // kubelet-csr-approver: TestInvalidRegexName
            n1("dns-phishing", "DNS:n1.phishingTemptative.ch"),
            "KubepkiDNSNotNodeName",
        ),
        (
            // kubelet-csr-approver: TestUnresolvedDNSName (a name the Node does not have)
            node_req(
                "dns-unresolved",
                "unresolved",
                Some("DNS:unresolved.test.ch"),
            ),
            "KubepkiDNSNotNodeName",
        ),
        // IP SANs.
        (
            n1("ip-not-node", "DNS:n1,IP:10.0.0.99"),
            "KubepkiIPNotNodeAddress",
        ),
        (
            n1("ip-of-other-node", "DNS:n1,IP:10.0.0.2"),
            "KubepkiIPNotNodeAddress",
        ),
        (n1("ip-loopback", "IP:127.0.0.1"), "KubepkiIPNotNodeAddress"),
        (
            n1("ip-v6-not-node", "IP:fd00::2"),
            "KubepkiIPNotNodeAddress",
        ),
        (
            // kubelet-csr-approver: TestMismatchedResolvedIpsSANIps / TestIPv4NotWhitelisted
            n1("ip-9-9-9-9", "DNS:n1,IP:9.9.9.9"),
            "KubepkiIPNotNodeAddress",
        ),
        (
            // kubelet-csr-approver: TestIPv6NotWhitelisted / TestIPv6WithoutDNSNotWhitelisted
            n1("ip-v6-foreign", "IP:2001:c0fe:beef::14"),
            "KubepkiIPNotNodeAddress",
        ),
        // Node object.
        (
            node_req("node-missing", "ghost", Some("DNS:ghost")),
            "KubepkiNodeNotFound",
        ),
        // Keys.
        (
            n1("key-rsa-1024", "DNS:n1").with_key("-newkey rsa:1024"),
            "KubepkiKeyTooWeak",
        ),
        (
            n1("key-p224", "DNS:n1").with_key("-newkey ec -pkeyopt ec_paramgen_curve:P-224"),
            "KubepkiKeyType",
        ),
        // Two pending requests from one node: the second is a duplicate.
        (
            node_req("dup-b", "ndup", Some("DNS:ndup")),
            "KubepkiDuplicate",
        ),
    ];
    assert!(cases.len() >= 30, "{} cases", cases.len());
    // Malformed requests (a bad self-signature, garbage) never reach a controller on this API
    // server: it refuses them at creation. The rules' own handling is in the unit tests.
    for (name, pem) in [
        ("malformed-signature", tampered),
        (
            "malformed-garbage",
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_vec(),
        ),
    ] {
        let r = Req {
            pem: Some(pem),
            ..n1(name, "DNS:n1")
        };
        let o = env.try_create(&r);
        assert!(
            !o.status.success() && stderr(&o).contains("spec.request: Invalid value"),
            "the API server should refuse {name}\n{}",
            show(&o)
        );
    }
    // The older of the duplicate pair, and a request for another signer (not ours: left alone).
    env.create(&node_req("dup-a", "ndup", Some("DNS:ndup,IP:10.0.0.5")));
    std::thread::sleep(Duration::from_millis(1100)); // creation times have 1 s resolution
    for (r, _) in &cases {
        env.create(r);
    }
    let other_signer = Req {
        signer: "example.com/not-kubelet-serving",
        ..n1("other-signer", "DNS:n1")
    };
    env.create(&other_signer);

    let (mut ctl, port) = env.controller("matrix", &[]);
    let mut all: Vec<(String, &str)> = cases
        .iter()
        .map(|(r, reason)| (r.name.clone(), *reason))
        .collect();
    for (r, reason) in early_bad() {
        all.push((r.name, reason));
    }
    let conds = wait_for(
        "every request decided",
        Duration::from_secs(90),
        180,
        || {
            assert_running(&mut ctl);
            let c = env.conditions();
            let done = all.iter().all(|(n, _)| !c[n].is_empty()) && !c["dup-a"].is_empty();
            done.then_some(c)
        },
    );
    let mut wrong = Vec::new();
    for (name, reason) in &all {
        let c = &conds[name];
        if c.len() != 1
            || c[0].0 != "Denied"
            || c[0].1 != *reason
            || !c[0].2.starts_with("kubepki: ")
        {
            wrong.push(format!("{name}: expected Denied/{reason}, got {c:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong decisions:\n{}", wrong.join("\n"));
    let c = &conds["dup-a"];
    assert!(c.len() == 1 && c[0].0 == "Approved", "dup-a: {c:?}");
    assert!(
        conds["dup-b"][0].2.contains("dup-a"),
        "dup-b names the request it duplicates: {:?}",
        conds["dup-b"]
    );
    assert_eq!(conds[valid].len(), 1, "the valid request was decided once");
    // Not our signer: untouched (nothing else approves it in this cluster either).
    std::thread::sleep(Duration::from_secs(1));
    assert!(env.conditions()["other-signer"].is_empty());
    // Some reasons in full, as a human reads them in `kubectl describe csr`.
    let msg = |n: &str| conds[n][0].2.clone();
    assert_eq!(
        msg("dns-prefix-only"),
        "kubepki: DNS name \"n1.evil.example\" is neither Node \"n1\"'s name nor one of its Hostname/InternalDNS/ExternalDNS addresses"
    );
    assert_eq!(
        msg("node-missing"),
        "kubepki: no Node object named \"ghost\" exists"
    );
    assert_eq!(
        msg("key-rsa-1024"),
        "kubepki: the request's key is RSA-1024; RSA keys need at least 2048 bits"
    );

    // Every decision is an Event on its request (recorded just after the decision, off its
    // path: allow a few seconds), and a metric.
    let events_of = |name: &str| {
        let selector = format!("involvedObject.name={name}");
        env.kc_ok(&[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            &selector,
            "-o",
            "jsonpath={.items[*].reason}",
        ])
    };
    for (name, reason) in [("usage-extra", "Denied"), ("dup-a", "Approved")] {
        let mut ev = String::new();
        for _ in 0..40 {
            ev = events_of(name);
            if ev.contains(reason) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(ev.contains(reason), "events for {name}: {ev:?}");
    }
    let m = env.metrics(port).expect("metrics");
    let denied = metric_sum(&m, "kubepki_csr_decisions_total", &["decision=\"deny\""]);
    assert_eq!(
        denied as usize,
        all.len(),
        "deny decisions in /metrics:\n{m}"
    );
    assert_eq!(
        metric_sum(&m, "kubepki_csr_decisions_total", &["reason=\"usages\""]),
        3.0,
        "{m}"
    );
    assert_eq!(metric_sum(&m, "kubepki_csr_queue_depth", &[]), 0.0, "{m}");
    assert_eq!(metric_sum(&m, "kubepki_leader", &[]), 1.0, "{m}");
    ctl.stop(Duration::from_secs(10));
}

/// Phase 4: two replicas, one Lease; one decision per request.
fn leader_phase(env: &mut Env) {
    let flags = [
        "--leader-elect-lease-duration",
        "4s",
        "--leader-elect-renew-grace",
        "2s",
    ];
    let (mut r1, p1) = env.controller("replica-1", &flags);
    let (mut r2, p2) = env.controller("replica-2", &flags);
    wait_ready(env, &mut r1, p1);
    wait_ready(env, &mut r2, p2);
    let leader_of = |env: &Env| {
        let l1 = env
            .metrics(p1)
            .map(|m| metric_sum(&m, "kubepki_leader", &[]));
        let l2 = env
            .metrics(p2)
            .map(|m| metric_sum(&m, "kubepki_leader", &[]));
        (l1, l2)
    };
    let first = wait_for(
        "a leader",
        Duration::from_secs(30),
        60,
        || match leader_of(env) {
            (Some(a), Some(b)) if a + b == 1.0 => Some(if a == 1.0 { 1 } else { 2 }),
            _ => None,
        },
    );
    let names: Vec<String> = (0..LEADER_NODES).map(|i| format!("leader-l{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        env.create(&node_req(
            name,
            &format!("l{i}"),
            Some(&format!("DNS:l{i},IP:10.1.0.{}", i + 1)),
        ));
    }
    let approved_everywhere = |env: &Env, names: &[String]| {
        let c = env.conditions();
        names
            .iter()
            .all(|n| c[n].iter().any(|x| x.0 == "Approved"))
            .then_some(c)
    };
    let conds = wait_for("20 approvals", Duration::from_secs(60), 120, || {
        assert_running(&mut r1);
        assert_running(&mut r2);
        approved_everywhere(env, &names)
    });
    for n in &names {
        assert_eq!(
            conds[n].len(),
            1,
            "{n}: exactly one decision: {:?}",
            conds[n]
        );
    }
    let approvals = |port: u16| {
        env.metrics(port)
            .map(|m| metric_sum(&m, "kubepki_csr_decisions_total", &["decision=\"approve\""]))
            .unwrap_or(0.0)
    };
    let (a1, a2) = (approvals(p1), approvals(p2));
    let (leader_n, follower_n) = if first == 1 { (a1, a2) } else { (a2, a1) };
    assert_eq!(
        (leader_n, follower_n),
        (LEADER_NODES as f64, 0.0),
        "approvals by leader and follower"
    );

    // Kill the leader outright (no lease release): the follower takes over after the lease
    // runs out and decides what comes next.
    let (dead, survivor, sp) = if first == 1 {
        (&mut r1, &mut r2, p2)
    } else {
        (&mut r2, &mut r1, p1)
    };
    let pid = nix::unistd::Pid::from_raw(dead.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    dead.stop(Duration::from_secs(5));
    wait_for(
        "the follower takes over",
        Duration::from_secs(30),
        60,
        || {
            assert_running(survivor);
            env.metrics(sp)
                .map(|m| metric_sum(&m, "kubepki_leader", &[]) == 1.0)
                .unwrap_or(false)
                .then_some(())
        },
    );
    let more: Vec<String> = (0..5).map(|i| format!("after-failover-l{i}")).collect();
    for (i, n) in more.iter().enumerate() {
        env.create(&node_req(n, &format!("l{i}"), Some(&format!("DNS:l{i}"))));
    }
    let conds = wait_for(
        "5 approvals after failover",
        Duration::from_secs(60),
        120,
        || {
            assert_running(survivor);
            approved_everywhere(env, &more)
        },
    );
    for n in more.iter().chain(&names) {
        assert_eq!(
            conds[n].len(),
            1,
            "{n}: exactly one decision: {:?}",
            conds[n]
        );
    }
    assert_eq!(approvals(sp), 5.0, "the survivor decided the new requests");
}

/// Phase 5: no controller-manager; `--sign` issues what it approves, with the extra RBAC of
/// deploy/signing-rbac.yaml.
fn signing_phase(env: &mut Env) {
    if let Some(mut kcm) = env.c.kcm.take() {
        kcm.stop(Duration::from_secs(10));
    }
    let signing = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/signing-rbac.yaml");
    env.kc_ok(&["apply", "-f", signing.to_str().unwrap()]);
    let (ca_crt, ca_key) = (env.c.pki("ca.crt"), env.c.pki("ca.key"));
    let (mut ctl, port) = env.controller(
        "signer",
        &[
            "--sign",
            "--ca-cert",
            ca_crt.to_str().unwrap(),
            "--ca-key",
            ca_key.to_str().unwrap(),
            "--signing-duration",
            "720h",
        ],
    );
    wait_ready(env, &mut ctl, port);
    env.create(&node_req(
        "signed-by-kubepki",
        "n2",
        Some("DNS:n2,IP:10.0.0.2"),
    ));
    let cert = wait_issued(
        env,
        &mut ctl,
        "signed-by-kubepki",
        "signed-by-kubepki issued by the controller",
    );
    let crt = verify_serving(env, "signed-by-kubepki", &cert);
    let text = stdout(&run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&crt),
    ));
    for want in [
        "Subject: O = system:nodes, CN = system:node:n2",
        "DNS:n2, IP Address:10.0.0.2",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(want), "issued cert lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");
    let m = env.metrics(port).unwrap();
    assert_eq!(metric_sum(&m, "kubepki_csr_signed_total", &[]), 1.0, "{m}");
    ctl.stop(Duration::from_secs(10));
}
