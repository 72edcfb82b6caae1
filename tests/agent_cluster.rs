//! `kubepki agent` against a real kube-apiserver v1.20.2 and etcd, as processes: seven agents,
//! each for a "node" cpN with a PKI of its own (`kubepki init --node-name cpN`, then every leaf
//! renewed to 2 h of validity), all talking to one API server, scraped by a real Prometheus
//! loading deploy/prometheus/kubepki-rules.yaml.
//!
//! 1. Events: cp0 (renewal off, default thresholds 720h,168h) records one CertificateExpiring
//!    Event on its Node per certificate with 2 h left, each naming its certificate, and none
//!    again at the next checks.
//! 2. Pausing and one node at a time: cp1..cp3 (`--renew-before 3h`, so everything is due)
//!    start together while the ConfigMap says `paused: "true"`: nothing changes for three
//!    checks. Unpaused, each renews (its certificates then last a year, a backup is under its
//!    kubepki-backups, a CertificateRenewed Event names it), and no two renewals overlap (from
//!    each agent's JSON log: "renewing (holding the renewal Lease)" until the end of its settle
//!    time; each Lease is handed back).
//! 3. A failure stops renewal everywhere: cp4's cert dir is a read-only bind mount. Paused by
//!    its Node annotation kubepki.io/renewal-paused=true, cp4 renews nothing until Prometheus
//!    has scraped it; unpaused, its renewal fails: the Lease gets kubepki.io/renewal-failed
//!    naming cp4, its Node gets CertificateRenewalFailed and RenewalStopped, its /metrics
//!    counts the failure, and no file changed. cp5, due and started afterwards, does not renew
//!    for three checks (kubepki_agent_renewal_stopped 1 there and on cp1). cp5 is then paused
//!    by its Node annotation, cp4's mount is fixed and the Lease annotation removed: cp4
//!    renews, cp5 still does not for three checks; without the Node annotation, cp5 renews.
//!    At the end the Lease exists without a holder or failure.
//! 4. Prometheus (scrape and rule evaluation every second; every `for:` of the rules replaced
//!    by 0s, the `for` durations being unit-tested by promtool in tests/prometheus): the
//!    certificates of cp0 raise KubepkiCertificateRenewal (warning) and
//!    KubepkiCertificateExpiration (critical), a target not started KubepkiAgentDown, cp4's
//!    failure KubepkiRenewalFailed, also the per-node half of its expression.
//! 5. A Lease whose holder stopped renewing it (as when the agent holding it was killed) is
//!    taken over once its leaseDurationSeconds (30 s) passed, and not before.
//!
//! Expectations that later phases do not depend on are collected and reported together at the
//! end, so that one run shows every deviation. Everything listens on 127.0.0.50; every process
//! is stopped by PID and the read-only mount undone when the guard drops (also on panic);
//! every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::cluster::*;
use common::*;
use serde_json::Value;

const LOOPBACK: u8 = 50;
const NS: &str = "kubepki-system";
const LEASE: &str = "kubepki-renewal";
const FAILED: &str = "kubepki.io/renewal-failed";
const PAUSED: &str = "kubepki.io/renewal-paused";
const CHECK: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(3);
/// The agent's Lease duration (src/settings/agent.rs).
const LEASE_DURATION: Duration = Duration::from_secs(30);
/// cp0 watches only; cp1..cp6 renew what expires within 3 h.
const NODES: [&str; 7] = ["cp0", "cp1", "cp2", "cp3", "cp4", "cp5", "cp6"];
/// The leaves `certs renew all` renews on a kubeadm control-plane node.
fn leaves() -> Vec<&'static str> {
    common::pki::cert_names()
}

const RENEWING: &str = "renewing (holding the renewal Lease)";
const RENEWED: &str = "renewed; keeping the Lease while the components settle";
const FAILED_LOG: &str = "renewal failed; stopping renewal on every node";
const RELEASED: &str = "released the leader lease";

/// One simulated node: its directories and where its agent serves.
struct Node {
    name: String,
    /// The kubeconfig dir; the cert dir is `pki` below it.
    dir: PathBuf,
    metrics: String,
    log: PathBuf,
}

/// One line of an agent's JSON log.
struct LogLine {
    time: SystemTime,
    message: String,
}

impl Node {
    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    fn agent(&self, admin: &Path, renew: bool) -> Command {
        let mut c = kubepki();
        c.arg("agent")
            .arg("--kubeconfig")
            .arg(admin)
            .args(["--node-name", &self.name, "--cert-dir"])
            .arg(self.pki())
            .arg("--kubeconfig-dir")
            .arg(&self.dir)
            .arg("--kubelet-pki-dir")
            .arg(self.dir.join("kubelet-pki"))
            .args(["--metrics-bind-address", &self.metrics])
            .args([
                "--check-interval",
                "2s",
                "--settle-time",
                "3s",
                "--lease-duration",
                "30s",
            ])
            .args(["--restart-static-pods=false", "--namespace", NS])
            .args(["--log-format", "json"]);
        if renew {
            c.args(["--renew-before", "3h"]);
        }
        c
    }

    /// Its /metrics, or None while it does not answer.
    fn scrape(&self) -> Option<String> {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{}/metrics", self.metrics))
            .output()
            .ok()?;
        o.status.success().then(|| stdout(&o))
    }

    fn scrape_ok(&self) -> String {
        wait_for(
            &format!("{}'s /metrics", self.name),
            Duration::from_secs(15),
            30,
            || self.scrape(),
        )
    }

    /// The value of the one sample of `name` whose labels include `labels`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.scrape()?;
        samples(&text, name)
            .into_iter()
            .find(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, v)| v)
    }

    fn log_lines(&self) -> Vec<LogLine> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                Some(LogLine {
                    time: humantime::parse_rfc3339(v["timestamp"].as_str()?).ok()?,
                    message: v["fields"]["message"].as_str()?.to_string(),
                })
            })
            .collect()
    }

    fn logged(&self, prefix: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l.message.starts_with(prefix))
            .count()
    }

    /// `certs check-expiration -o json`: each leaf's name and expiry.
    fn expirations(&self) -> BTreeMap<String, SystemTime> {
        let o = run_ok(
            kubepki()
                .args(["certs", "check-expiration", "-o", "json", "--cert-dir"])
                .arg(self.pki())
                .arg("--kubeconfig-dir")
                .arg(&self.dir),
        );
        let v: Value = serde_json::from_slice(&o.stdout).expect("check-expiration JSON");
        v["certificates"]
            .as_array()
            .expect("certificates")
            .iter()
            .filter(|c| c["missing"] != Value::Bool(true))
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    humantime::parse_rfc3339(c["expirationDate"].as_str().unwrap()).unwrap(),
                )
            })
            .collect()
    }

    /// The backup directories below its kubepki-backups.
    fn backups(&self) -> BTreeSet<PathBuf> {
        fs::read_dir(self.dir.join("kubepki-backups"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// Its certificates and kubeconfigs, with their bytes.
    fn files(&self) -> Vec<(PathBuf, Vec<u8>, u32)> {
        let mut s = snapshot(&self.pki());
        for f in [
            "admin.conf",
            "super-admin.conf",
            "controller-manager.conf",
            "scheduler.conf",
            "kubelet.conf",
        ] {
            s.extend(snapshot_file(&self.dir.join(f)));
        }
        s
    }
}

fn snapshot_file(p: &Path) -> Option<(PathBuf, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let md = fs::metadata(p).ok()?;
    Some((p.to_path_buf(), fs::read(p).ok()?, md.permissions().mode()))
}

/// The samples of `name` in Prometheus/OpenMetrics text: labels and value.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            Some((parse_labels(labels), value.parse().ok()?))
        })
        .collect()
}

/// `a="x",b="y\"z"` into a map.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

/// The read-only bind mount of cp4's cert dir, undone on drop.
struct RoMount {
    dir: Option<PathBuf>,
}

impl RoMount {
    fn mount(&mut self, d: &Path) {
        run_ok(Command::new("mount").arg("--bind").arg(d).arg(d));
        self.dir = Some(d.to_path_buf());
        run_ok(Command::new("mount").args(["-o", "remount,ro,bind"]).arg(d));
    }

    fn unmount(&mut self) {
        if let Some(d) = self.dir.take() {
            let st = Command::new("umount").arg(&d).status();
            assert!(
                st.is_ok_and(|s| s.success()),
                "cannot unmount {}",
                d.display()
            );
        }
    }
}

impl Drop for RoMount {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = Command::new("umount").arg(&d).status();
        }
    }
}

/// Field order is drop order: the agents and Prometheus stop, then the API server and etcd,
/// then the mount goes (before the scratch directory it is in).
struct Env {
    agents: BTreeMap<String, Proc>,
    prometheus: Option<Proc>,
    c: Cluster,
    ro: RoMount,
    nodes: Vec<Node>,
    admin: PathBuf,
    work: PathBuf,
    prom_addr: String,
    /// Expectations that failed without stopping the run, reported at the end.
    findings: Vec<String>,
}

impl Env {
    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    fn kc_ok(&self, args: &[&str]) -> String {
        let o = kc(&self.admin, args);
        assert!(o.status.success(), "kubectl {args:?}\n{}", show(&o));
        stdout(&o)
    }

    fn start_agent(&mut self, name: &str, renew: bool) {
        let n = self.node(name);
        let p = Proc::spawn(
            &format!("agent {name}"),
            n.agent(&self.admin, renew),
            &n.log,
        );
        self.agents.insert(name.to_string(), p);
    }

    /// Panics with its log if an agent exited.
    fn agents_running(&mut self) {
        for p in self.agents.values_mut() {
            assert_running(p);
        }
    }

    fn expect(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let w = what();
            eprintln!("FINDING: {w}");
            self.findings.push(w);
        }
    }

    /// The events.k8s.io Events whose regarding is the Node `node`.
    fn events(&self, node: &str) -> Vec<Value> {
        let out = self.kc_ok(&["get", "events.v1.events.k8s.io", "-A", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).expect("events JSON");
        v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["regarding"]["kind"] == "Node" && e["regarding"]["name"] == node)
            .collect()
    }

    fn events_with(&self, node: &str, reason: &str) -> Vec<Value> {
        self.events(node)
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }

    fn lease(&self) -> Option<Value> {
        let o = kc(
            &self.admin,
            &["-n", NS, "get", "lease", LEASE, "-o", "json"],
        );
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).expect("lease JSON"))
    }

    fn lease_holder(&self) -> Option<String> {
        self.lease()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// The failure recorded on the Lease, parsed.
    fn lease_failure(&self) -> Option<Value> {
        let l = self.lease()?;
        let raw = l["metadata"]["annotations"][FAILED].as_str()?.to_string();
        Some(serde_json::from_str(&raw).unwrap_or(Value::String(raw)))
    }

    /// Waits until `name`'s agent has begun `n` more checks (its
    /// kubepki_agent_last_check_timestamp_seconds took n new values).
    fn wait_checks(&mut self, name: &str, n: usize) {
        let mut seen = BTreeSet::new();
        let limit = CHECK * 3 * (n as u32 + 2) + Duration::from_secs(10);
        let attempts = (limit.as_millis() / 250) as u32;
        let what = format!("{n} more checks of {name}'s agent");
        wait_for(&what, limit, attempts, || {
            self.agents_running();
            let v = self
                .node(name)
                .metric("kubepki_agent_last_check_timestamp_seconds", &[])?;
            seen.insert(v as i64);
            (seen.len() > n).then_some(())
        });
    }

    /// Waits (bounded) until `name`'s log has a line starting with `prefix`.
    fn wait_logged(&mut self, name: &str, prefix: &str, limit: Duration) {
        let what = format!("{name}'s agent to log {prefix:?}");
        wait_for(&what, limit, (limit.as_millis() / 250) as u32, || {
            self.agents_running();
            (self.node(name).logged(prefix) > 0).then_some(())
        });
    }

    /// Prometheus' firing alerts, as label maps.
    fn firing(&self) -> Vec<BTreeMap<String, String>> {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{}/api/v1/alerts", self.prom_addr))
            .output();
        let Ok(o) = o else { return Vec::new() };
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                a["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits up to `limit` for a firing alert with all of `labels`; false if none came.
    fn alert_fires(&mut self, labels: &[(&str, &str)], limit: Duration) -> bool {
        let start = Instant::now();
        for _ in 0..(limit.as_millis() / 500) {
            if let Some(p) = self.prometheus.as_mut() {
                assert_running(p);
            }
            let found = self.firing().iter().any(|a| {
                labels
                    .iter()
                    .all(|(k, v)| a.get(*k).map(String::as_str) == Some(v))
            });
            if found {
                return true;
            }
            if start.elapsed() > limit {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    }

    /// The result vector of a Prometheus instant query.
    fn query(&self, q: &str) -> Vec<Value> {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-G"])
            .arg(format!("http://{}/api/v1/query", self.prom_addr))
            .arg("--data-urlencode")
            .arg(format!("query={q}"))
            .output();
        let Ok(o) = o else { return Vec::new() };
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn tails(&self) -> String {
        let mut s = self.c.log_tails();
        s.push_str(&log_tails(self.agents.values(), 25));
        if let Some(p) = &self.prometheus {
            s.push_str(&log_tails([p], 15));
        }
        s
    }
}

#[test]
fn agent_events_one_renewal_at_a_time_failure_stops_renewal_and_alerts() {
    let started = Instant::now();
    let bin = ensure_control_plane_tools();
    ensure_installed("prometheus", &["prometheus"]);
    let tmp = scratch();
    let ip = loopback(LOOPBACK);
    let cdir = tmp.path().join("cluster");
    fs::create_dir_all(&cdir).unwrap();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let c = Cluster::start(bin, &cdir, "api", ip);
    let mut used = BTreeSet::from([c.api_port]);
    let mut port = || loop {
        let p = free_port(ip);
        if used.insert(p) {
            return p;
        }
    };
    let nodes: Vec<Node> = NODES
        .iter()
        .map(|n| Node {
            name: n.to_string(),
            dir: tmp.path().join(n),
            metrics: format!("{ip}:{}", port()),
            log: tmp.path().join(format!("agent-{n}.log")),
        })
        .collect();
    let prom_addr = format!("{ip}:{}", port());
    let mut env = Env {
        agents: BTreeMap::new(),
        prometheus: None,
        admin: c.conf("admin.conf"),
        c,
        ro: RoMount { dir: None },
        nodes,
        work,
        prom_addr,
        findings: Vec::new(),
    };
    run_checks(&mut env, phases, Env::tails);
    eprintln!("agent cluster test: passed in {:?}", started.elapsed());
}

fn phases(env: &mut Env) {
    let t = Instant::now();
    setup(env);
    eprintln!("[{:?}] setup done", t.elapsed());
    events_phase(env);
    eprintln!("[{:?}] events done", t.elapsed());
    expiry_alerts_phase(env);
    eprintln!("[{:?}] expiry alerts done", t.elapsed());
    one_at_a_time_phase(env);
    eprintln!("[{:?}] one at a time done", t.elapsed());
    failure_phase(env);
    eprintln!("[{:?}] failure done", t.elapsed());
    no_overlap_and_lease_released(env);
    stale_lease_phase(env);
    eprintln!("[{:?}] stale lease done", t.elapsed());
    env.agents_running();
    if !env.findings.is_empty() {
        panic!(
            "{} expectation(s) failed:\n- {}",
            env.findings.len(),
            env.findings.join("\n- ")
        );
    }
}

/// Node PKIs with 2 h leaves, the cluster's objects, Prometheus, and the agents cp0..cp3 (the
/// renewing ones paused by the ConfigMap).
fn setup(env: &mut Env) {
    for n in &env.nodes {
        init_ecdsa(&n.dir, &n.name, &loopback(LOOPBACK).to_string(), &[]);
        fs::create_dir_all(n.dir.join("kubelet-pki")).unwrap();
        run_ok(
            kubepki()
                .args(["certs", "renew", "all", "--validity", "2h", "--cert-dir"])
                .arg(n.pki())
                .arg("--kubeconfig-dir")
                .arg(&n.dir),
        );
        // Only the agent's own backups below, from here on.
        fs::remove_dir_all(n.dir.join("kubepki-backups")).unwrap();
    }
    write_prometheus_files(env);
    let prom = start_prometheus(env);
    env.prometheus = Some(prom);

    env.c.wait_apiserver_ready();
    create_cluster_admins_binding(&env.c.conf("super-admin.conf"));
    wait_lists_namespaces("admin.conf to list namespaces", &env.admin, &["default"]);
    env.kc_ok(&["create", "namespace", NS]);
    let manifest = env.work.join("nodes.yaml");
    let yaml: Vec<String> = NODES
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n"))
        .collect();
    write_file(&manifest, yaml.join("---\n").as_bytes());
    env.kc_ok(&["create", "-f", &manifest.display().to_string()]);
    env.kc_ok(&[
        "-n",
        NS,
        "create",
        "configmap",
        "kubepki-agent",
        "--from-literal=paused=true",
    ]);

    env.start_agent("cp0", false);
    for n in ["cp1", "cp2", "cp3"] {
        env.start_agent(n, true);
    }
    let p = env.prometheus.as_mut().unwrap();
    let ready = format!("http://{}/-/ready", env.prom_addr);
    wait_for("Prometheus ready", Duration::from_secs(30), 60, || {
        assert_running(p);
        let o = Command::new("curl")
            .args(["-sf", "--max-time", "2", &ready])
            .output()
            .ok()?;
        o.status.success().then_some(())
    });
}

/// prometheus.yml scraping every agent (a `node` label per target, as deploy/README.md's scrape
/// config adds), and the rules with every `for:` at 0s: the `for` durations are unit-tested by
/// promtool (tests/prometheus/kubepki-rules.test.yaml); here the expressions meet real metrics.
fn write_prometheus_files(env: &Env) {
    let rules_src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/kubepki-rules.yaml");
    let rules =
        fs::read_to_string(&rules_src).unwrap_or_else(|e| panic!("{}: {e}", rules_src.display()));
    let rules: Vec<String> = rules
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("for:") {
                format!("{}for: 0s", &l[..l.len() - t.len()])
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(
        rules.iter().any(|l| l.trim() == "for: 0s"),
        "no `for:` replaced in {}",
        rules_src.display()
    );
    let rules_file = env.work.join("kubepki-rules.yaml");
    write_file(&rules_file, (rules.join("\n") + "\n").as_bytes());
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: kubepki-agent\n    static_configs:\n",
        rules_file.display()
    );
    for n in &env.nodes {
        cfg.push_str(&format!(
            "      - targets: ['{}']\n        labels:\n          node: {}\n",
            n.metrics, n.name
        ));
    }
    write_file(&env.work.join("prometheus.yml"), cfg.as_bytes());
    let o = Command::new("promtool")
        .args(["check", "config"])
        .arg(env.work.join("prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(o.status.success(), "promtool check config\n{}", show(&o));
}

fn start_prometheus(env: &Env) -> Proc {
    let mut c = Command::new("prometheus");
    c.arg(format!(
        "--config.file={}",
        env.work.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        env.work.join("prometheus-data").display()
    ))
    .arg(format!("--web.listen-address={}", env.prom_addr));
    Proc::spawn("prometheus", c, &env.work.join("prometheus.log"))
}

/// Scenario 1, on cp0.
fn events_phase(env: &mut Env) {
    let cp0 = env.node("cp0");
    let text = cp0.scrape_ok();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Every certificate of the node with less than the narrowest threshold (168h) left.
    let expiring: BTreeSet<(String, String)> = samples(&text, "x509_cert_not_after")
        .into_iter()
        .filter(|(_, v)| *v < now + 168.0 * 3600.0)
        .map(|(l, _)| {
            (
                l["filepath"].clone(),
                l.get("embedded_key").cloned().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        expiring.len(),
        leaves().len(),
        "cp0's /metrics should show its {} leaves with 2 h left: {expiring:?}",
        leaves().len()
    );
    wait_for(
        "cp0's first CertificateExpiring Event",
        Duration::from_secs(30),
        60,
        || {
            env.agents_running();
            (!env.events_with("cp0", "CertificateExpiring").is_empty()).then_some(())
        },
    );
    // Two more checks: nothing is announced again.
    env.wait_checks("cp0", 3);
    let first = env.events_with("cp0", "CertificateExpiring");
    env.wait_checks("cp0", 2);
    let second = env.events_with("cp0", "CertificateExpiring");

    for e in &second {
        let ns = e["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        env.expect(ns == "default", || {
            format!("cp0's Event in namespace {ns:?}, not default")
        });
        let ok = e["type"] == "Warning"
            && e["reportingController"] == "kubepki.io/agent"
            && e["reportingInstance"] == "cp0";
        env.expect(ok, || {
            format!("cp0's CertificateExpiring Event: type Warning, reportingController kubepki.io/agent, reportingInstance cp0 expected: {e}")
        });
    }
    let notes: Vec<String> = second
        .iter()
        .map(|e| e["note"].as_str().unwrap_or("").to_string())
        .collect();
    env.expect(second.len() == expiring.len(), || {
        format!(
            "Events: cp0 has {} certificates with 2 h left, so {} CertificateExpiring Events \
             (one per certificate), got {}: notes {notes:?}",
            expiring.len(),
            expiring.len(),
            second.len()
        )
    });
    let unnamed: Vec<&String> = expiring
        .iter()
        .map(|(path, _)| path)
        .filter(|path| {
            notes
                .iter()
                .filter(|t| t.contains(&format!("({path})")))
                .count()
                != 1
        })
        .collect();
    env.expect(unnamed.is_empty(), || {
        format!("Events: these certificates of cp0 are not named by exactly one CertificateExpiring Event: {unnamed:?}")
    });
    for e in &second {
        let count = e["series"]["count"].as_i64().unwrap_or(1);
        let name = e["metadata"]["name"].as_str().unwrap_or("").to_string();
        env.expect(count <= 1, || {
            format!(
                "Events: cp0's CertificateExpiring Event {name} was published {count} times \
                 (series.count; a certificate is announced once): note {:?}",
                e["note"]
            )
        });
    }
    let key = |v: &[Value]| -> BTreeSet<(String, String)> {
        v.iter()
            .map(|e| {
                (
                    e["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    e["series"]["count"].to_string(),
                )
            })
            .collect()
    };
    let (k1, k2) = (key(&first), key(&second));
    env.expect(k1 == k2, || {
        format!("Events: cp0's CertificateExpiring Events changed over two more checks: {k1:?} -> {k2:?}")
    });
}

/// Scenario 4, expiry half: cp0's 2 h certificates, and a target not started.
fn expiry_alerts_phase(env: &mut Env) {
    let limit = Duration::from_secs(60);
    for (alert, severity) in [
        ("KubepkiCertificateRenewal", "warning"),
        ("KubepkiCertificateExpiration", "critical"),
    ] {
        let ok = env.alert_fires(
            &[
                ("alertname", alert),
                ("severity", severity),
                ("node", "cp0"),
            ],
            limit,
        );
        assert!(
            ok,
            "{alert} ({severity}) did not fire for cp0 within {limit:?}; firing: {:?}",
            env.firing()
        );
    }
    let firing = env.firing();
    let renewal_cp0 = firing
        .iter()
        .filter(|a| {
            a["alertname"] == "KubepkiCertificateRenewal"
                && a.get("node").is_some_and(|n| n == "cp0")
        })
        .count();
    env.expect(renewal_cp0 == leaves().len(), || {
        format!("KubepkiCertificateRenewal should fire once per 2 h certificate of cp0 ({}), fired {renewal_cp0}", leaves().len())
    });
    // cp6's agent is not started yet: its target is down.
    let down = env.alert_fires(
        &[("alertname", "KubepkiAgentDown"), ("node", "cp6")],
        Duration::from_secs(20),
    );
    env.expect(down, || {
        "KubepkiAgentDown did not fire for cp6 (not started)".into()
    });
    let up_down = env
        .firing()
        .iter()
        .any(|a| a["alertname"] == "KubepkiAgentDown" && a.get("node").is_some_and(|n| n == "cp0"));
    env.expect(!up_down, || {
        "KubepkiAgentDown fires for cp0, which is up".into()
    });
}

/// Scenario 2: paused by the ConfigMap, then three renewals one at a time.
fn one_at_a_time_phase(env: &mut Env) {
    let trio = ["cp1", "cp2", "cp3"];
    let before: Vec<_> = trio.iter().map(|n| env.node(n).files()).collect();
    for n in trio {
        env.wait_logged(n, "renewal paused by", Duration::from_secs(20));
    }
    // They had been paused since they started; three more checks each.
    for n in trio {
        env.wait_checks(n, 3);
    }
    for (i, n) in trio.iter().enumerate() {
        let node = env.node(n);
        assert!(
            node.files() == before[i],
            "{n} changed its files while the ConfigMap paused renewal"
        );
        assert_eq!(node.logged(RENEWING), 0, "{n} renewed while paused");
        assert!(node.backups().is_empty(), "{n} made a backup while paused");
        assert_eq!(
            node.metric("kubepki_agent_renewal_enabled", &[]),
            Some(1.0),
            "{n}: renewal enabled by --renew-before"
        );
    }

    env.kc_ok(&[
        "-n",
        NS,
        "patch",
        "configmap",
        "kubepki-agent",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"paused":"false"}}"#,
    ]);
    // One after the other: 60 s for the three.
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in trio {
        let left = deadline.saturating_duration_since(Instant::now());
        env.wait_logged(n, RENEWED, left.max(Duration::from_secs(1)));
    }
    for n in trio {
        check_renewed(env, n, &BTreeSet::new());
    }
    // They did compete for the Lease: one stood by while another held it (the election's own
    // log line), or gave up waiting this round.
    let waited = trio
        .iter()
        .filter(|n| {
            let node = env.node(n);
            node.logged("standing by: the lease is held") > 0
                || node.logged("renewal due; another node holds") > 0
        })
        .count();
    assert!(
        waited > 0,
        "no agent of cp1..cp3 ever found the Lease held by another"
    );
}

/// `name` renewed once: its leaves last about a year, one backup of the previous files is under
/// its kubepki-backups besides those in `backups_before`, a CertificateRenewed Event on its
/// Node names that backup, its success counter is 1.
fn check_renewed(env: &mut Env, name: &str, backups_before: &BTreeSet<PathBuf>) {
    let node = env.node(name);
    let exp = node.expirations();
    let year_less_a_day = SystemTime::now() + Duration::from_secs(364 * 86400);
    for leaf in leaves() {
        let e = exp.get(leaf).copied();
        assert!(
            e.is_some_and(|e| e > year_less_a_day),
            "{name}: {leaf} should last a year after the agent's renewal: {exp:?}"
        );
    }
    let backups: BTreeSet<PathBuf> = node.backups().difference(backups_before).cloned().collect();
    assert_eq!(
        backups.len(),
        1,
        "{name}: one new backup under {}: {backups:?}",
        node.dir.join("kubepki-backups").display()
    );
    let c = node.metric("kubepki_agent_renewals_total", &[("result", "success")]);
    assert_eq!(c, Some(1.0), "{name}: renewals_total{{result=\"success\"}}");
    let renewed = wait_for(
        &format!("{name}'s CertificateRenewed Event"),
        Duration::from_secs(10),
        20,
        || {
            let ev = env.events_with(name, "CertificateRenewed");
            (!ev.is_empty()).then_some(ev)
        },
    );
    let notes: Vec<String> = renewed
        .iter()
        .map(|e| e["note"].as_str().unwrap_or("").to_string())
        .collect();
    let named = backups.iter().all(|b| {
        notes
            .iter()
            .any(|t| t.contains(&format!("backup: {}", b.display())))
    });
    env.expect(named, || {
        format!("{name}: a CertificateRenewed Event should name its backup {backups:?}: {notes:?}")
    });
    for e in &renewed {
        env.expect(e["type"] == "Normal", || {
            format!("{name}: CertificateRenewed should be Normal: {e}")
        });
    }
}

/// Scenario 3 (with the Node annotation pause) and the failure alert of scenario 4.
fn failure_phase(env: &mut Env) {
    let cp4_pki = env.node("cp4").pki();
    env.ro.mount(&cp4_pki);
    let cp4_before = env.node("cp4").files();
    // Paused by its Node until Prometheus has scraped it, as a long-running agent would have
    // been before its renewal fails.
    env.kc_ok(&["annotate", "node", "cp4", &format!("{PAUSED}=true")]);
    env.start_agent("cp4", true);
    env.wait_logged("cp4", "renewal paused by", Duration::from_secs(20));
    wait_for(
        "Prometheus to scrape cp4's agent",
        Duration::from_secs(30),
        60,
        || {
            let r = env.query(r#"kubepki_agent_renewal_enabled{node="cp4"} == 1"#);
            (!r.is_empty()).then_some(())
        },
    );
    assert_eq!(
        env.node("cp4").logged(RENEWING),
        0,
        "cp4 renewed while paused"
    );
    env.kc_ok(&["annotate", "node", "cp4", &format!("{PAUSED}-")]);
    let limit = Duration::from_secs(60);
    let failure = wait_for(
        "the failure recorded on the Lease",
        limit,
        (limit.as_millis() / 500) as u32,
        || {
            env.agents_running();
            env.lease_failure()
        },
    );
    assert_eq!(
        failure["node"], "cp4",
        "the Lease's {FAILED} should name cp4: {failure}"
    );
    assert!(
        failure["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the failure should say what went wrong: {failure}"
    );
    let cp4 = env.node("cp4");
    assert_eq!(cp4.logged(FAILED_LOG), 1, "cp4 logs its failure once");
    assert!(
        cp4.files() == cp4_before,
        "cp4's failed renewal changed its certificates or kubeconfigs"
    );
    for reason in ["CertificateRenewalFailed", "RenewalStopped"] {
        let ev = wait_for(
            &format!("cp4's {reason} Event"),
            Duration::from_secs(10),
            20,
            || {
                let ev = env.events_with("cp4", reason);
                (!ev.is_empty()).then_some(ev)
            },
        );
        env.expect(ev.iter().all(|e| e["type"] == "Warning"), || {
            format!("cp4's {reason} Events should be Warnings: {ev:?}")
        });
    }
    let cp4 = env.node("cp4");
    assert_eq!(
        cp4.metric("kubepki_agent_renewals_total", &[("result", "failure")]),
        Some(1.0),
        "cp4: renewals_total{{result=\"failure\"}}"
    );
    assert_eq!(
        cp4.metric("kubepki_agent_renewal_stopped", &[]),
        Some(1.0),
        "cp4: renewal_stopped"
    );

    // Prometheus: the alert, and its per-node half (the failure counter's increase).
    let limit = Duration::from_secs(30);
    let fired = env.alert_fires(
        &[
            ("alertname", "KubepkiRenewalFailed"),
            ("severity", "critical"),
        ],
        limit,
    );
    assert!(
        fired,
        "KubepkiRenewalFailed did not fire within {limit:?}; firing: {:?}",
        env.firing()
    );
    let per_node = env.alert_fires(
        &[("alertname", "KubepkiRenewalFailed"), ("node", "cp4")],
        Duration::from_secs(15),
    );
    env.expect(per_node, || {
        "KubepkiRenewalFailed never fired with node=cp4: its half \
         increase(kubepki_agent_renewals_total{result=\"failure\"}[1h]) > 0 sees no increase \
         when the series first appears already at 1 (a counter should be exported at 0 before \
         its first failure)"
            .into()
    });

    // cp5, due, started after the failure: stopped, not renewing.
    let cp5_before = env.node("cp5").files();
    env.start_agent("cp5", true);
    env.wait_logged(
        "cp5",
        "renewal stopped on every node",
        Duration::from_secs(20),
    );
    env.wait_checks("cp5", 3);
    let cp5 = env.node("cp5");
    assert!(
        cp5.files() == cp5_before,
        "cp5 renewed while renewal was stopped"
    );
    assert_eq!(
        cp5.logged(RENEWING),
        0,
        "cp5 renewed while renewal was stopped"
    );
    assert_eq!(
        cp5.metric("kubepki_agent_renewal_stopped", &[]),
        Some(1.0),
        "cp5: renewal_stopped"
    );
    assert_eq!(
        env.node("cp1").metric("kubepki_agent_renewal_stopped", &[]),
        Some(1.0),
        "cp1 (not due) also reports renewal stopped"
    );

    // cp5 paused by its Node; cp4 fixed; the operator clears the failure.
    env.kc_ok(&["annotate", "node", "cp5", &format!("{PAUSED}=true")]);
    env.ro.unmount();
    let cp4_backups = env.node("cp4").backups();
    env.kc_ok(&["-n", NS, "annotate", "lease", LEASE, &format!("{FAILED}-")]);
    let limit = Duration::from_secs(60);
    env.wait_logged("cp4", RENEWED, limit);
    check_renewed(env, "cp4", &cp4_backups);
    assert_eq!(
        env.node("cp4").metric("kubepki_agent_renewal_stopped", &[]),
        Some(0.0),
        "cp4: renewal_stopped after the annotation was removed"
    );
    env.wait_logged("cp5", "renewal paused by", Duration::from_secs(20));
    // Past cp4's settle time (the Lease is free again) and three more checks.
    wait_for("the Lease handed back", Duration::from_secs(20), 40, || {
        env.lease_holder().is_none().then_some(())
    });
    env.wait_checks("cp5", 3);
    let cp5 = env.node("cp5");
    assert!(
        cp5.files() == cp5_before,
        "cp5 renewed although its Node has {PAUSED}=true"
    );
    assert_eq!(cp5.logged(RENEWING), 0, "cp5 renewed while paused");

    env.kc_ok(&["annotate", "node", "cp5", &format!("{PAUSED}-")]);
    env.wait_logged("cp5", RENEWED, limit);
    check_renewed(env, "cp5", &BTreeSet::new());
}

/// Every renewal of cp1..cp5 from its agent's log: [renewing, end], the end being the end of
/// its settle time (the Lease is released after it) or the logged failure.
fn renewal_intervals(env: &Env) -> Vec<(String, SystemTime, SystemTime, bool)> {
    let mut out = Vec::new();
    for n in &env.nodes {
        let lines = n.log_lines();
        for (i, l) in lines.iter().enumerate() {
            if l.message != RENEWING {
                continue;
            }
            let rest = &lines[i + 1..];
            let end = rest
                .iter()
                .find(|l| l.message == RENEWED || l.message == FAILED_LOG)
                .map(|e| {
                    if e.message == RENEWED {
                        e.time + SETTLE
                    } else {
                        e.time
                    }
                })
                .unwrap_or(SystemTime::now());
            let released = rest.iter().any(|l| l.message == RELEASED);
            out.push((n.name.clone(), l.time, end, released));
        }
    }
    out.sort_by_key(|r| r.1);
    out
}

fn no_overlap_and_lease_released(env: &mut Env) {
    wait_for("the Lease handed back", Duration::from_secs(20), 40, || {
        env.lease_holder().is_none().then_some(())
    });
    let intervals = renewal_intervals(env);
    let who: Vec<&str> = intervals.iter().map(|r| r.0.as_str()).collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &who {
        *count.entry(w).or_default() += 1;
    }
    let expected = BTreeMap::from([("cp1", 1), ("cp2", 1), ("cp3", 1), ("cp4", 2), ("cp5", 1)]);
    assert_eq!(
        count, expected,
        "renewals per node (cp4: the failed one and the one after the fix): {intervals:?}"
    );
    for pair in intervals.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.2 <= b.1,
            "renewals overlap: {} from {:?} to {:?}, {} from {:?}",
            a.0,
            a.1,
            a.2,
            b.0,
            b.1
        );
    }
    for r in &intervals {
        assert!(r.3, "{} did not hand the Lease back after renewing", r.0);
    }
    let lease = env
        .lease()
        .expect("the Lease kubepki-system/kubepki-renewal exists");
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
    assert!(holder.is_empty(), "the Lease still has a holder: {lease}");
    assert!(
        lease["metadata"]["annotations"][FAILED].is_null(),
        "the Lease still records a failure: {lease}"
    );
}

/// Scenario 5: the Lease names a holder that no longer renews it (an agent killed while
/// holding it). cp6, due, waits out its leaseDurationSeconds, then takes it over.
fn stale_lease_phase(env: &mut Env) {
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let patch = serde_json::json!({"spec": {
        "holderIdentity": "ghost",
        "leaseDurationSeconds": LEASE_DURATION.as_secs(),
        "acquireTime": now,
        "renewTime": now,
    }});
    env.kc_ok(&[
        "-n",
        NS,
        "patch",
        "lease",
        LEASE,
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);
    let t0 = Instant::now();
    env.start_agent("cp6", true);
    // Respected while it may still be renewed.
    while t0.elapsed() < LEASE_DURATION - Duration::from_secs(5) {
        env.agents_running();
        assert_eq!(
            env.node("cp6").logged(RENEWING),
            0,
            "cp6 renewed {:?} after the Lease was last renewed by its holder",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Taken over once expired: lease duration, a retry period with jitter, a check or two.
    let limit = LEASE_DURATION + Duration::from_secs(25);
    let mut took_over = false;
    while t0.elapsed() < limit {
        env.agents_running();
        if env.node("cp6").logged(RENEWED) > 0 {
            took_over = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let holder = env.lease_holder();
    env.expect(took_over, || {
        format!(
            "a Lease held by a holder that stopped renewing it (leaseDurationSeconds {}) was \
             not taken over by cp6 within {limit:?}; holder now {:?}",
            LEASE_DURATION.as_secs(),
            holder
        )
    });
    if took_over {
        check_renewed(env, "cp6", &BTreeSet::new());
        wait_for(
            "cp6 to hand the Lease back",
            Duration::from_secs(20),
            40,
            || env.lease_holder().is_none().then_some(()),
        );
    }
}
