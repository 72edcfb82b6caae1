//! Control-plane servers for the integration tests: etcd, kube-apiserver v1.20.2 and
//! kube-controller-manager v1.20.2, started with the flags kubeadm writes into its static pod
//! manifests, on files that kubepki wrote. Each is a `Proc`, stopped by PID when dropped.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

/// The running servers and the files kubepki wrote for them.
pub struct Cluster {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub ip: IpAddr,
    pub api_port: u16,
    pub etcd_url: String,
    // Field order is drop order: the controller manager, then kube-apiserver, then the etcd
    // it writes to.
    pub kcm: Option<Proc>,
    pub apiserver: Proc,
    pub etcd: Proc,
}

impl Cluster {
    pub fn pki(&self, f: &str) -> PathBuf {
        self.dir.join("pki").join(f)
    }

    pub fn conf(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    pub fn server(&self) -> String {
        format!("https://{}:{}", self.ip, self.api_port)
    }

    /// The last lines of every server's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut s = String::new();
        for p in [Some(&self.etcd), Some(&self.apiserver), self.kcm.as_ref()]
            .into_iter()
            .flatten()
        {
            s.push_str(&format!(
                "\n--- {} (pid {}) log {}, last 40 lines:\n{}",
                p.name,
                p.pid(),
                p.log.display(),
                tail(&p.log_text(), 40)
            ));
        }
        s
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Panics with the log tail of `p` if it has exited.
pub fn assert_running(p: &mut Proc) {
    if let Some(st) = p.try_wait() {
        panic!(
            "{} exited early with {st}; log {}:\n{}",
            p.name,
            p.log.display(),
            tail(&p.log_text(), 60)
        );
    }
}

/// A single-member etcd on `ip` (free ports), certificates from `dir/pki/etcd`, data in
/// `dir/etcd-data`, log in `dir/etcd.log`; returns it and its client URL.
pub fn start_etcd(dir: &Path, name: &str, ip: IpAddr) -> (Proc, String) {
    let m = EtcdMember::new(name, dir, ip);
    let mut p = start_etcd_member(&m, &initial_cluster(std::slice::from_ref(&m)), "new");
    p.name = "etcd".into();
    (p, m.client_url())
}

/// kube-apiserver with the flags kubeadm v1.20 writes into its static pod manifest, every file
/// one that `kubepki init` wrote.
pub fn start_apiserver(bin: &Path, dir: &Path, ip: IpAddr, port: u16, etcd_url: &str) -> Proc {
    let pki = |f: &str| dir.join("pki").join(f).display().to_string();
    let flags: Vec<String> = vec![
        format!("--advertise-address={ip}"),
        format!("--bind-address={ip}"),
        format!("--secure-port={port}"),
        "--insecure-port=0".into(),
        "--allow-privileged=true".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--client-ca-file={}", pki("ca.crt")),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--enable-bootstrap-token-auth=true".into(),
        format!("--etcd-cafile={}", pki("etcd/ca.crt")),
        format!("--etcd-certfile={}", pki("apiserver-etcd-client.crt")),
        format!("--etcd-keyfile={}", pki("apiserver-etcd-client.key")),
        format!("--etcd-servers={etcd_url}"),
        format!(
            "--kubelet-client-certificate={}",
            pki("apiserver-kubelet-client.crt")
        ),
        format!(
            "--kubelet-client-key={}",
            pki("apiserver-kubelet-client.key")
        ),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
        format!("--proxy-client-cert-file={}", pki("front-proxy-client.crt")),
        format!("--proxy-client-key-file={}", pki("front-proxy-client.key")),
        "--requestheader-allowed-names=front-proxy-client".into(),
        format!(
            "--requestheader-client-ca-file={}",
            pki("front-proxy-ca.crt")
        ),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        // The flag is plural in kube-apiserver (kubeadm writes it so too).
        "--requestheader-username-headers=X-Remote-User".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", pki("sa.pub")),
        format!("--service-account-signing-key-file={}", pki("sa.key")),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        format!("--tls-cert-file={}", pki("apiserver.crt")),
        format!("--tls-private-key-file={}", pki("apiserver.key")),
        // Where it would write self-signed serving certs: never used here, kept in scratch.
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
    ];
    let mut c = Command::new(bin.join("kube-apiserver"));
    c.args(&flags);
    Proc::spawn("kube-apiserver", c, &dir.join("kube-apiserver.log"))
}

/// kubectl as `conf`, its discovery cache kept in the scratch dir beside the kubeconfig (not in
/// $HOME, where every run's fresh port would leave one more cache behind).
pub fn kctl(conf: &Path) -> Command {
    let mut c = kubectl(conf);
    c.arg("--cache-dir")
        .arg(conf.parent().unwrap().join("kube-cache"));
    c
}

/// kube-controller-manager v1.20.2 as kubeadm runs it (controller-manager.conf for its own and
/// for delegated authentication/authorization, sa.key to sign service-account tokens, one
/// service account per controller), running only `controllers` (its `--controllers` list).
pub fn start_kcm(bin: &Path, dir: &Path, ip: IpAddr, controllers: &str) -> Proc {
    start_kcm_on(bin, dir, ip, free_port(ip), controllers)
}

/// What kubeadm gives kube-controller-manager and kube-scheduler alike: `conf` (in `dir`) for
/// their own and delegated authentication/authorization, HTTPS only on `ip:port`, self-signed
/// serving certificates in `dir/cert_dir`.
fn control_plane_flags(
    dir: &Path,
    conf: &str,
    ip: IpAddr,
    port: u16,
    cert_dir: &str,
) -> Vec<String> {
    let conf = dir.join(conf).display().to_string();
    vec![
        format!("--kubeconfig={conf}"),
        format!("--authentication-kubeconfig={conf}"),
        format!("--authorization-kubeconfig={conf}"),
        format!("--bind-address={ip}"),
        format!("--secure-port={port}"),
        "--port=0".into(),
        format!("--cert-dir={}", dir.join(cert_dir).display()),
    ]
}

/// As [`start_kcm`], serving (/healthz among others) on `ip:port`.
pub fn start_kcm_on(bin: &Path, dir: &Path, ip: IpAddr, port: u16, controllers: &str) -> Proc {
    let pki = |f: &str| dir.join("pki").join(f).display().to_string();
    let mut flags = control_plane_flags(dir, "controller-manager.conf", ip, port, "kcm-certs");
    flags.extend([
        format!("--client-ca-file={}", pki("ca.crt")),
        format!(
            "--requestheader-client-ca-file={}",
            pki("front-proxy-ca.crt")
        ),
        format!("--root-ca-file={}", pki("ca.crt")),
        format!("--service-account-private-key-file={}", pki("sa.key")),
        format!("--cluster-signing-cert-file={}", pki("ca.crt")),
        format!("--cluster-signing-key-file={}", pki("ca.key")),
        "--use-service-account-credentials=true".into(),
        "--leader-elect=false".into(),
        format!("--controllers={controllers}"),
    ]);
    let mut c = Command::new(bin.join("kube-controller-manager"));
    c.args(&flags);
    Proc::spawn(
        "kube-controller-manager",
        c,
        &dir.join("kube-controller-manager.log"),
    )
}

/// As [`start_kcm_on`], signing CertificateSigningRequests with `signer` (certificate, key)
/// instead of `pki/ca.crt`/`pki/ca.key` (during a CA rotation the signer has files of its own,
/// while `ca.crt`, still its `--client-ca-file` and `--root-ca-file`, is a bundle).
pub fn start_kcm_signing(
    bin: &Path,
    dir: &Path,
    ip: IpAddr,
    port: u16,
    controllers: &str,
    signer: (&Path, &Path),
) -> Proc {
    let pki = |f: &str| dir.join("pki").join(f).display().to_string();
    let mut flags = control_plane_flags(dir, "controller-manager.conf", ip, port, "kcm-certs");
    flags.extend([
        format!("--client-ca-file={}", pki("ca.crt")),
        format!(
            "--requestheader-client-ca-file={}",
            pki("front-proxy-ca.crt")
        ),
        format!("--root-ca-file={}", pki("ca.crt")),
        format!("--service-account-private-key-file={}", pki("sa.key")),
        format!("--cluster-signing-cert-file={}", signer.0.display()),
        format!("--cluster-signing-key-file={}", signer.1.display()),
        "--use-service-account-credentials=true".into(),
        "--leader-elect=false".into(),
        format!("--controllers={controllers}"),
    ]);
    let mut c = Command::new(bin.join("kube-controller-manager"));
    c.args(&flags);
    Proc::spawn(
        "kube-controller-manager",
        c,
        &dir.join("kube-controller-manager.log"),
    )
}

/// kube-scheduler v1.20.2 as kubeadm runs it (scheduler.conf for its own and for delegated
/// authentication/authorization), serving /healthz on `ip:port`. Its binary is built on first
/// use (see [`k8s_bin_dir_with`]).
pub fn start_scheduler(bin: &Path, dir: &Path, ip: IpAddr, port: u16) -> Proc {
    let mut flags = control_plane_flags(dir, "scheduler.conf", ip, port, "scheduler-certs");
    flags.push("--leader-elect=false".into());
    let mut c = Command::new(bin.join("kube-scheduler"));
    c.args(&flags);
    Proc::spawn("kube-scheduler", c, &dir.join("kube-scheduler.log"))
}

/// Runs kubectl with `conf`; the output whatever the exit status.
pub fn kc(conf: &Path, args: &[&str]) -> Output {
    kctl(conf)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl {args:?}: {e}"))
}

pub fn show(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// One member of a (possibly multi-member) etcd cluster: its name, the node directory kubepki
/// wrote (`dir/pki/etcd/*`; data in `dir/etcd-data`, log in `dir/etcd.log`), its address and
/// the ports it listens on (picked free once, kept across restarts).
#[derive(Clone, Debug)]
pub struct EtcdMember {
    pub name: String,
    pub dir: PathBuf,
    pub ip: IpAddr,
    pub client_port: u16,
    pub peer_port: u16,
}

impl EtcdMember {
    pub fn new(name: &str, dir: &Path, ip: IpAddr) -> EtcdMember {
        let client_port = free_port(ip);
        let mut peer_port = free_port(ip);
        for _ in 0..20 {
            if peer_port != client_port {
                break;
            }
            peer_port = free_port(ip);
        }
        assert_ne!(client_port, peer_port, "no second free port on {ip}");
        EtcdMember {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            ip,
            client_port,
            peer_port,
        }
    }

    pub fn client_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.peer_port)
    }

    /// A file below the node's cert dir, e.g. `etcd/server.crt`.
    pub fn pki(&self, f: &str) -> PathBuf {
        self.dir.join("pki").join(f)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }
}

/// `--initial-cluster` for these members: `name=peer-url,...`.
pub fn initial_cluster(members: &[EtcdMember]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts `m` with the flags kubeadm writes into its etcd static pod manifest (server cert for
/// clients with `--client-cert-auth`, peer cert for peers with `--peer-client-cert-auth`, both
/// trusting `etcd/ca.crt`), `state` being `new` or `existing`. The log is appended to across
/// restarts.
pub fn start_etcd_member(m: &EtcdMember, initial_cluster: &str, state: &str) -> Proc {
    let pki = m.dir.join("pki/etcd");
    let client_url = m.client_url();
    let peer_url = m.peer_url();
    let mut c = Command::new("etcd");
    c.arg(format!("--name={}", m.name))
        .arg(format!("--data-dir={}", m.dir.join("etcd-data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg(format!("--initial-cluster-state={state}"))
        .arg(format!("--cert-file={}", pki.join("server.crt").display()))
        .arg(format!("--key-file={}", pki.join("server.key").display()))
        .arg(format!(
            "--trusted-ca-file={}",
            pki.join("ca.crt").display()
        ))
        .arg("--client-cert-auth=true")
        .arg(format!(
            "--peer-cert-file={}",
            pki.join("peer.crt").display()
        ))
        .arg(format!(
            "--peer-key-file={}",
            pki.join("peer.key").display()
        ))
        .arg(format!(
            "--peer-trusted-ca-file={}",
            pki.join("ca.crt").display()
        ))
        .arg("--peer-client-cert-auth=true")
        .arg("--snapshot-count=10000");
    Proc::spawn(&m.name, c, &m.log())
}

/// etcdctl (API v3) against `endpoints` (comma-separated) with a CA and a client certificate,
/// short dial and command timeouts, and the whole run bounded by coreutils `timeout` (which
/// kills it by PID).
pub fn etcdctl(endpoints: &str, ca: &Path, cert: &Path, key: &Path) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "2", "20", "etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=2s", "--command-timeout=4s"])
        .arg(format!("--cacert={}", ca.display()))
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .stdin(std::process::Stdio::null());
    c
}

/// The last `n` lines of the log of every process, for failure messages.
pub fn log_tails<'a>(procs: impl IntoIterator<Item = &'a Proc>, n: usize) -> String {
    let mut s = String::new();
    for p in procs {
        s.push_str(&format!(
            "\n--- {} (pid {}) log {}, last {n} lines:\n{}",
            p.name,
            p.pid(),
            p.log.display(),
            tail(&p.log_text(), n)
        ));
    }
    s
}

/// `kubepki init` for a control-plane node at `ip` whose API server will listen on a free port
/// of `ip` (the control-plane endpoint in every kubeconfig). Returns that port.
pub fn init_control_plane(dir: &Path, node: &str, ip: IpAddr, extra: &[&str]) -> u16 {
    let port = free_port(ip);
    let endpoint = format!("{ip}:{port}");
    let port_s = port.to_string();
    let mut args = vec![
        "--control-plane-endpoint",
        &endpoint,
        "--apiserver-bind-port",
        &port_s,
    ];
    args.extend_from_slice(extra);
    init_node(dir, node, ip, &args);
    port
}

impl Cluster {
    /// `kubepki init` in `dir`, then etcd and kube-apiserver v1.20.2 on what it wrote.
    pub fn start(bin: PathBuf, dir: &Path, node: &str, ip: IpAddr) -> Cluster {
        let api_port = init_control_plane(dir, node, ip, &[]);
        Cluster::start_on(bin, dir, node, ip, api_port)
    }

    /// etcd and kube-apiserver v1.20.2 (on `ip:api_port`) on the files already in `dir`,
    /// however they got there.
    pub fn start_on(bin: PathBuf, dir: &Path, node: &str, ip: IpAddr, api_port: u16) -> Cluster {
        let (etcd, etcd_url) = start_etcd(dir, node, ip);
        let apiserver = start_apiserver(&bin, dir, ip, api_port, &etcd_url);
        Cluster {
            bin,
            dir: dir.to_path_buf(),
            ip,
            api_port,
            etcd_url,
            kcm: None,
            apiserver,
            etcd,
        }
    }

    /// Waits (bounded) until etcd serves TLS with the etcd-server cert and answers `endpoint
    /// health` to the healthcheck client; panics with its log if it exits meanwhile.
    pub fn wait_etcd_healthy(&mut self) {
        let url = self.etcd_url.clone();
        let ca = self.pki("etcd/ca.crt");
        let cert = self.pki("etcd/healthcheck-client.crt");
        let key = self.pki("etcd/healthcheck-client.key");
        let etcd = &mut self.etcd;
        wait_for("etcd endpoint health", Duration::from_secs(30), 60, || {
            assert_running(etcd);
            let o = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &url, "--dial-timeout=2s"])
                .args(["--command-timeout=3s", "--cacert"])
                .arg(&ca)
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .args(["endpoint", "health"])
                .stdin(std::process::Stdio::null())
                .output()
                .ok()?;
            let text = stdout(&o) + &stderr(&o);
            (o.status.success() && text.contains("is healthy")).then_some(())
        });
    }

    /// Waits (bounded: 90 s) until kube-apiserver answers /readyz = ok to super-admin.conf;
    /// panics with its log if it exits meanwhile.
    pub fn wait_apiserver_ready(&mut self) {
        let super_admin = self.conf("super-admin.conf");
        let api = &mut self.apiserver;
        wait_readyz(&super_admin, Duration::from_secs(90), || {
            assert_running(api)
        });
    }
}

/// Waits (bounded: `timeout`, two tries a second) until kube-apiserver answers /readyz = ok
/// to `conf`; `alive` runs before each try, to panic early if the server has exited.
pub fn wait_readyz(conf: &Path, timeout: Duration, mut alive: impl FnMut()) {
    wait_for(
        "kube-apiserver /readyz = ok",
        timeout,
        (timeout.as_secs() * 2) as u32,
        || {
            alive();
            let o = kc(conf, &["get", "--raw", "/readyz"]);
            (o.status.success() && stdout(&o).trim() == "ok").then_some(())
        },
    );
}

/// The binding kubeadm creates for admin.conf's group (kubeadm:cluster-admins ->
/// cluster-admin), made as `super_admin` (system:masters).
pub fn create_cluster_admins_binding(super_admin: &Path) {
    run_ok(kctl(super_admin).args([
        "create",
        "clusterrolebinding",
        "kubeadm:cluster-admins",
        "--clusterrole=cluster-admin",
        "--group=kubeadm:cluster-admins",
    ]));
}

/// Waits (bounded: 20 s, 40 tries; RBAC sees a new binding through an informer) until
/// `kubectl get namespaces` as `conf` lists every one of `namespaces`.
pub fn wait_lists_namespaces(what: &str, conf: &Path, namespaces: &[&str]) {
    wait_for(what, Duration::from_secs(20), 40, || {
        let o = kc(conf, &["get", "namespaces", "-o", "name"]);
        let s = stdout(&o);
        let listed = |n: &&str| s.lines().any(|l| l == format!("namespace/{n}"));
        (o.status.success() && namespaces.iter().all(listed)).then_some(())
    });
}

/// The serial of the certificate in a PEM file, as openssl prints it (`serial=...`).
pub fn cert_serial(path: &Path) -> String {
    let o = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(path),
    );
    stdout(&o).trim().to_string()
}

/// A thread that runs until asked to stop (it polls the flag it is given), then is joined:
/// by `halt`, or when this guard drops (also on panic).
pub struct Background {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Background {
    pub fn spawn(f: impl FnOnce(&AtomicBool) + Send + 'static) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || f(&s));
        Background {
            stop,
            handle: Some(handle),
        }
    }

    pub fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Runs `checks` on `t`; if they panic, panics again with their message followed by
/// `tails(t)` (the servers' logs, for the failure message).
pub fn run_checks<T>(t: &mut T, checks: impl FnOnce(&mut T), tails: impl FnOnce(&T) -> String) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checks(&mut *t)));
    if let Err(e) = result {
        let msg = panic_message(&*e);
        panic!("{msg}\n{}", tails(t));
    }
}

/// curl with a client certificate, trusting `ca`, bounded to 10 s; the caller adds the
/// request.
pub fn curl_with_cert(ca: &Path, cert: &Path, key: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key);
    c
}

/// The text of a caught panic.
pub fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// What the control-plane tests need installed; returns the Kubernetes binaries' directory.
pub fn ensure_control_plane_tools() -> PathBuf {
    ensure_etcd();
    ensure_openssl();
    ensure_installed("curl", &["curl"]);
    k8s_bin_dir()
}

/// A static pod as the mini kubelet runs it: its manifest, the slot holding its process while
/// it runs (shared with the test), and how to start it.
pub struct StaticPod {
    pub manifest: PathBuf,
    pub slot: Arc<Mutex<Option<Proc>>>,
    pub spawn: Box<dyn Fn() -> Proc + Send>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps each static pod running exactly while its manifest exists, as the kubelet does:
/// polls every 200 ms, starts the process when the manifest appears, stops it (by PID) when it
/// goes. Bounded: it gives up after `limit`. Stopped and joined on `finish` or drop; the
/// processes stay in their slots (and are stopped when those drop).
pub struct MiniKubelet {
    events: Arc<Mutex<Vec<String>>>,
    thread: Background,
}

impl MiniKubelet {
    pub fn start(pods: Vec<StaticPod>, limit: Duration) -> MiniKubelet {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let thread = Background::spawn(move |stop| {
            let deadline = Instant::now() + limit;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                for pod in &pods {
                    let name = pod
                        .manifest
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let present = pod.manifest.is_file();
                    let mut proc_ = lock(&pod.slot);
                    match (present, proc_.is_some()) {
                        (true, false) => {
                            *proc_ = Some((pod.spawn)());
                            lock(&ev).push(format!("{name} start"));
                        }
                        (false, true) => {
                            if let Some(mut p) = proc_.take() {
                                p.stop(Duration::from_secs(20));
                            }
                            lock(&ev).push(format!("{name} stop"));
                        }
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        MiniKubelet { events, thread }
    }

    /// What it did so far: "<manifest stem> start|stop", in order.
    pub fn events(&self) -> Vec<String> {
        lock(&self.events).clone()
    }

    /// Stops watching; returns what it did.
    pub fn finish(mut self) -> Vec<String> {
        self.thread.halt();
        self.events()
    }
}
