//! A real single-node kubeadm v1.20.2 cluster (`harness/up.sh`): containerd and runc, a
//! supervised kubelet, the control plane as static pods, a bridge CNI, all in the harness's own
//! network namespace. One per test binary: [`Node::up`] brings it up, [`Node::down`] tears it
//! down and checks that nothing is left; dropping a `Node` that was not taken down (a failed
//! assertion) runs `down.sh` too.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{cert_serial, tail};
use super::*;

/// The address and name the harness gives the node (harness/lib.sh).
pub const NODE_IP: &str = "10.251.0.1";
pub const NODE_NAME: &str = "kubepki-node";

pub struct Node {
    pub harness: PathBuf,
    pub run: PathBuf,
    /// The network namespace, as a path for nsenter.
    pub ns: PathBuf,
    pub kubectl: PathBuf,
    pub up_time: Duration,
    /// What up.sh said.
    pub up_log: String,
    down: bool,
}

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("harness")
}

impl Node {
    /// Brings the cluster up with `env` (harness knobs such as `KH_KUBEPKI`), from a clean
    /// machine: leftovers of a killed run are cleaned by up.sh itself.
    pub fn up(env: &[(&str, &str)]) -> Node {
        let harness = harness_dir();
        let run = PathBuf::from(format!("{WORK}/run"));
        let started = Instant::now();
        let mut c = Command::new("bash");
        c.arg(harness.join("up.sh"));
        for (k, v) in env {
            c.env(k, v);
        }
        let (code, log) = script(c);
        let up_time = started.elapsed();
        // 3: refused before changing anything (another cluster here): nothing to tear down.
        assert_ne!(code, Some(3), "harness/up.sh refused:\n{}", tail(&log, 20));
        if code != Some(0) {
            let (_, down) = script({
                let mut c = Command::new("bash");
                c.arg(harness.join("down.sh"));
                c
            });
            panic!(
                "harness/up.sh failed:\n{}\n--- down.sh:\n{}",
                tail(&log, 60),
                tail(&down, 20)
            );
        }
        assert!(
            !log.contains("already up"),
            "a harness cluster was already up (with other settings?): run harness/down.sh first"
        );
        let env_sh = fs::read_to_string(run.join("env.sh")).unwrap();
        let kubectl = env_sh
            .split_whitespace()
            .find_map(|w| w.strip_prefix("KUBECTL="))
            .map(PathBuf::from)
            .expect("env.sh names KUBECTL");
        Node {
            harness,
            run,
            up_log: log,
            ns: PathBuf::from("/run/netns/kubepki-harness"),
            kubectl,
            up_time,
            down: false,
        }
    }

    /// The harness containerd's socket (for ctr).
    pub fn socket(&self) -> String {
        format!("{WORK}/state/containerd/containerd.sock")
    }

    /// `program` run inside the cluster's network namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns.display()))
            .arg("--")
            .arg(program)
            .env("KUBECONFIG", "/etc/kubernetes/admin.conf")
            .stdin(Stdio::null());
        c
    }

    /// kubectl as the cluster admin, inside the namespace.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(&self.kubectl);
        c.arg("--request-timeout=20s")
            .arg(format!("--cache-dir={WORK}/state/kube-cache"))
            .args(args);
        c
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        stdout(&run_ok(&mut self.kubectl(args)))
    }

    /// kubepki (the binary under test), inside the namespace.
    pub fn kubepki(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(env!("CARGO_BIN_EXE_kubepki"));
        c.args(args);
        c
    }

    /// A harness helper script (kubeletctl.sh, kubepki-image.sh, ...) that must succeed;
    /// its output.
    pub fn script(&self, name: &str, args: &[&str]) -> String {
        let mut c = Command::new("bash");
        c.arg(self.harness.join(name)).args(args);
        let (code, out) = script(c);
        assert_eq!(
            code,
            Some(0),
            "harness/{name} {args:?} failed:\n{}",
            tail(&out, 40)
        );
        out
    }

    /// IDs of the running containers of each control-plane component (CRI labels, via ctr).
    pub fn control_plane_containers(&self) -> Vec<(String, Vec<String>)> {
        let tasks = stdout(&run_ok(
            Command::new("ctr")
                .env("CONTAINERD_ADDRESS", self.socket())
                .args(["--timeout", "10s", "-n", "k8s.io", "tasks", "ls"]),
        ));
        let running: Vec<&str> = tasks
            .lines()
            .filter(|l| l.contains("RUNNING"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ]
        .iter()
        .map(|c| {
            let ids = stdout(&run_ok(
                Command::new("ctr")
                    .env("CONTAINERD_ADDRESS", self.socket())
                    .args(["--timeout", "10s", "-n", "k8s.io", "containers", "ls", "-q"])
                    .arg(format!("labels.\"io.kubernetes.container.name\"=={c}")),
            ));
            let mut live: Vec<String> = ids
                .lines()
                .filter(|id| running.contains(id))
                .map(str::to_string)
                .collect();
            live.sort();
            (c.to_string(), live)
        })
        .collect()
    }

    /// The serial of the certificate served at `addr` (inside the node's namespace).
    pub fn served_serial(&self, addr: &str) -> String {
        let mut c = self.cmd("timeout");
        c.args(["10", "openssl", "s_client", "-connect", addr]);
        // s_client prints the served certificate as PEM among its other output, which
        // `openssl x509 -in` skips.
        let dir = scratch();
        let f = dir.path().join("served.txt");
        fs::write(&f, c.output().unwrap().stdout).unwrap();
        cert_serial(&f)
    }

    /// The node's Ready condition status ("True", "False", "Unknown"), if kubectl answers.
    pub fn ready(&self) -> Option<String> {
        let out = self
            .kubectl(&[
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| stdout(&out).trim().to_string())
    }

    /// kubepki as an operator installs it: the image built offline and loaded into containerd,
    /// `kubectl apply -k deploy/`, the controller's two replicas available and the agent
    /// running on this (control-plane) node.
    pub fn deploy_controller(&self) {
        let image = self.script("kubepki-image.sh", &[env!("CARGO_BIN_EXE_kubepki")]);
        assert_eq!(
            image.lines().last().unwrap_or(""),
            "ghcr.io/kubepki/kubepki:0.1.0"
        );
        self.apply_kustomization("deploy");
        for (what, kind, name, path) in [
            (
                "the controller Deployment available",
                "deployment",
                "kubepki-controller",
                "{.status.availableReplicas}",
            ),
            (
                "the control-plane agent DaemonSet ready",
                "daemonset",
                "kubepki-agent-control-plane",
                "{.status.numberReady}",
            ),
        ] {
            let want = if kind == "deployment" { "2" } else { "1" };
            self.wait(what, Duration::from_secs(180), || {
                let out = self
                    .kubectl(&[
                        "-n",
                        "kubepki-system",
                        "get",
                        kind,
                        name,
                        "-o",
                        &format!("jsonpath={path}"),
                    ])
                    .output()
                    .unwrap();
                (stdout(&out).trim() == want).then_some(())
            });
        }
    }

    /// `kubectl apply -k <repo>/<dir>` (the kubectl of the node's version, with its kustomize).
    pub fn apply_kustomization(&self, dir: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        self.kubectl_ok(&["apply", "-k", path.to_str().unwrap()]);
    }

    /// `what` until it returns Some, checking every second for at most `limit`.
    pub fn wait<T>(&self, what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The node's conditions, the pods, and the last lines of the kubelet's and containerd's
    /// logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        for (what, args) in [
            (
                "node conditions",
                &[
                    "get",
                    "nodes",
                    "-o",
                    "jsonpath={range .items[*].status.conditions[*]}{.type}={.status} {.message}{\"\\n\"}{end}",
                ][..],
            ),
            ("pods", &["get", "pods", "-A", "-o", "wide"][..]),
            (
                "the control-plane agent's log",
                &[
                    "-n",
                    "kubepki-system",
                    "logs",
                    "daemonset/kubepki-agent-control-plane",
                    "--tail=40",
                ][..],
            ),
            (
                "events",
                &["get", "events", "-A", "--sort-by=.lastTimestamp"][..],
            ),
        ] {
            let out = self.kubectl(args).output();
            let text = out.map(|o| stdout(&o)).unwrap_or_default();
            s.push_str(&format!("--- {what}:\n{}\n", tail(&text, 30)));
        }
        for log in ["kubelet.log", "containerd.log"] {
            let text = fs::read_to_string(self.run.join(log)).unwrap_or_default();
            s.push_str(&format!("--- {log}, last 30 lines:\n{}\n", tail(&text, 30)));
        }
        s
    }

    /// Tears the cluster down; fails if down.sh reports anything left behind. Returns how long
    /// it took.
    pub fn down(mut self) -> Duration {
        self.down = true;
        let started = Instant::now();
        let mut c = Command::new("bash");
        c.arg(self.harness.join("down.sh"));
        let (code, log) = script(c);
        assert_eq!(
            code,
            Some(0),
            "harness/down.sh left something behind:\n{}",
            tail(&log, 40)
        );
        started.elapsed()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.down {
            let mut c = Command::new("bash");
            c.arg(self.harness.join("down.sh"));
            script(c);
        }
    }
}

/// Runs a harness script with its output in a file, not a pipe: the daemons it starts must not
/// be able to keep the test waiting for an end of file. Killed after 20 minutes (the scripts
/// bound their own steps; a first run may build the kubelet). Returns the exit code and output.
fn script(mut c: Command) -> (Option<i32>, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(20 * 60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (
        status.and_then(|s| s.code()),
        fs::read_to_string(log.path()).unwrap_or_default(),
    )
}

/// Where the harness keeps its state (harness/lib.sh's KH_WORK).
pub const WORK: &str = "/var/lib/kubepki-harness";
