//! `certs renew --restart-static-pods` on a live control plane: etcd, and kube-apiserver,
//! kube-controller-manager and kube-scheduler v1.20.2 run as static pods by a mini kubelet (a
//! thread that keeps each running exactly while its manifest is in the manifests directory).
//!
//! - `renew all --restart-static-pods`: the kube-apiserver manifest gives its probe port as a
//!   number (kubeadm v1.20), the controller-manager's and scheduler's by name (`probe-port`,
//!   newer kubeadm). Each is stopped and started once, kubepki waits for each one's probes (they
//!   answer the moment it returns), and its last lines say what was restarted and what was not.
//! - `renew apiserver --restart-static-pods` with stdout a broken pipe: same restart, exit 0.
//! - `csr approve` and `csr list` with stdout broken, and the controller with stderr broken:
//!   no panic, the approval and the controller's decision happen.
//!
//! Everything listens on 127.0.0.32 only; every process is stopped by PID when the test ends.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Sink::{Broken, Captured, Closed};
use common::cluster::*;
use common::pki::kubepki_in;
use common::*;

const LOOPBACK: u8 = 32;
const NODE: &str = "cp-32";

/// The control plane. Field order is drop order: the mini kubelet stops watching first, then
/// the static pods stop, then etcd.
struct Plane {
    kubelet: Option<MiniKubelet>,
    dir: PathBuf,
    ip: IpAddr,
    /// Where kube-apiserver, kube-controller-manager and kube-scheduler serve.
    ports: [u16; 3],
    pods: [Arc<Mutex<Option<Proc>>>; 3],
    etcd: Proc,
}

const NAMES: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

impl Plane {
    fn manifests(&self) -> PathBuf {
        self.dir.join("manifests")
    }
    fn conf(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
    fn pid(&self, i: usize) -> Option<u32> {
        lock(&self.pods[i]).as_ref().map(|p| p.pid())
    }
    /// The URLs of the probes the manifest of pod `i` declares (as kubepki should resolve them).
    fn probe_urls(&self, i: usize) -> Vec<String> {
        let base = format!("https://{}:{}", self.ip, self.ports[i]);
        match i {
            0 => vec![format!("{base}/livez"), format!("{base}/readyz")],
            _ => vec![format!("{base}/healthz")],
        }
    }
    fn log_tails(&self) -> String {
        let mut s = format!("\n--- etcd log:\n{}", tail(&self.etcd.log_text(), 20));
        for n in NAMES {
            let log = self.dir.join(format!("{n}.log"));
            s.push_str(&format!(
                "\n--- {n} log (all runs), last 30 lines:\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30)
            ));
        }
        if let Some(k) = &self.kubelet {
            s.push_str(&format!("\n--- mini kubelet: {:?}", k.events()));
        }
        s
    }
}

/// kubeadm's static pod manifest for `name`, reduced to what kubepki reads: the probes. With
/// `named`, the port is `probe-port`, resolved through the container's ports (newer kubeadm).
fn manifest(name: &str, ip: IpAddr, port: u16, named: bool, probes: &[(&str, &str)]) -> String {
    let mut m = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: {name}\n    tier: control-plane\n  \
         name: {name}\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  priorityClassName: \
         system-node-critical\n  containers:\n  - name: {name}\n    image: k8s.gcr.io/{name}:v1.20.2\n    \
         command:\n    - {name}\n"
    );
    let port_ref = if named {
        m.push_str(&format!(
            "    ports:\n    - containerPort: {port}\n      name: probe-port\n      protocol: TCP\n"
        ));
        "probe-port".to_string()
    } else {
        port.to_string()
    };
    for (kind, path) in probes {
        m.push_str(&format!(
            "    {kind}:\n      failureThreshold: 8\n      httpGet:\n        host: {ip}\n        path: {path}\n        \
             port: {port_ref}\n        scheme: HTTPS\n      initialDelaySeconds: 10\n      periodSeconds: 10\n      \
             timeoutSeconds: 15\n"
        ));
    }
    m
}

/// The HTTP status of an unauthenticated GET of `url`, not verifying the certificate (as the
/// kubelet probes); 0 when nothing answers.
fn probe_status(url: &str) -> u16 {
    let o = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(url)
        .output()
        .expect("curl");
    stdout(&o).trim().parse().unwrap_or(0)
}

fn served_serial(p: &Plane) -> String {
    let o = run_ok(Command::new("timeout").args(["-k", "2", "10", "sh", "-c"]).arg(format!(
        "openssl s_client -connect {}:{} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        p.ip, p.ports[0]
    )));
    stdout(&o).trim().to_string()
}

fn renew_restart(p: &Plane, names: &[&str]) -> Command {
    let mut c = kubepki_in(&p.dir, &["certs", "renew"]);
    c.args(names)
        .arg("--restart-static-pods")
        .arg("--manifests-dir")
        .arg(p.manifests())
        .args(["--file-check-frequency", "1s", "--restart-timeout", "90s"]);
    c
}

#[test]
fn restart_static_pods_on_a_live_control_plane() {
    let started = Instant::now();
    ensure_control_plane_tools();
    let bin = k8s_bin_dir_with("kube-scheduler");
    let tmp = scratch();
    let dir = tmp.path().to_path_buf();
    let ip = loopback(LOOPBACK);
    let api_port = init_control_plane(&dir, NODE, ip, &["--encryption-algorithm", "ECDSA-P256"]);
    let (etcd, etcd_url) = start_etcd(&dir, NODE, ip);
    let ports = [api_port, free_port(ip), free_port(ip)];
    let mut p = Plane {
        kubelet: None,
        dir: dir.clone(),
        ip,
        ports,
        pods: Default::default(),
        etcd,
    };
    let m = p.manifests();
    let api_probes = [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ];
    let healthz = [("livenessProbe", "/healthz"), ("startupProbe", "/healthz")];
    for (i, named) in [(0, false), (1, true), (2, true)] {
        let probes: &[(&str, &str)] = if i == 0 { &api_probes } else { &healthz };
        write_file(
            &m.join(format!("{}.yaml", NAMES[i])),
            manifest(NAMES[i], ip, ports[i], named, probes).as_bytes(),
        );
    }
    // The controller-manager and scheduler take a moment before their process even starts, as
    // a container does: a restart that does not wait for their probes would return before.
    let (b, d) = (bin.clone(), dir.clone());
    let api = Box::new(move || start_apiserver(&b, &d, ip, ports[0], &etcd_url));
    let (b, d) = (bin.clone(), dir.clone());
    let kcm = Box::new(move || {
        std::thread::sleep(Duration::from_secs(2));
        start_kcm_on(&b, &d, ip, ports[1], "*")
    });
    let (b, d) = (bin.clone(), dir.clone());
    let sched = Box::new(move || {
        std::thread::sleep(Duration::from_secs(2));
        start_scheduler(&b, &d, ip, ports[2])
    });
    let spawns: [Box<dyn Fn() -> Proc + Send>; 3] = [api, kcm, sched];
    let pods = spawns
        .into_iter()
        .enumerate()
        .map(|(i, spawn)| StaticPod {
            manifest: m.join(format!("{}.yaml", NAMES[i])),
            slot: p.pods[i].clone(),
            spawn,
        })
        .collect();
    p.kubelet = Some(MiniKubelet::start(pods, Duration::from_secs(420)));

    run_checks(&mut p, checks, Plane::log_tails);
    eprintln!(
        "restart static pods test: passed in {:?}",
        started.elapsed()
    );
}

fn checks(p: &mut Plane) {
    let super_admin = p.conf("super-admin.conf");
    wait_readyz(&super_admin, Duration::from_secs(90), || {});
    for i in 1..3 {
        let url = &p.probe_urls(i)[0];
        wait_for(url, Duration::from_secs(60), 120, || {
            (probe_status(url) == 200).then_some(())
        });
    }
    let kubelet = p.kubelet.as_ref().unwrap();
    let boot = kubelet.events();
    assert_eq!(boot.len(), 3, "{boot:?}");
    let pids: Vec<Option<u32>> = (0..3).map(|i| p.pid(i)).collect();

    // 1. renew all --restart-static-pods.
    let t = Instant::now();
    let out = run_ok(&mut renew_restart(p, &["all"]));
    let took = t.elapsed();
    // The moment it returns, every probe it waited for answers.
    for i in 0..3 {
        for url in p.probe_urls(i) {
            assert_eq!(probe_status(&url), 200, "{url} right after renew returned");
        }
    }
    let text = stdout(&out);
    for i in 0..3 {
        let urls = p.probe_urls(i).join(", ");
        for line in [
            format!(
                "[restart] {}: manifest restored; waiting for {urls}\n",
                NAMES[i]
            ),
            format!("[restart] {} is healthy again after ", NAMES[i]),
        ] {
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        assert_ne!(p.pid(i), pids[i], "{} was not restarted", NAMES[i]);
    }
    let last: Vec<&str> = text.lines().rev().take(2).collect();
    assert_eq!(
        last,
        [
            "[renew] etcd was not restarted: it reads its serving and peer certificates on every new connection",
            "[renew] restarted kube-apiserver, kube-controller-manager, kube-scheduler: each is healthy again",
        ],
        "the last lines of:\n{text}"
    );
    let events = kubelet.events()[3..].to_vec();
    let expected: Vec<String> = NAMES
        .iter()
        .flat_map(|n| [format!("{n} stop"), format!("{n} start")])
        .collect();
    assert_eq!(events, expected, "each stopped and started once, in turn");
    assert!(!p.dir.join("kubepki-held-manifests").exists());
    eprintln!("renew all --restart-static-pods: {took:?}");

    // 2. With stdout a broken pipe: same restart, and exit 0.
    let before = kubelet.events().len();
    let pid = p.pid(0);
    let o = run_sinks(
        &renew_restart(p, &["apiserver"]),
        Broken,
        Captured,
        Duration::from_secs(180),
    );
    assert_no_panic(&o, "renew apiserver --restart-static-pods | (closed)");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        kubelet.events()[before..],
        ["kube-apiserver stop", "kube-apiserver start"]
    );
    assert_ne!(p.pid(0), pid);
    for url in p.probe_urls(0) {
        assert_eq!(
            probe_status(&url),
            200,
            "{url} after the broken-stdout restart"
        );
    }
    assert_eq!(
        served_serial(p),
        cert_serial(&p.dir.join("pki/apiserver.crt")),
        "kube-apiserver serves the certificate of the broken-stdout renewal"
    );

    csr_commands_with_broken_output(p);
}

/// A CertificateSigningRequest named `name` for `signer`, created with super-admin.conf.
fn create_csr(p: &Plane, name: &str, subject: &str, signer: &str, usages: &str) {
    let yaml = csr_object(&p.dir.join("csrs"), name, subject, &[], signer, usages);
    let o = kc(
        &p.conf("super-admin.conf"),
        &["create", "-f", &yaml.display().to_string()],
    );
    assert!(o.status.success(), "create CSR {name}\n{}", show(&o));
}

/// The types of CSR `name`'s conditions, e.g. "Approved".
fn csr_conditions(p: &Plane, name: &str) -> String {
    let o = kc(
        &p.conf("super-admin.conf"),
        &[
            "get",
            "csr",
            name,
            "-o",
            "jsonpath={.status.conditions[*].type}",
        ],
    );
    stdout(&o)
}

fn csr_commands_with_broken_output(p: &Plane) {
    let super_admin = p.conf("super-admin.conf");
    create_csr(
        p,
        "client-eve",
        "/CN=eve",
        "kubernetes.io/kube-apiserver-client",
        "\"client auth\", \"digital signature\"",
    );
    let mut approve = kubepki();
    approve
        .args(["csr", "approve", "client-eve", "--force", "--kubeconfig"])
        .arg(&super_admin);
    let o = run_sinks(&approve, Broken, Broken, Duration::from_secs(60));
    assert_eq!(
        o.status.code(),
        Some(0),
        "csr approve with stdout and stderr broken"
    );
    assert_eq!(csr_conditions(p, "client-eve"), "Approved");

    let mut list = kubepki();
    list.args(["csr", "list", "--all", "--kubeconfig"])
        .arg(&super_admin);
    let o = run_sinks(&list, Broken, Captured, Duration::from_secs(60));
    assert_no_panic(&o, "csr list");
    assert_eq!(
        o.status.code(),
        Some(1),
        "csr list to a broken pipe: its output is lost"
    );
    assert_eq!(
        stderr(&o).trim(),
        "error: cannot write the output to standard output: Broken pipe (os error 32)"
    );
    let o = run_sinks(&list, Closed, Broken, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0));

    // The controller logs every decision to stderr: a broken stderr must not stop it. A
    // serving-certificate request from someone who is not the node (super-admin) is denied.
    let port = free_port(p.ip);
    let mut ctl = kubepki();
    ctl.arg("controller")
        .arg("--kubeconfig")
        .arg(&super_admin)
        .arg("--metrics-bind-address")
        .arg(format!("{}:{port}", p.ip))
        .args(["--health-probe-bind-address", "0", "--leader-elect=false"])
        .env("RUST_LOG", "debug");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = ctl
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut ctl = Proc::adopt("kubepki controller", child);
    create_csr(
        p,
        "serving-mallory",
        "/O=system:nodes/CN=system:node:cp-32",
        "kubernetes.io/kubelet-serving",
        "\"digital signature\", \"server auth\"",
    );
    let decided = (0..60).find_map(|_| {
        if let Some(st) = ctl.try_wait() {
            panic!("the controller exited ({st}) with its stderr broken");
        }
        let c = csr_conditions(p, "serving-mallory");
        if c.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
            None
        } else {
            Some(c)
        }
    });
    assert_eq!(
        decided.as_deref(),
        Some("Denied"),
        "the controller's decision"
    );
    assert_eq!(
        probe_status(&format!("http://{}:{port}/healthz", p.ip)),
        200,
        "the controller's /healthz"
    );
    assert!(ctl.try_wait().is_none(), "the controller still runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ctl.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = wait_for(
        "the controller to stop after SIGTERM",
        Duration::from_secs(10),
        100,
        || ctl.try_wait(),
    );
    assert_eq!(
        st.code(),
        Some(0),
        "the controller's exit status after SIGTERM"
    );
}
