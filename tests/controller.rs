//! `kubepki controller` against a real kube-apiserver and kube-controller-manager v1.20.2 on a
//! PKI made by `kubepki init`, running with only the RBAC of deploy/kubepki-controller.yaml
//! (the service account's own token).
//!
//! Phases, on one cluster (starting it is the slow part):
//! 1. the deploy manifests pass `kubectl apply --dry-run=server`, then are applied;
//! 2. `--no-deny`: a node's own request (made with its own client certificate) ends Approved
//!    and Issued by the real controller-manager and verifies against ca.crt; bad requests stay
//!    pending; `kubepki csr list` gives their verdicts and `kubepki csr approve` refuses them;
//! 3. with the controller stopped, the bad-request matrix (and a duplicate pair) is created:
//!    among it, requests whose spec.request hides a second node's request behind n1's (text
//!    before it, two blocks, trailing junk), and one from a Node being deleted; a normal
//!    controller then denies each with the expected reason, records Events and counts its
//!    decisions in /metrics; the controller-manager never issues a certificate for a name the
//!    requester does not own;
//! 4. two replicas with leader election: every request gets exactly one decision, from one
//!    replica; when the leader is killed the other takes over;
//! 5. a leader cut off from the API server (a TCP proxy that stops passing bytes) stops
//!    reconciling before the other replica takes over; a replica that starts while the API
//!    server is unreachable waits, not ready, and recovers; a standby does not take a lease
//!    that is renewed, however old its renewTime looks to its clock;
//! 6. with the controller-manager stopped, `--sign` without its RBAC counts the refused write
//!    (kubepki_api_errors_total, kubepki_reconcile_errors_total); with it, it issues the
//!    certificate itself, refuses to sign what an admin approved but the rules refuse (as the
//!    built-in signer does: Failed), and signs nothing once its CA has expired.
//!
//! Everything listens on 127.0.0.40; every process is stopped by PID; every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::proxy::{Mode, TcpProxy};
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
    NodeSpec {
        name: "ndel",
        addresses: &[("InternalIP", "10.0.0.7"), ("Hostname", "ndel")],
    },
];

/// A Node with a finalizer: deleted in phase 3, it lingers with a deletionTimestamp.
const LINGERING: &str = "ndel";

/// Leader election fast enough for a test: a 4 s lease, a 3 s renew deadline, 0.5 s rounds.
const FAST_ELECTION: [&str; 6] = [
    "--leader-elect-lease-duration",
    "4s",
    "--leader-elect-renew-deadline",
    "3s",
    "--leader-elect-retry-period",
    "500ms",
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

/// CSR name → its conditions as (type, reason, message).
type Conditions = BTreeMap<String, Vec<(String, String, String)>>;

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
            None => self.openssl_csr(&r.name, r.key, &r.subject, r.san.as_deref()),
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

    /// A key and PKCS#10 request made by openssl (`work/<name>.key`, `.csr`); returns the PEM.
    fn openssl_csr(&self, name: &str, key: &str, subject: &str, san: Option<&str>) -> Vec<u8> {
        let key_file = self.work.join(format!("{name}.key"));
        let csr = self.work.join(format!("{name}.csr"));
        let san = san
            .map(|s| format!("-addext 'subjectAltName={s}'"))
            .unwrap_or_default();
        run_ok(Command::new("sh").arg("-c").arg(format!(
            "openssl req -new {key} -nodes -keyout {} -subj '{subject}' {san} -out {}",
            key_file.display(),
            csr.display()
        )));
        std::fs::read(&csr).unwrap()
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
    fn conditions(&self) -> Conditions {
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
        self.controller_via(&self.sa_conf, tag, extra)
    }

    /// A controller with the service account's token, reaching the API server through `conf`
    /// (a proxy's address, say), with FAST_ELECTION and then `extra`.
    fn controller_via(&self, conf: &Path, tag: &str, extra: &[&str]) -> (Proc, u16) {
        let port = free_port(self.c.ip);
        let mut cmd = kubepki();
        cmd.arg("controller")
            .arg("--kubeconfig")
            .arg(conf)
            .arg("--metrics-bind-address")
            .arg(format!("{}:{port}", self.c.ip))
            .arg("--health-probe-bind-address")
            .arg("0")
            .args(["--leader-elect-resource-namespace", "kubepki-system"])
            .args(["--identity", tag])
            .args(FAST_ELECTION)
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

/// Waits (30 s at most, the controller still running) until the samples of `name` with
/// `filters` add up to `min` or more in its /metrics; returns that scrape.
fn wait_metric(
    env: &Env,
    ctl: &mut Proc,
    port: u16,
    name: &str,
    filters: &[&str],
    min: f64,
) -> String {
    wait_for(
        &format!("{name} {filters:?} >= {min} in /metrics"),
        Duration::from_secs(30),
        60,
        || {
            assert_running(ctl);
            let m = env.metrics(port)?;
            (metric_sum(&m, name, filters) >= min).then_some(m)
        },
    )
}

/// The Events on CSR `name`, one `reason: message` a line.
fn events_of(env: &Env, name: &str) -> String {
    let selector = format!("involvedObject.name={name}");
    env.kc_ok(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &selector,
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

/// Waits (bounded: 10 s; Events are recorded just after a decision, off its path) for an Event
/// with `reason` on CSR `name`; returns every Event on it.
fn wait_event(env: &Env, name: &str, reason: &str) -> String {
    let prefix = format!("{reason}: ");
    let mut ev = String::new();
    for _ in 0..40 {
        ev = events_of(env, name);
        if ev.lines().any(|l| l.starts_with(&prefix)) {
            return ev;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no {reason} Event on {name}: {ev:?}");
}

/// CSR `name`'s `.status.certificate` (base64; empty when none).
fn certificate(env: &Env, name: &str) -> String {
    env.kc_ok(&["get", "csr", name, "-o", "jsonpath={.status.certificate}"])
}

/// A replica's `kubepki_leader` (None: its metrics do not answer).
fn leader(env: &Env, port: u16) -> Option<f64> {
    env.metrics(port)
        .map(|m| metric_sum(&m, "kubepki_leader", &[]))
}

/// How many approvals a replica wrote.
fn approvals(env: &Env, port: u16) -> f64 {
    env.metrics(port)
        .map(|m| metric_sum(&m, "kubepki_csr_decisions_total", &["decision=\"approve\""]))
        .unwrap_or(0.0)
}

/// Every CSR's conditions once all of `names` are Approved (None: not yet).
fn all_approved(env: &Env, names: &[String]) -> Option<Conditions> {
    let c = env.conditions();
    names
        .iter()
        .all(|n| c[n].iter().any(|x| x.0 == "Approved"))
        .then_some(c)
}

fn assert_one_decision_each<'a>(conds: &Conditions, names: impl IntoIterator<Item = &'a String>) {
    for n in names {
        assert_eq!(
            conds[n].len(),
            1,
            "{n}: exactly one decision: {:?}",
            conds[n]
        );
    }
}

/// Valid requests `<prefix>-l<i>` from leader-phase nodes l<i>, i in `nodes`; their names.
fn leader_node_reqs(env: &Env, prefix: &str, nodes: std::ops::Range<usize>) -> Vec<String> {
    nodes
        .map(|i| {
            let name = format!("{prefix}-l{i}");
            env.create(&node_req(
                &name,
                &format!("l{i}"),
                Some(&format!("DNS:l{i},IP:10.1.0.{}", i + 1)),
            ));
            name
        })
        .collect()
}

/// The body of a replica's /readyz (None: it does not answer).
fn readyz(env: &Env, port: u16) -> Option<String> {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "2"])
        .arg(format!("http://{}:{port}/readyz", env.c.ip))
        .output()
        .ok()?;
    o.status.success().then(|| stdout(&o))
}

/// `kubepki csr list -o json` (with `--all`: decided requests too), as super-admin.
fn csr_list(env: &Env, all: bool) -> Vec<serde_json::Value> {
    let mut cmd = kubepki();
    cmd.args(["csr", "list", "-o", "json", "--kubeconfig"])
        .arg(&env.super_admin);
    if all {
        cmd.arg("--all");
    }
    let out = run_ok(&mut cmd);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().clone()
}

fn row_of<'a>(rows: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("csr list lacks {name}: {rows:?}"))
}

/// Every certificate any CSR was ever issued names its requester and nothing of the API
/// server's: a CN that is the CSR's spec.username, no `kubernetes.default.svc` SAN. Returns how
/// many certificates were checked.
fn assert_no_foreign_certificates(env: &Env) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&env.kc_ok(&["get", "csr", "-o", "json"])).unwrap();
    let mut checked = 0;
    for item in v["items"].as_array().unwrap() {
        let Some(cert) = item["status"]["certificate"].as_str() else {
            continue;
        };
        let name = item["metadata"]["name"].as_str().unwrap();
        let user = item["spec"]["username"].as_str().unwrap_or("");
        let text = subject_and_sans(&write_issued(env, &format!("issued-{name}"), cert));
        assert!(
            text.contains(&format!("CN = {user}\n")) || text.contains(&format!("CN = {user},")),
            "{name}: issued to someone other than its requester {user}:\n{text}"
        );
        assert!(
            !text.contains("kubernetes.default.svc"),
            "{name}: issued for the API server's name:\n{text}"
        );
        checked += 1;
    }
    checked
}

fn wait_ready(env: &Env, p: &mut Proc, port: u16) {
    wait_for(
        &format!("{} /readyz", p.name),
        Duration::from_secs(30),
        120,
        || {
            assert_running(p);
            (readyz(env, port)? == "ok").then_some(())
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
    let crt = write_issued(env, name, cert_b64);
    assert_server_cert_of(&env.ca(), &crt);
    crt
}

/// Writes a CSR's `.status.certificate` (base64 PEM) to `work/<name>.crt`; returns the file.
fn write_issued(env: &Env, name: &str, cert_b64: &str) -> PathBuf {
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(cert_b64.trim())
        .unwrap();
    let crt = env.work.join(format!("{name}.crt"));
    write_file(&crt, &pem);
    crt
}

/// openssl says `crt` is a server certificate issued by `ca`.
fn assert_server_cert_of(ca: &Path, crt: &Path) {
    let o = run_ok(
        Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(ca)
            .arg(crt),
    );
    assert!(stdout(&o).contains(": OK"), "{}", stdout(&o));
}

/// openssl's `-subject` and `subjectAltName` lines of a certificate file.
fn subject_and_sans(crt: &Path) -> String {
    stdout(&run_ok(
        Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(crt),
    ))
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
    partition_phase(env);
    unreachable_start_phase(env);
    skew_phase(env);
    signing_phase(env);
    assert_no_foreign_certificates(env);
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
        .map(|(n, _)| {
            let finalizer = if n == LINGERING {
                "    finalizers: [kubepki.test/keep]\n"
            } else {
                ""
            };
            format!("- apiVersion: v1\n  kind: Node\n  metadata:\n    name: {n}\n{finalizer}")
        })
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
    let text = subject_and_sans(&crt);
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
    wait_metric(
        env,
        &mut ctl,
        port,
        "kubepki_csr_decisions_total",
        &["decision=\"skip\""],
        3.0,
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
    // Left pending, and counted so; only the approval written was timed.
    assert_eq!(
        metric_sum(&m, "kubepki_csr_pending", &[]),
        early_bad().len() as f64,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "kubepki_csr_decision_duration_seconds_count", &[]),
        1.0,
        "{m}"
    );

    // `csr list` shows each pending request with the rules' verdict and reason.
    let rows = csr_list(env, false);
    let row = |n: &str| row_of(&rows, n);
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
    // spec.request with n1's honest request A and, after it, n2's request B for the API
    // server's name. Go's PEM decoder (the API server's, the controller-manager's) skips text
    // before a block only up to a newline: with anything else in front of A, it reads B.
    let a = env.openssl_csr(
        "envelope-a",
        EC,
        "/O=system:nodes/CN=system:node:n1",
        Some("DNS:n1,IP:10.0.0.1"),
    );
    let b = env.openssl_csr(
        "envelope-b",
        EC,
        "/O=system:nodes/CN=system:node:n2",
        Some("DNS:n2,DNS:kubernetes.default.svc,IP:10.0.0.6"),
    );
    // Made with n1's own client certificate, as its kubelet would.
    let envelope = |name: &str, parts: &[&[u8]]| Req {
        as_user: None,
        pem: Some(parts.concat()),
        ..node_req(name, "n1", None)
    };
    let envelopes = [
        envelope("pem-space-first", &[b" ", &a, &b]),
        envelope("pem-text-first", &[b"some text ", &a, &b]),
        envelope("pem-two-blocks", &[&a, &b]),
        envelope("pem-trailing-junk", &[&a, b"trailing junk\n"]),
    ];
    // A Node being deleted (its finalizer keeps it, with a deletionTimestamp).
    env.kc_ok(&["delete", "node", LINGERING, "--wait=false"]);
    let ts = env.kc_ok(&[
        "get",
        "node",
        LINGERING,
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.trim().is_empty(), "{LINGERING} lingers while deleted");
    let mut cases: Vec<(Req, &str)> = vec![
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
        (
            node_req(
                "node-being-deleted",
                LINGERING,
                Some("DNS:ndel,IP:10.0.0.7"),
            ),
            "KubepkiNodeBeingDeleted",
        ),
    ];
    for r in &envelopes {
        cases.push((r.clone(), "KubepkiPemEnvelope"));
    }
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
    // The API server took every envelope (it reads one block and checks only that); the requester
    // of each is n1, and `csr list` already says what the controller will do.
    let rows = csr_list(env, false);
    for r in &envelopes {
        let row = row_of(&rows, &r.name);
        assert_eq!(row["requestor"], "system:node:n1", "{row}");
        assert_eq!(
            (&row["verdict"], &row["reasonCode"]),
            (&"deny".into(), &"pem_envelope".into()),
            "{row}"
        );
    }
    assert_eq!(
        row_of(&rows, "node-being-deleted")["reasonCode"],
        "node_being_deleted"
    );

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
    for (name, reason) in [("usage-extra", "Denied"), ("dup-a", "Approved")] {
        wait_event(env, name, reason);
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
    assert_eq!(metric_sum(&m, "kubepki_csr_pending", &[]), 0.0, "{m}");
    assert_eq!(metric_sum(&m, "kubepki_leader", &[]), 1.0, "{m}");
    // Every decision written was timed, from first seeing the request to writing its decision.
    let written = denied + metric_sum(&m, "kubepki_csr_decisions_total", &["decision=\"approve\""]);
    assert_eq!(
        metric_sum(&m, "kubepki_csr_decision_duration_seconds_count", &[]),
        written,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "kubepki_csr_decision_duration_seconds_bucket",
            &["le=\"+Inf\""]
        ),
        written,
        "{m}"
    );
    assert!(
        metric_sum(&m, "kubepki_csr_decision_duration_seconds_sum", &[]) > 0.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "kubepki_reconcile_errors_total", &[]),
        0.0,
        "{m}"
    );
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        metric_sum(&m, "kubepki_build_info", &[&version]),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "kubepki_csr_decisions_total",
            &["reason=\"pem_envelope\""]
        ),
        envelopes.len() as f64,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "kubepki_csr_decisions_total",
            &["reason=\"node_being_deleted\""]
        ),
        1.0,
        "{m}"
    );
    // The envelopes: denied, so never issued (the controller-manager signs what is approved, at
    // once: give it a moment), and `csr list --all` shows why.
    std::thread::sleep(Duration::from_secs(2));
    let rows = csr_list(env, true);
    for r in &envelopes {
        let row = row_of(&rows, &r.name);
        assert_eq!(row["condition"], "Denied", "{row}");
        assert_eq!(row["reasonCode"], "pem_envelope", "{row}");
    }
    let issued = assert_no_foreign_certificates(env);
    assert!(issued >= 2, "n1-serving and dup-a were issued: {issued}");
    ctl.stop(Duration::from_secs(10));
}

/// Phase 4: two replicas, one Lease; one decision per request.
fn leader_phase(env: &mut Env) {
    let (mut r1, p1) = env.controller("replica-1", &[]);
    let (mut r2, p2) = env.controller("replica-2", &[]);
    wait_ready(env, &mut r1, p1);
    wait_ready(env, &mut r2, p2);
    let leader_of = |env: &Env| (leader(env, p1), leader(env, p2));
    let first = wait_for(
        "a leader",
        Duration::from_secs(30),
        60,
        || match leader_of(env) {
            (Some(a), Some(b)) if a + b == 1.0 => Some(if a == 1.0 { 1 } else { 2 }),
            _ => None,
        },
    );
    let names = leader_node_reqs(env, "leader", 0..LEADER_NODES);
    let conds = wait_for("20 approvals", Duration::from_secs(60), 120, || {
        assert_running(&mut r1);
        assert_running(&mut r2);
        all_approved(env, &names)
    });
    assert_one_decision_each(&conds, &names);
    let (a1, a2) = (approvals(env, p1), approvals(env, p2));
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
            (leader(env, sp) == Some(1.0)).then_some(())
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
            all_approved(env, &more)
        },
    );
    assert_one_decision_each(&conds, more.iter().chain(&names));
    assert_eq!(
        approvals(env, sp),
        5.0,
        "the survivor decided the new requests"
    );
}

/// Phase 6: no controller-manager; `--sign` issues what it approves, with the extra RBAC of
/// deploy/signing-rbac.yaml. It signs nothing the rules refuse, even when an admin approved it
/// (the built-in signer's way: a Failed condition), and nothing once its CA has expired.
fn signing_phase(env: &mut Env) {
    if let Some(mut kcm) = env.c.kcm.take() {
        kcm.stop(Duration::from_secs(10));
    }
    // A CA that expires while its controller runs (made now: its clock starts now).
    let short = env.work.join("short-lived-ca");
    init_ecdsa(
        &short,
        "short",
        &env.c.ip.to_string(),
        &["--ca-validity", "25s", "--cert-validity", "20s"],
    );
    // Without deploy/signing-rbac.yaml, --sign approves but may not write the certificate: a
    // failed API call, and a reconcile that ends in an error (retried).
    let (mut ctl, port) = signer(env, "signer-no-rbac", &env.c.dir.join("pki"), &[]);
    env.create(&node_req("sign-forbidden", "n2", Some("DNS:n2")));
    let m = wait_metric(
        env,
        &mut ctl,
        port,
        "kubepki_reconcile_errors_total",
        &[],
        1.0,
    );
    assert!(
        metric_sum(&m, "kubepki_api_errors_total", &["operation=\"sign\""]) >= 1.0,
        "{m}"
    );
    assert_eq!(metric_sum(&m, "kubepki_csr_signed_total", &[]), 0.0, "{m}");
    assert!(certificate(env, "sign-forbidden").is_empty());
    ctl.stop(Duration::from_secs(10));
    env.kc_ok(&["delete", "csr", "sign-forbidden"]);

    let signing = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/signing-rbac.yaml");
    env.kc_ok(&["apply", "-f", signing.to_str().unwrap()]);

    // An admin approves a kubelet-serving request for the API server's identity in
    // system:masters (created and approved before the controller runs, so it cannot deny it).
    let masters = Req {
        as_user: Some(("kubernetes-admin".into(), vec!["system:masters".into()])),
        subject: "/O=system:masters/CN=kube-apiserver".into(),
        ..node_req(
            "masters-approved-by-admin",
            "n1",
            Some("DNS:kubernetes.default.svc"),
        )
    };
    env.create(&masters);
    env.kc_ok(&["certificate", "approve", &masters.name]);

    let (mut ctl, port) = signer(
        env,
        "signer",
        &env.c.dir.join("pki"),
        &["--signing-duration", "720h"],
    );
    let failed = wait_for(
        "the admin-approved request marked Failed",
        Duration::from_secs(30),
        60,
        || {
            assert_running(&mut ctl);
            let issued = certificate(env, &masters.name);
            assert!(issued.is_empty(), "signed what the rules refuse: {issued}");
            env.conditions()[&masters.name]
                .iter()
                .find(|c| c.0 == "Failed")
                .cloned()
        },
    );
    assert_eq!(failed.1, "SignerValidationFailure", "{failed:?}");
    assert!(
        failed
            .2
            .starts_with("kubepki will not sign (requester_not_node): requester \"kubernetes-admin\" is not a node"),
        "{failed:?}"
    );
    let ev = wait_event(env, &masters.name, "SignRefused");
    assert!(ev.contains("requester_not_node"), "{ev}");

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
    assert_eq!(
        metric_sum(
            &m,
            "kubepki_csr_sign_refusals_total",
            &["reason=\"requester_not_node\""]
        ),
        1.0,
        "{m}"
    );
    // Never signed, and shown as Approved and Failed.
    let row = row_of(&csr_list(env, true), &masters.name).clone();
    assert_eq!(row["condition"], "Approved,Failed", "{row}");
    ctl.stop(Duration::from_secs(10));

    short_lived_ca(env, &short.join("pki"));
}

/// A ready `--sign` controller signing with `pki`'s ca.crt and ca.key.
fn signer(env: &Env, tag: &str, pki: &Path, extra: &[&str]) -> (Proc, u16) {
    let (crt, key) = (pki.join("ca.crt"), pki.join("ca.key"));
    let mut args = vec![
        "--sign",
        "--ca-cert",
        crt.to_str().unwrap(),
        "--ca-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (mut ctl, port) = env.controller(tag, &args);
    wait_ready(env, &mut ctl, port);
    (ctl, port)
}

/// A controller whose CA expires while it runs: it signs with notAfter clamped to the CA's
/// until then, and refuses afterwards (no certificate, a Warning Event, a metric), leaving the
/// request approved and unsigned for a controller with a valid CA.
fn short_lived_ca(env: &mut Env, pki: &Path) {
    let ca_crt = pki.join("ca.crt");
    let (mut ctl, port) = signer(env, "short-lived-ca", pki, &[]);
    env.create(&node_req("short-ca-before", "n2", Some("DNS:n2")));
    let cert = wait_issued(
        env,
        &mut ctl,
        "short-ca-before",
        "signed before the CA expired",
    );
    let crt = write_issued(env, "short-ca-before", &cert);
    let end = |f: &Path| {
        stdout(&run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-enddate", "-in"])
                .arg(f),
        ))
    };
    assert_eq!(end(&crt), end(&ca_crt), "notAfter clamped to the CA's");
    assert_server_cert_of(&ca_crt, &crt);

    wait_for(
        "the short-lived CA expires",
        Duration::from_secs(40),
        80,
        || {
            assert_running(&mut ctl);
            let o = Command::new("openssl")
                .args(["x509", "-noout", "-checkend", "0", "-in"])
                .arg(&ca_crt)
                .output()
                .ok()?;
            (!o.status.success()).then_some(())
        },
    );
    env.create(&node_req("short-ca-after", "n2", Some("DNS:n2")));
    wait_for("a ca_expired refusal", Duration::from_secs(30), 60, || {
        assert_running(&mut ctl);
        let issued = certificate(env, "short-ca-after");
        assert!(issued.is_empty(), "signed with an expired CA: {issued}");
        let m = env.metrics(port)?;
        (metric_sum(
            &m,
            "kubepki_csr_sign_refusals_total",
            &["reason=\"ca_expired\""],
        ) >= 1.0)
            .then_some(())
    });
    let ev = wait_event(env, "short-ca-after", "SignRefused");
    assert!(
        ev.contains("ca_expired") && ev.contains("expired at"),
        "{ev}"
    );
    // Approved (the rules accept it), not signed, not Failed: a valid CA will sign it.
    let c = &env.conditions()["short-ca-after"];
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].0, "Approved", "{c:?}");
    let o = certificate(env, "short-ca-after");
    assert!(o.is_empty(), "no certificate from an expired CA: {o}");
    let m = env.metrics(port).unwrap();
    assert_eq!(metric_sum(&m, "kubepki_csr_signed_total", &[]), 1.0, "{m}");
    ctl.stop(Duration::from_secs(10));
}

/// The service account's kubeconfig with the API server's address replaced by `proxy`'s.
fn conf_via(env: &Env, proxy: &TcpProxy, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(&env.sa_conf).unwrap();
    let direct = format!("server: {}", env.c.server());
    assert!(text.contains(&direct), "{text}");
    let p = env.work.join(file);
    write_file(
        &p,
        text.replace(&direct, &format!("server: https://{}", proxy.addr))
            .as_bytes(),
    );
    p
}

fn lease_holder(env: &Env) -> String {
    env.kc_ok(&[
        "-n",
        "kubepki-system",
        "get",
        "lease",
        "kubepki-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

/// Phase 5a: the leader loses the API server (a proxy between them stops passing bytes, in
/// both directions, connections left open). It must stop reconciling (kubepki_leader 0) before
/// the other replica takes over, and write nothing after: every request gets exactly one
/// decision, from whichever replica led when it came.
fn partition_phase(env: &mut Env) {
    let api = SocketAddr::new(env.c.ip, env.c.api_port);
    let proxy = TcpProxy::start(env.c.ip, api, Mode::Pass);
    let conf = conf_via(env, &proxy, "sa-via-proxy.conf");
    let (mut a, pa) = env.controller_via(&conf, "cut-off", &[]);
    wait_ready(env, &mut a, pa);
    wait_for("cut-off leads", Duration::from_secs(20), 80, || {
        assert_running(&mut a);
        (leader(env, pa) == Some(1.0)).then_some(())
    });
    let (mut b, pb) = env.controller("connected", &[]);
    wait_ready(env, &mut b, pb);
    assert_eq!(leader(env, pb), Some(0.0), "one leader");
    let before = leader_node_reqs(env, "cut-before", 0..5);
    wait_for(
        "5 approvals before the cut",
        Duration::from_secs(30),
        60,
        || {
            assert_running(&mut a);
            all_approved(env, &before)
        },
    );
    assert_eq!((approvals(env, pa), approvals(env, pb)), (5.0, 0.0));

    proxy.set(Mode::Hold);
    let cut = Instant::now();
    // Poll the connected replica first, then the cut-off one: seeing "connected leads" and then
    // "cut-off leads" proves both led at once. 100 ms polls, at most 30 s.
    let mut a_off: Option<(usize, Duration)> = None;
    let mut b_on: Option<(usize, Duration)> = None;
    for i in 0..300 {
        assert_running(&mut a);
        assert_running(&mut b);
        let lb = leader(env, pb);
        let la = leader(env, pa);
        assert!(
            !(lb == Some(1.0) && la == Some(1.0)),
            "both replicas lead {:?} after the cut",
            cut.elapsed()
        );
        if a_off.is_none() && la == Some(0.0) {
            a_off = Some((i, cut.elapsed()));
        }
        if lb == Some(1.0) {
            b_on = Some((i, cut.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (b_poll, b_on) = b_on.expect("the connected replica takes over within 30 s");
    let (a_poll, a_off) = a_off.unwrap_or_else(|| {
        panic!("the cut-off leader still led when the other took over, {b_on:?} after the cut")
    });
    assert!(
        a_poll < b_poll,
        "the cut-off leader stopped ({a_off:?}) before the other took over ({b_on:?})"
    );
    // It stops within its renew deadline (3 s) of its last renewal, sent before the cut.
    assert!(
        a_off <= Duration::from_millis(4_500),
        "stopped {a_off:?} after the cut"
    );
    eprintln!(
        "partition: the cut-off leader stopped {a_off:?} after the cut, the other took over {b_on:?} after it"
    );
    assert_eq!(lease_holder(env), "connected");
    let during = leader_node_reqs(env, "cut-during", 5..10);
    wait_for(
        "5 approvals during the cut",
        Duration::from_secs(30),
        60,
        || {
            assert_running(&mut b);
            all_approved(env, &during)
        },
    );

    // Healed: the old leader reads the other's lease and stands by; whatever it had in flight
    // arrives now, with a stale resourceVersion.
    proxy.set(Mode::Pass);
    std::thread::sleep(Duration::from_secs(3));
    assert_running(&mut a);
    assert_eq!(leader(env, pa), Some(0.0), "the healed replica stands by");
    assert_eq!(leader(env, pb), Some(1.0));
    assert_eq!(
        (approvals(env, pa), approvals(env, pb)),
        (5.0, 5.0),
        "approvals by the cut-off replica, and by the other"
    );
    let conds = env.conditions();
    assert_one_decision_each(&conds, before.iter().chain(&during));
    assert!(
        a.log_text().contains("lost the leader lease"),
        "{}",
        tail(&a.log_text(), 30)
    );
    // Its Lease renewals that got no answer are failed API calls.
    let m = env.metrics(pa).expect("metrics");
    assert!(
        metric_sum(&m, "kubepki_api_errors_total", &["operation=\"lease\""]) >= 1.0,
        "{m}"
    );
    a.stop(Duration::from_secs(10));
    b.stop(Duration::from_secs(10));
}

/// Phase 5b: with leader election on, a replica that starts while the API server refuses
/// connections keeps running, not ready, and becomes ready (and leads) once it answers.
fn unreachable_start_phase(env: &mut Env) {
    let api = SocketAddr::new(env.c.ip, env.c.api_port);
    let proxy = TcpProxy::start(env.c.ip, api, Mode::Reject);
    let conf = conf_via(env, &proxy, "sa-via-rejecting-proxy.conf");
    let (mut c, pc) = env.controller_via(&conf, "late", &[]);
    let start = Instant::now();
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(4) {
        let (body, lead) = (readyz(env, pc), leader(env, pc));
        assert_running(&mut c);
        if let Some(body) = body {
            assert!(body.starts_with("not ready"), "{body}");
            assert_eq!(lead, Some(0.0));
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(answered >= 5, "/readyz answered {answered} times");
    // Each refused Lease read is a failed API call; nothing was reconciled.
    let m = env.metrics(pc).expect("metrics");
    assert!(
        metric_sum(&m, "kubepki_api_errors_total", &["operation=\"lease\""]) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "kubepki_reconcile_errors_total", &[]),
        0.0,
        "{m}"
    );
    proxy.set(Mode::Pass);
    wait_ready(env, &mut c, pc);
    wait_for("late leads", Duration::from_secs(20), 80, || {
        assert_running(&mut c);
        (leader(env, pc) == Some(1.0)).then_some(())
    });
    assert!(
        c.log_text().contains("leader election"),
        "it says why it waits:\n{}",
        tail(&c.log_text(), 20)
    );
    c.stop(Duration::from_secs(10));
}

/// Phase 5c: a lease renewed every second by a holder whose renewTime is an hour behind our
/// clock is live: a standby must not take it. Once renewals stop, it takes over a lease
/// duration (4 s) after it saw the last one.
fn skew_phase(env: &mut Env) {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let hour_behind = || {
        (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
            .format(fmt)
            .unwrap()
    };
    let renew = |first: bool| {
        let t = hour_behind();
        let spec = if first {
            format!(
                r#"{{"spec":{{"holderIdentity":"clock-behind","leaseDurationSeconds":4,"acquireTime":"{t}","renewTime":"{t}"}}}}"#
            )
        } else {
            format!(r#"{{"spec":{{"renewTime":"{t}"}}}}"#)
        };
        env.kc_ok(&[
            "-n",
            "kubepki-system",
            "patch",
            "lease",
            "kubepki-controller",
            "--type=merge",
            "-p",
            &spec,
        ]);
    };
    // The Lease exists once any replica ran; made here otherwise.
    let exists = env
        .kc(&["-n", "kubepki-system", "get", "lease", "kubepki-controller"])
        .status
        .success();
    if !exists {
        let f = env.work.join("lease.yaml");
        write_file(
            &f,
            b"apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: kubepki-controller\n  namespace: kubepki-system\n",
        );
        env.kc_ok(&["create", "-f", f.to_str().unwrap()]);
    }
    renew(true);
    let (mut s, ps) = env.controller("skewed-standby", &[]);
    wait_ready(env, &mut s, ps);
    // 10 s of renewals: 2.5 lease durations.
    let mut last = Instant::now();
    for i in 0..10 {
        let round = Instant::now();
        renew(false);
        last = Instant::now();
        assert_running(&mut s);
        assert_eq!(leader(env, ps), Some(0.0), "round {i}: took a live lease");
        assert_eq!(lease_holder(env), "clock-behind", "round {i}");
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    wait_for(
        "the standby takes the abandoned lease",
        Duration::from_secs(15),
        150,
        || {
            assert_running(&mut s);
            (leader(env, ps) == Some(1.0)).then_some(())
        },
    );
    let took = last.elapsed();
    eprintln!("skew: the standby took the lease {took:?} after the last renewal");
    // A lease duration (4 s) after it saw the last renewal (at its next round, 0.5 to 1.1 s
    // later), and at its first round after that.
    assert!(
        took >= Duration::from_millis(3_900) && took <= Duration::from_secs(8),
        "it waited a lease duration after the last renewal it saw: {took:?}"
    );
    assert_eq!(lease_holder(env), "skewed-standby");
    s.stop(Duration::from_secs(10));
}
