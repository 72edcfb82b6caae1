//! Shared harness for the integration tests: real components only.
//!
//! Rules kept here so every test follows them: servers listen on 127.0.0.x only (the kubeadm
//! node of `node.rs` uses 10.251.0.1, inside a network namespace of its own); every wait is
//! bounded in time and in attempts; every process a test starts is stopped by its PID when its
//! guard drops (also on panic). A component a test needs is installed if absent, never skipped.
#![allow(dead_code)]

pub mod cluster;
pub mod node;
pub mod pki;
pub mod proxy;

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The kubepki binary built for these tests.
pub fn kubepki() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubepki"));
    c.stdin(Stdio::null());
    c
}

/// Runs a command and returns its output, panicking with stdout and stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs a command expected to fail; returns its output.
pub fn run_fail(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `127.0.0.n`
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A port free on `ip` right now (the OS picks it; the listener is closed before returning).
pub fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
}

/// Polls `f` until it returns `Some`, at most `attempts` times and for at most `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    attempts: u32,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    let pause = timeout / attempts.max(1);
    for _ in 0..attempts {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(pause);
    }
    panic!("timed out after {:?} waiting for {what}", start.elapsed());
}

/// A child process that is stopped, by PID, when this guard drops.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// A child started elsewhere (e.g. with its own stdio), stopped by PID on drop like the rest.
    pub fn adopt(name: &str, child: Child) -> Proc {
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: PathBuf::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// None while running; the exit status once it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit either way.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// The repository's sibling `shared` directory (fixtures, tools).
pub fn shared_dir() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        p.is_dir(),
        "{} is missing: the tests need ../shared beside the repository",
        p.display()
    );
    p
}

pub fn fixture_dir() -> PathBuf {
    shared_dir().join("fixtures/kubeadm-v1.20.2")
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Installs Debian packages if `bin` is absent, one installer at a time across test processes.
pub fn ensure_installed(bin: &str, packages: &[&str]) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if have(bin) {
        return;
    }
    let script = format!(
        "flock /tmp/kubepki-tests-apt.lock sh -c 'command -v {bin} >/dev/null || \
         (DEBIAN_FRONTEND=noninteractive apt-get install -y {pk} || \
          (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {pk}))'",
        pk = packages.join(" ")
    );
    let st = Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("running apt-get");
    assert!(
        st.success() && have(bin),
        "could not install {packages:?} for {bin}"
    );
}

pub fn ensure_etcd() {
    ensure_installed("etcd", &["etcd-server", "etcd-client"]);
    ensure_installed("etcdctl", &["etcd-server", "etcd-client"]);
}

pub fn ensure_openssl() {
    ensure_installed("openssl", &["openssl"]);
}

/// Signs the request `csr` as an external CA running `openssl x509 -req` would: with the CA
/// whose certificate and key are `ca`, the extensions `ext` (openssl config lines), `days` of
/// validity and serial `serial`; the certificate goes to `out`.
pub fn openssl_sign(
    csr: &Path,
    ca: (&Path, &Path),
    ext: &str,
    days: u32,
    serial: &str,
    out: &Path,
) {
    ensure_openssl();
    let ext_file = out.with_extension("ext");
    write_file(&ext_file, ext.as_bytes());
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", &days.to_string()])
            .args(["-set_serial", serial, "-in"])
            .arg(csr)
            .arg("-CA")
            .arg(ca.0)
            .arg("-CAkey")
            .arg(ca.1)
            .arg("-extfile")
            .arg(&ext_file)
            .arg("-out")
            .arg(out),
    );
    fs::remove_file(&ext_file).unwrap();
}

/// A CertificateSigningRequest object `name` (YAML, written in `dir`) for a fresh P-256 key that
/// openssl makes: subject `subject`, more `openssl req` arguments in `extra` (e.g. `-addext`),
/// for `signer` with `usages` (comma-separated). Returns the YAML's path.
pub fn csr_object(
    dir: &Path,
    name: &str,
    subject: &str,
    extra: &[&str],
    signer: &str,
    usages: &str,
) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ])
    .args(["-nodes", "-subj", subject, "-keyout"])
    .arg(&key)
    .arg("-out")
    .arg(&csr)
    .args(extra);
    run_ok(&mut c);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(fs::read(&csr).unwrap());
    let yaml = dir.join(format!("{name}.yaml"));
    write_file(
        &yaml,
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\n\
             spec:\n  request: {b64}\n  signerName: {signer}\n  usages: [{usages}]\n"
        )
        .as_bytes(),
    );
    yaml
}

/// kube-apiserver and kube-controller-manager v1.20.2, built once by the shared tool.
pub fn k8s_bin_dir() -> PathBuf {
    k8s_bin_dir_with("")
}

/// As [`k8s_bin_dir`], with `extra` v1.20.2 tools too (the tool's K8S_TEST_EXTRA, e.g.
/// "kube-scheduler"): built once, the first time a test asks (a minute or two).
pub fn k8s_bin_dir_with(extra: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| k8s_tool("")).clone();
    if extra.split_whitespace().all(|t| dir.join(t).is_file()) {
        return dir;
    }
    k8s_tool(extra)
}

fn k8s_tool(extra: &str) -> PathBuf {
    let tool = shared_dir().join("tools/k8s-test-binaries");
    let out = run_ok(Command::new("bash").arg(&tool).env("K8S_TEST_EXTRA", extra));
    let last = stdout(&out).lines().last().unwrap_or("").trim().to_string();
    let dir = PathBuf::from(last);
    assert!(
        dir.join("kube-apiserver").is_file(),
        "{} has no kube-apiserver",
        dir.display()
    );
    dir
}

/// kubectl, preinstalled on these machines.
pub fn kubectl(kubeconfig: &Path) -> Command {
    let mut c = Command::new(kubectl_binary());
    c.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=10s")
        .stdin(Stdio::null());
    c
}

/// The kubectl to run. Here /usr/bin/kubectl is Google Cloud SDK's dispatcher, which asks the
/// API server for its version before every command, even `config view`, to pick one of the
/// versioned binaries beside it: 1.5 s per call when the kubeconfig's server does not exist.
/// Calling the newest versioned binary directly is the same kubectl without that detour.
pub fn kubectl_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        assert!(
            have("kubectl"),
            "kubectl is expected at /usr/bin/kubectl on these machines"
        );
        let resolved = fs::canonicalize("/usr/bin/kubectl").unwrap_or_else(|_| "kubectl".into());
        let dir = resolved.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let minor = name.strip_prefix("kubectl.1.")?.parse().ok()?;
                Some((minor, e.path()))
            })
            .collect();
        versioned.sort();
        versioned
            .pop()
            .map(|(_, p)| p)
            .unwrap_or_else(|| "kubectl".into())
    })
    .clone()
}

/// A fresh scratch directory removed when the guard drops.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kubepki-test-")
        .tempdir()
        .expect("temp dir")
}

/// Every file below `root` with its bytes and mode: to prove "nothing changed".
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<(PathBuf, Vec<u8>, u32)>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.push((p.clone(), Vec::new(), md.permissions().mode()));
                walk(&p, out);
            } else {
                out.push((
                    p.clone(),
                    fs::read(&p).unwrap_or_default(),
                    md.permissions().mode(),
                ));
            }
        }
    }
    walk(root, &mut out);
    out
}

pub fn write_file(p: &Path, contents: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    let mut f = fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    f.write_all(contents).unwrap();
}

/// `kubepki init` into `dir/pki` and `dir` for a node at `ip`, with extra args.
pub fn init_node(dir: &Path, node: &str, ip: IpAddr, extra: &[&str]) -> Output {
    let mut c = kubepki();
    c.arg("init")
        .arg("--cert-dir")
        .arg(dir.join("pki"))
        .arg("--kubeconfig-dir")
        .arg(dir)
        .arg("--node-name")
        .arg(node)
        .arg("--apiserver-advertise-address")
        .arg(ip.to_string())
        .args(extra);
    run_ok(&mut c)
}

/// `kubepki init` of an ECDSA-P256 PKI (fast) into `dir` for node `node` at `ip`, with `extra`
/// flags (e.g. `--now`).
pub fn init_ecdsa(dir: &Path, node: &str, ip: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--encryption-algorithm", "ECDSA-P256"];
    args.extend_from_slice(extra);
    init_node(dir, node, ip.parse().expect("test IP"), &args)
}

/// A scratch directory holding a PKI made by `init_ecdsa`.
pub fn fresh_pki(node: &str, ip: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = scratch();
    init_ecdsa(dir.path(), node, ip, extra);
    dir
}

/// `cmd` run through setpriv as an unprivileged user: root ignores file modes, operators' files
/// do not.
pub fn as_nobody(cmd: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    c
}

/// Everything below `d` owned by the user `as_nobody` runs as.
pub fn give_to_nobody(d: &Path) {
    run_ok(Command::new("chown").args(["-R", "65534:65534"]).arg(d));
}

/// What a child's stdout or stderr is connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// A pipe the test reads.
    Captured,
    /// Closed (`>&-`).
    Closed,
    /// A pipe whose reader has already exited (as after `| head -n 1`): every write fails
    /// with EPIPE, deterministically.
    Broken,
}

/// Runs `cmd` with its stdout and stderr connected as told (stdin /dev/null), bounded to
/// `limit` (then SIGKILLed by PID); what was captured comes back.
pub fn run_sinks(cmd: &Command, out: Sink, err: Sink, limit: Duration) -> Output {
    // Closing a descriptor takes a shell: `exec` keeps the PID, so the guard below stops kubepki.
    let mut redir = String::new();
    if out == Sink::Closed {
        redir.push_str(" >&-");
    }
    if err == Sink::Closed {
        redir.push_str(" 2>&-");
    }
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("exec \"$@\"{redir}"))
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    let sink = |s: Sink| match s {
        Sink::Captured | Sink::Closed => Stdio::piped(),
        Sink::Broken => {
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            Stdio::from(writer)
        }
    };
    let child = c
        .stdin(Stdio::null())
        .stdout(sink(out))
        .stderr(sink(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(o) => o.expect("waiting for kubepki"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waiter.join();
            panic!("{cmd:?} did not finish within {limit:?}; killed");
        }
    };
    let _ = waiter.join();
    out
}

/// Fails with the command's output if it panicked (Rust's exit status 101, or a panic message).
pub fn assert_no_panic(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(
        o.status.code() != Some(101) && !err.contains("panicked"),
        "{what}: kubepki panicked ({})\n--- stdout\n{}\n--- stderr\n{err}",
        o.status,
        stdout(o)
    );
}

/// Asserts that the process of `out` was killed by SIGKILL (the crash hook), naming `ctx`.
pub fn assert_killed(out: &Output, ctx: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{ctx}: expected death by SIGKILL, got {}\n{}",
        out.status,
        stderr(out)
    );
}
