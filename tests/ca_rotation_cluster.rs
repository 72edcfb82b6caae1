//! `kubepki ca rotate` on a real three-node control plane under load: zero failures.
//!
//! The cluster (every process real, on 127.0.0.1-3, stopped by PID when the test ends):
//! three control-plane nodes n1, n2, n3 (cert dir `<tmp>/nK/pki`, kubeconfigs in `<tmp>/nK`),
//! `kubepki init` on n1, then n1's CAs and service-account keys copied to n2 and n3 before their
//! own `init` (kubeadm's multi-control-plane procedure); a 3-member etcd 3.4 (member K on
//! 127.0.0.K with node K's certs), three kube-apiservers v1.20.2 (each on its node's certs,
//! `--etcd-servers` listing the three members), and on n1 one kube-controller-manager (CSR
//! signing and approving, service-account tokens; signing with the files the rotation names)
//! and one kube-scheduler.
//!
//! The load, all through the rotation:
//! - an API writer creating a ConfigMap or patching one every 150 ms with each node's
//!   admin.conf in turn (re-read every time: the rotation rewrites it), trying the next API
//!   server when one refuses (it restarts);
//! - a service-account client (a v1.20 legacy token Secret), trusting that Secret's `ca.crt`
//!   and re-reading it every 2 s, as a mounted volume would be updated;
//! - an etcd writer with n1's apiserver-etcd-client certificate, trying the next member when
//!   one is down;
//! - between phases, a kubelet client CSR signed by the controller-manager, whose certificate
//!   must then authenticate to every API server;
//! - in test 3 only, an aggregated-API-style client: as the aggregator proxies a request, the
//!   front-proxy-client certificate of each node in turn (re-read every time) with
//!   `X-Remote-User`/`X-Remote-Group` headers, trying the next API server when one refuses.
//!
//! Every failure is counted by kind (TLS, 401, connection refused, unavailable, ...) and phase.
//! TLS failures and 401s must be zero (the service-account client's legacy token is, by design,
//! invalid once `finish` drops the old key: 401s there are only reported), every write some
//! server acknowledged must be readable at the end, and the refusals during restarts are
//! printed.
//!
//! Tests:
//! 1. `ca_rotation_under_load_has_zero_failures`: trust, switch, finish, one node after the
//!    other, restarting what each step's JSON lists; then nothing on any node trusts or is
//!    signed by the old CAs, a token of the old service-account key is refused and a new one
//!    works, every admin.conf works, `certs check-expiration` succeeds everywhere.
//! 2. `ca_rotation_rollback_under_load_has_zero_failures`: trust, switch, then rollback twice;
//!    every certificate is the old CAs' again and the cluster works.
//! 3. `single_ca_rotations_under_load_have_zero_failures`: `front-proxy-ca` alone, then
//!    `etcd-ca` alone (trust, switch, finish each); no TLS failure, 401 or 403 (the
//!    aggregated-API-style client included), three healthy etcd members after every phase,
//!    only the rotated CA's files changed, `ca` and `sa` byte-for-byte unchanged, nothing left
//!    of the two old CAs, and their old client certificates refused by the servers.
//! 4. `rolling_restarts_under_load_have_zero_failures` (the harness's own baseline, with no
//!    `kubepki ca rotate` at all): every component of every node restarted in the same rolling
//!    order, with the same load and the same assertions, and the scans that prove nothing old is
//!    left shown to find every old certificate when nothing was rotated. If it fails, the
//!    harness is wrong, not the rotation.
//!
//! The rotation itself is driven by [`rotate`] only.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use common::cluster::*;
use common::pki::{KUBECONFIGS, LEAVES, kubepki_in};
use common::*;

/// The namespace of the load.
const NS: &str = "rotation-load";
/// What the controller-manager runs: CSR signing and approval, service-account tokens (the
/// legacy token Secrets of v1.20) and the kube-root-ca.crt ConfigMaps.
const CONTROLLERS: &str = "csrsigning,csrapproving,csrcleaner,serviceaccount-token,serviceaccount,\
                           root-ca-cert-publisher";
/// The files kubeadm users copy from the first control-plane node to the others.
const SHARED: &[&str] = &[
    "ca.crt",
    "ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
    "sa.key",
    "sa.pub",
];
/// The CA certificates (and the service-account public key) saved before a rotation.
const CA_FILES: &[&str] = &["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"];
/// Every component a phase may ask to restart, in the order a full restart uses.
const COMPONENTS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
];
/// The load's pace.
const WRITER_PERIOD: Duration = Duration::from_millis(150);
const SA_PERIOD: Duration = Duration::from_millis(300);
const SA_REFRESH: Duration = Duration::from_secs(2);
const ETCD_PERIOD: Duration = Duration::from_millis(250);
const PROXY_PERIOD: Duration = Duration::from_millis(300);
/// Who the aggregated-API-style client says it proxies for: system:masters is the only thing
/// that lets it list the load's ConfigMaps (front-proxy-client itself has no RBAC binding), so
/// a 200 proves the API server took the identity from the headers.
const PROXY_USER: &str = "aggregated-user";
const PROXY_GROUP: &str = "system:masters";
/// Bounds of every load thread, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(900);
const LOAD_MAX_OPS: u64 = 8000;

/// One cluster at a time: three API servers and the load are all two cores can take.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// The nodes.

#[derive(Clone, Debug)]
struct Node {
    name: String,
    dir: PathBuf,
    ip: IpAddr,
    api_port: u16,
    member: EtcdMember,
}

impl Node {
    fn pki(&self, f: &str) -> PathBuf {
        self.dir.join("pki").join(f)
    }

    fn conf(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn server(&self) -> String {
        format!("https://{}:{}", self.ip, self.api_port)
    }
}

/// Where everything is: the scratch root and the three nodes.
#[derive(Clone, Debug)]
struct Topo {
    root: PathBuf,
    nodes: Vec<Node>,
}

impl Topo {
    fn members(&self) -> Vec<EtcdMember> {
        self.nodes.iter().map(|n| n.member.clone()).collect()
    }

    fn initial(&self) -> String {
        initial_cluster(&self.members())
    }

    /// The three etcd client URLs, node `k`'s first.
    fn etcd_urls(&self, k: usize) -> String {
        order_from(k)
            .iter()
            .map(|&i| self.nodes[i].member.client_url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where the old CAs were saved before the rotation.
    fn old(&self, f: &str) -> PathBuf {
        self.root.join("old").join(f)
    }
}

/// Node indexes starting at `k`: the order a client of node `k` tries the servers in.
fn order_from(k: usize) -> [usize; 3] {
    [k % 3, (k + 1) % 3, (k + 2) % 3]
}

/// `kubepki init` on n1, then on n2 and n3 with n1's CAs and service-account keys copied first.
/// Each node's kubeconfigs point at its own API server (a free port of its IP).
fn make_pki(root: &Path) -> Topo {
    let mut nodes: Vec<Node> = Vec::new();
    for k in 1..=3u8 {
        let name = format!("n{k}");
        let dir = root.join(&name);
        if let Some(n1) = nodes.first() {
            for f in SHARED {
                write_file(&dir.join("pki").join(f), &fs::read(n1.pki(f)).unwrap());
                let mode = if f.ends_with(".key") { 0o600 } else { 0o644 };
                fs::set_permissions(dir.join("pki").join(f), fs::Permissions::from_mode(mode))
                    .unwrap();
            }
        }
        let ip = loopback(k);
        let api_port =
            init_control_plane(&dir, &name, ip, &["--encryption-algorithm", "ECDSA-P256"]);
        let mut member = EtcdMember::new(&name, &dir, ip);
        for _ in 0..20 {
            if member.client_port != api_port && member.peer_port != api_port {
                break;
            }
            member = EtcdMember::new(&name, &dir, ip);
        }
        nodes.push(Node {
            name,
            dir,
            ip,
            api_port,
            member,
        });
    }
    for n in &nodes[1..] {
        for f in SHARED {
            assert_eq!(
                fs::read(n.pki(f)).unwrap(),
                fs::read(nodes[0].pki(f)).unwrap(),
                "{}: init must keep the shared {f} copied from n1",
                n.name
            );
        }
    }
    Topo {
        root: root.to_path_buf(),
        nodes,
    }
}

// ---------------------------------------------------------------------------------------------
// Kubeconfigs, PEM, curl.

fn b64d(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("bad base64: {e}"))
}

/// The CA, client certificate and key a kubeconfig embeds.
struct Creds {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// The value of the first `key: value` line of a kubeconfig, decoded from base64.
fn kubeconfig_field(text: &str, key: &str) -> Option<Result<Vec<u8>, String>> {
    let prefix = format!("{key}:");
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| b64d(v.trim().trim_matches('"')))
}

fn read_kubeconfig(conf: &Path) -> Result<Creds, String> {
    let text = fs::read_to_string(conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    let get = |k: &str| {
        kubeconfig_field(&text, k)
            .unwrap_or_else(|| Err(format!("no {k}")))
            .map_err(|e| format!("{}: {k}: {e}", conf.display()))
    };
    Ok(Creds {
        ca: get("certificate-authority-data")?,
        cert: get("client-certificate-data")?,
        key: get("client-key-data")?,
    })
}

/// A kubeconfig's credentials as files curl reads: `dir/{ca,cert,key}.pem`.
struct CredFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Creds {
    fn write(&self, dir: &Path) -> CredFiles {
        let f = CredFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        write_file(&f.ca, &self.ca);
        write_file(&f.cert, &self.cert);
        write_file(&f.key, &self.key);
        f
    }
}

fn cred_files(conf: &Path, dir: &Path) -> Result<CredFiles, String> {
    read_kubeconfig(conf).map(|c| c.write(dir))
}

/// Every certificate of a PEM text, each as its own PEM block.
fn pem_certs(text: &str) -> Vec<String> {
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = rest.find(begin) {
        let Some(e) = rest[b..].find(end) else { break };
        out.push(format!("{}\n", &rest[b..b + e + end.len()]));
        rest = &rest[b + e + end.len()..];
    }
    out
}

/// The DER bytes of a PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    b64d(&body).unwrap_or_else(|e| panic!("{e}: {pem}"))
}

fn ders(text: &str) -> Vec<Vec<u8>> {
    pem_certs(text).iter().map(|p| pem_der(p)).collect()
}

/// The PEM blocks (any type) of a text, normalised: to compare public keys.
fn pem_blocks(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cur: Option<String> = None;
    for l in text.lines().map(str::trim) {
        if l.starts_with("-----BEGIN") {
            cur = Some(String::new());
        } else if l.starts_with("-----END") {
            if let Some(b) = cur.take() {
                out.insert(b);
            }
        } else if let Some(b) = cur.as_mut() {
            b.push_str(l);
        }
    }
    out
}

/// What one HTTP request came to.
#[derive(Clone, Debug)]
enum Outcome {
    Http(u16, String),
    Refused(String),
    Unavailable(String),
    Tls(String),
    Other(String),
}

enum Auth<'a> {
    Cert(&'a Path, &'a Path),
    Bearer(&'a str),
    /// As the aggregator proxies a request to an extension API server: the front-proxy client
    /// certificate and key, and the user (and group, unless empty) in the request headers the
    /// API servers' `--requestheader-*` flags name.
    Proxied(&'a Path, &'a Path, &'a str, &'a str),
}

/// Whether a failed curl's message is about certificates or TLS trust (and not a connection
/// merely reset while the server stopped).
fn tls_problem(code: i32, err: &str) -> bool {
    let e = err.to_lowercase();
    if ["certificate", "alert", "verify", "unknown ca", "issuer"]
        .iter()
        .any(|w| e.contains(w))
    {
        return true;
    }
    let reset = [
        "connection reset",
        "ssl_error_syscall",
        "unexpected eof",
        "refused",
    ]
    .iter()
    .any(|w| e.contains(w));
    matches!(
        code,
        35 | 51 | 53 | 54 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91
    ) && !reset
}

fn classify_curl(o: &Output) -> Outcome {
    let err = stderr(o).trim().to_string();
    match o.status.code() {
        Some(0) => {
            let out = stdout(o);
            let (body, status) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
            match status.trim().parse() {
                Ok(s) => Outcome::Http(s, body.to_string()),
                Err(_) => Outcome::Other(format!("no HTTP status in {out:?}")),
            }
        }
        Some(7) => Outcome::Refused(err),
        Some(c) if tls_problem(c, &err) => Outcome::Tls(format!("curl exit {c}: {err}")),
        // A server going away mid-request (its restart): timed out, empty reply, connection or
        // HTTP/2 stream cut (16, 18, 92), as after a refusal, the request is retried elsewhere.
        Some(c @ (16 | 18 | 28 | 35 | 52 | 55 | 56 | 92)) => {
            Outcome::Unavailable(format!("curl exit {c}: {err}"))
        }
        c => Outcome::Other(format!("curl exit {c:?}: {err}")),
    }
}

/// One HTTPS request trusting `ca`; the body (JSON unless `ctype` says otherwise) if any.
fn curl(ca: &Path, auth: &Auth, method: &str, url: &str, body: Option<(&str, &str)>) -> Outcome {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "8", "--connect-timeout", "3"])
        .args(["-w", "\n%{http_code}", "-X", method, "--cacert"])
        .arg(ca)
        .stdin(Stdio::null());
    match auth {
        Auth::Cert(cert, key) => {
            c.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        Auth::Bearer(t) => {
            c.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        Auth::Proxied(cert, key, user, group) => {
            c.arg("--cert").arg(cert).arg("--key").arg(key);
            c.arg("-H").arg(format!("X-Remote-User: {user}"));
            if !group.is_empty() {
                c.arg("-H").arg(format!("X-Remote-Group: {group}"));
            }
        }
    }
    if let Some((ctype, b)) = body {
        c.args(["-H", &format!("Content-Type: {ctype}"), "--data-binary", b]);
    }
    c.arg(url);
    match c.output() {
        Ok(o) => classify_curl(&o),
        Err(e) => Outcome::Other(format!("cannot run curl: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Counting failures.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A TLS handshake or trust failure (unknown authority, bad certificate, ...).
    Tls,
    /// HTTP 401.
    Unauthorized,
    /// HTTP 403 (a server that just started and has not loaded RBAC yet): retried elsewhere.
    Forbidden,
    /// Connection refused (a server restarting): retried elsewhere.
    Refused,
    /// Timeout, reset, 5xx, etcd unavailable: retried elsewhere.
    Unavailable,
    /// Anything else unexpected.
    Other,
    /// The service account's token Secret was deleted (the client keeps its last content, as a
    /// mounted volume does).
    Gone,
    /// An operation that no server accepted, after every retry.
    Failed,
}

/// Counts of one load client, by phase and kind, with the first few details of each kind.
#[derive(Default)]
struct TallyData {
    ops: u64,
    ok: u64,
    counts: BTreeMap<(String, Kind), u64>,
    samples: BTreeMap<Kind, Vec<String>>,
}

#[derive(Clone)]
struct Tally {
    name: &'static str,
    data: Arc<Mutex<TallyData>>,
    phase: Arc<Mutex<String>>,
    t0: Instant,
}

impl Tally {
    fn new(name: &'static str, phase: &Arc<Mutex<String>>, t0: Instant) -> Tally {
        Tally {
            name,
            data: Default::default(),
            phase: phase.clone(),
            t0,
        }
    }

    fn phase(&self) -> String {
        lock(&self.phase).clone()
    }

    fn record(&self, kind: Kind, detail: &str) {
        let phase = self.phase();
        let at = self.t0.elapsed();
        let mut d = lock(&self.data);
        *d.counts.entry((phase.clone(), kind)).or_default() += 1;
        let s = d.samples.entry(kind).or_default();
        if s.len() < 8 {
            let detail: String = detail.chars().take(400).collect();
            s.push(format!("[{at:.1?} {phase}] {detail}"));
        }
    }

    fn op(&self, ok: bool) {
        let mut d = lock(&self.data);
        d.ops += 1;
        if ok {
            d.ok += 1;
        }
    }

    fn ok(&self) -> u64 {
        lock(&self.data).ok
    }

    /// How many of `kind` in the phases `which` accepts.
    fn count(&self, kind: Kind, which: impl Fn(&str) -> bool) -> u64 {
        lock(&self.data)
            .counts
            .iter()
            .filter(|((p, k), _)| *k == kind && which(p))
            .map(|(_, n)| n)
            .sum()
    }

    fn report(&self) -> String {
        let d = lock(&self.data);
        let mut s = format!("{}: {} operations, {} succeeded", self.name, d.ops, d.ok);
        let mut by_kind: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
        for ((p, k), n) in &d.counts {
            by_kind.entry(*k).or_default().push(format!("{p}: {n}"));
        }
        for (k, phases) in &by_kind {
            s.push_str(&format!("\n  {k:?}: {}", phases.join(", ")));
        }
        for (k, samples) in &d.samples {
            for x in samples {
                s.push_str(&format!("\n  e.g. {k:?} {x}"));
            }
        }
        s
    }
}

/// Tries `attempt(node)` on the servers of `order`, up to three rounds (bounded to 25 s),
/// recording every failure in `t`; `accept(status, retried)` says which statuses are success.
/// Ok with the status and body; Err with the last failure.
fn failover(
    t: &Tally,
    order: [usize; 3],
    mut attempt: impl FnMut(usize) -> Outcome,
    accept: impl Fn(u16, bool) -> bool,
) -> Result<(u16, String), String> {
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut last = String::new();
    let mut tried = false;
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        for &i in &order {
            if Instant::now() > deadline {
                return Err(format!("gave up after 25 s; last: {last}"));
            }
            let o = attempt(i);
            let (kind, detail) = match o {
                Outcome::Http(s, body) if accept(s, tried) => return Ok((s, body)),
                Outcome::Http(401, b) => (Kind::Unauthorized, format!("401 {b}")),
                Outcome::Http(403, b) => (Kind::Forbidden, format!("403 {b}")),
                Outcome::Http(s, b) if s == 429 || s >= 500 => {
                    (Kind::Unavailable, format!("{s} {b}"))
                }
                Outcome::Http(s, b) => (Kind::Other, format!("{s} {b}")),
                Outcome::Refused(e) => (Kind::Refused, e),
                Outcome::Unavailable(e) => (Kind::Unavailable, e),
                Outcome::Tls(e) => (Kind::Tls, e),
                Outcome::Other(e) => (Kind::Other, e),
            };
            last = format!("n{}: {detail}", i + 1);
            t.record(kind, &last);
            tried = true;
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------------
// The load.

/// What the API writer had acknowledged: created ConfigMaps by number, and patches of
/// `counter` by number.
#[derive(Default)]
struct Acks {
    created: Vec<u64>,
    patched: Vec<u64>,
}

struct Load {
    phase: Arc<Mutex<String>>,
    writer: Tally,
    sa: Tally,
    etcd: Tally,
    /// The aggregated-API-style client, when the test runs one.
    proxy: Option<Tally>,
    writer_acks: Arc<Mutex<Acks>>,
    etcd_acks: Arc<Mutex<Vec<u64>>>,
    /// Whether the service-account client must keep succeeding (until finish drops the key its
    /// legacy token was signed with).
    sa_required: AtomicBool,
    threads: Vec<Background>,
}

fn cm_name(n: u64) -> String {
    format!("w-{n:06}")
}

const ETCD_PREFIX: &str = "/kubepki-rotation-load/";

fn etcd_key(n: u64) -> String {
    format!("{ETCD_PREFIX}{n:06}")
}

impl Load {
    /// Starts the three clients (and the aggregated-API-style client when `proxy`); `secret` is
    /// the service account's token Secret.
    fn start_with(topo: &Topo, secret: &str, proxy: bool) -> Load {
        let t0 = Instant::now();
        let phase = Arc::new(Mutex::new("before".to_string()));
        let mut load = Load {
            writer: Tally::new("api-writer", &phase, t0),
            sa: Tally::new("service-account-client", &phase, t0),
            etcd: Tally::new("etcd-writer", &phase, t0),
            proxy: proxy.then(|| Tally::new("aggregated-api-client", &phase, t0)),
            phase,
            writer_acks: Default::default(),
            etcd_acks: Default::default(),
            sa_required: AtomicBool::new(true),
            threads: Vec::new(),
        };
        let (t, tally, acks) = (topo.clone(), load.writer.clone(), load.writer_acks.clone());
        load.threads.push(Background::spawn(move |stop| {
            api_writer(&t, &tally, &acks, stop)
        }));
        let (t, tally, secret) = (topo.clone(), load.sa.clone(), secret.to_string());
        load.threads.push(Background::spawn(move |stop| {
            sa_client(&t, &tally, &secret, stop)
        }));
        let (t, tally, acks) = (topo.clone(), load.etcd.clone(), load.etcd_acks.clone());
        load.threads.push(Background::spawn(move |stop| {
            etcd_writer(&t, &tally, &acks, stop)
        }));
        if let Some(tally) = load.proxy.clone() {
            let t = topo.clone();
            load.threads.push(Background::spawn(move |stop| {
                proxy_client(&t, &tally, stop)
            }));
        }
        load
    }

    /// From now on the service-account client may fail (its legacy token is about to die).
    fn sa_may_fail(&self) {
        self.sa_required.store(false, Ordering::SeqCst);
    }

    fn set_phase(&self, p: &str) {
        *lock(&self.phase) = p.to_string();
    }

    /// Waits (bounded: 60 s) until each client has succeeded `n` more times.
    fn wait_progress(&self, n: u64, what: &str) {
        let oks = || {
            [
                self.writer.ok(),
                self.sa.ok(),
                self.etcd.ok(),
                self.proxy.as_ref().map_or(0, Tally::ok),
            ]
        };
        let base = oks();
        let mut now = base;
        let start = Instant::now();
        let sa = self.sa_required.load(Ordering::SeqCst);
        for _ in 0..240 {
            now = oks();
            let moved = |c: usize| now[c] >= base[c] + n;
            if moved(0) && moved(2) && (moved(1) || !sa) && (moved(3) || self.proxy.is_none()) {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{what}: the load did not make progress in {:?} (successes of writer, \
             service-account client, etcd writer, aggregated-API client: {base:?} -> \
             {now:?})\n{}",
            start.elapsed(),
            self.report()
        );
    }

    fn report(&self) -> String {
        [&self.writer, &self.sa, &self.etcd]
            .into_iter()
            .chain(&self.proxy)
            .map(|t| t.report())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop(&mut self) {
        for t in &mut self.threads {
            t.halt();
        }
    }
}

/// Creates `w-N` (N even) or patches `counter` to N (N odd) every 150 ms, as node N%3's
/// admin.conf (re-read each time), trying node N%3's server first and the others when it fails.
fn api_writer(topo: &Topo, t: &Tally, acks: &Mutex<Acks>, stop: &AtomicBool) {
    let start = Instant::now();
    for n in 0..LOAD_MAX_OPS {
        if stop.load(Ordering::SeqCst) || start.elapsed() > LOAD_LIMIT {
            break;
        }
        let tick = Instant::now();
        let k = (n % 3) as usize;
        let node = &topo.nodes[k];
        let files = match cred_files(
            &node.conf("admin.conf"),
            &topo.root.join("load/writer").join(&node.name),
        ) {
            Ok(f) => f,
            Err(e) => {
                t.record(Kind::Other, &e);
                t.op(false);
                continue;
            }
        };
        let create = n % 2 == 0;
        let (method, path, body, ctype) = if create {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": cm_name(n)}, "data": {"v": n.to_string()}});
            (
                "POST",
                format!("/api/v1/namespaces/{NS}/configmaps"),
                cm.to_string(),
                "application/json",
            )
        } else {
            (
                "PATCH",
                format!("/api/v1/namespaces/{NS}/configmaps/counter"),
                json!({"data": {"last": n.to_string()}}).to_string(),
                "application/merge-patch+json",
            )
        };
        let r = failover(
            t,
            order_from(k),
            |i| {
                curl(
                    &files.ca,
                    &Auth::Cert(&files.cert, &files.key),
                    method,
                    &format!("{}{path}", topo.nodes[i].server()),
                    Some((ctype, &body)),
                )
            },
            // A create retried after a failure may find its own earlier attempt.
            |s, retried| (200..300).contains(&s) || (create && retried && s == 409),
        );
        t.op(r.is_ok());
        match r {
            Ok(_) if create => lock(acks).created.push(n),
            Ok(_) => lock(acks).patched.push(n),
            Err(e) => t.record(Kind::Failed, &format!("{method} {path}: {e}")),
        }
        std::thread::sleep(WRITER_PERIOD.saturating_sub(tick.elapsed()));
    }
}

/// The token and CA of the service-account Secret `secret`, read as n1's admin (with
/// failover): what a pod's mounted volume holds. None (and a `Gone` counted) once the Secret
/// has been deleted: a volume keeps what it last had.
fn read_secret(
    topo: &Topo,
    t: &Tally,
    secret: &str,
    dir: &Path,
) -> Result<Option<(String, PathBuf)>, String> {
    let files = cred_files(&topo.nodes[0].conf("admin.conf"), &dir.join("admin"))?;
    let path = format!("/api/v1/namespaces/{NS}/secrets/{secret}");
    let (status, body) = failover(
        t,
        order_from(0),
        |i| {
            curl(
                &files.ca,
                &Auth::Cert(&files.cert, &files.key),
                "GET",
                &format!("{}{path}", topo.nodes[i].server()),
                None,
            )
        },
        |s, _| s == 200 || s == 404,
    )
    .map_err(|e| format!("reading the Secret {secret}: {e}"))?;
    if status == 404 {
        t.record(Kind::Gone, &format!("Secret {secret}: 404"));
        return Ok(None);
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let field = |k: &str| {
        v["data"][k]
            .as_str()
            .ok_or_else(|| format!("the Secret has no {k}: {body}"))
            .and_then(b64d)
    };
    let token = String::from_utf8(field("token")?).map_err(|e| e.to_string())?;
    let ca = dir.join("ca.crt");
    write_file(&ca, &field("ca.crt")?);
    Ok(Some((token, ca)))
}

/// Lists ConfigMaps with the service account's token every 300 ms, trusting the Secret's
/// ca.crt; both re-read from the Secret every 2 s.
fn sa_client(topo: &Topo, t: &Tally, secret: &str, stop: &AtomicBool) {
    let start = Instant::now();
    let dir = topo.root.join("load/sa");
    let mut mounted: Option<(String, PathBuf)> = None;
    let mut refreshed = Instant::now();
    for n in 0..LOAD_MAX_OPS {
        if stop.load(Ordering::SeqCst) || start.elapsed() > LOAD_LIMIT {
            break;
        }
        let tick = Instant::now();
        if mounted.is_none() || refreshed.elapsed() >= SA_REFRESH {
            match read_secret(topo, t, secret, &dir) {
                Ok(Some(m)) => {
                    mounted = Some(m);
                    refreshed = Instant::now();
                }
                // Deleted: the volume keeps its last content.
                Ok(None) => refreshed = Instant::now(),
                Err(e) => t.record(Kind::Failed, &e),
            }
        }
        let Some((token, ca)) = &mounted else {
            t.op(false);
            std::thread::sleep(SA_PERIOD);
            continue;
        };
        let path = format!("/api/v1/namespaces/{NS}/configmaps?limit=1");
        let r = failover(
            t,
            order_from(n as usize),
            |i| {
                curl(
                    ca,
                    &Auth::Bearer(token),
                    "GET",
                    &format!("{}{path}", topo.nodes[i].server()),
                    None,
                )
            },
            |s, _| s == 200,
        );
        t.op(r.is_ok());
        if let Err(e) = r {
            t.record(Kind::Failed, &format!("GET {path}: {e}"));
        }
        std::thread::sleep(SA_PERIOD.saturating_sub(tick.elapsed()));
    }
}

/// Node `n`'s front-proxy-client certificate and key, and its ca.crt, copied to `dir`: read
/// until two reads in a row agree, so that a pair being replaced by a rotation step (two
/// renames) is never seen half old, half new (which would be the harness's tear, not the
/// rotation's). Returns (ca, cert, key).
fn proxy_files(n: &Node, dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let names = ["ca.crt", "front-proxy-client.crt", "front-proxy-client.key"];
    let read = || -> Result<Vec<Vec<u8>>, String> {
        names
            .iter()
            .map(|f| fs::read(n.pki(f)).map_err(|e| format!("{}: {e}", n.pki(f).display())))
            .collect()
    };
    let mut last = read()?;
    for _ in 0..10 {
        let now = read()?;
        if now == last {
            let paths: Vec<PathBuf> = names.iter().map(|f| dir.join(f)).collect();
            for (p, b) in paths.iter().zip(&now) {
                write_file(p, b);
            }
            return Ok((paths[0].clone(), paths[1].clone(), paths[2].clone()));
        }
        last = now;
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{}: the front-proxy files keep changing", n.name))
}

/// An aggregated-API-style client: lists ConfigMaps every 300 ms as the aggregator proxies a
/// request, with node N%3's front-proxy-client certificate and key (re-read every time, as the
/// aggregator reads them when it restarts) and `X-Remote-User`/`X-Remote-Group` headers,
/// trusting that node's ca.crt; node N%3's server first, the others when it fails.
fn proxy_client(topo: &Topo, t: &Tally, stop: &AtomicBool) {
    let start = Instant::now();
    for n in 0..LOAD_MAX_OPS {
        if stop.load(Ordering::SeqCst) || start.elapsed() > LOAD_LIMIT {
            break;
        }
        let tick = Instant::now();
        let k = (n % 3) as usize;
        let node = &topo.nodes[k];
        let (ca, cert, key) =
            match proxy_files(node, &topo.root.join("load/proxy").join(&node.name)) {
                Ok(f) => f,
                Err(e) => {
                    t.record(Kind::Other, &e);
                    t.op(false);
                    std::thread::sleep(PROXY_PERIOD);
                    continue;
                }
            };
        let path = format!("/api/v1/namespaces/{NS}/configmaps?limit=1");
        let r = failover(
            t,
            order_from(k),
            |i| {
                curl(
                    &ca,
                    &Auth::Proxied(&cert, &key, PROXY_USER, PROXY_GROUP),
                    "GET",
                    &format!("{}{path}", topo.nodes[i].server()),
                    None,
                )
            },
            |s, _| s == 200,
        );
        t.op(r.is_ok());
        if let Err(e) = r {
            t.record(Kind::Failed, &format!("GET {path}: {e}"));
        }
        std::thread::sleep(PROXY_PERIOD.saturating_sub(tick.elapsed()));
    }
}

/// etcdctl as n1's API server (apiserver-etcd-client, etcd/ca.crt: files read by every run)
/// against member `i` alone.
fn etcd_as_apiserver(topo: &Topo, i: usize) -> Command {
    let n1 = &topo.nodes[0];
    etcdctl(
        &topo.nodes[i].member.client_url(),
        &n1.pki("etcd/ca.crt"),
        &n1.pki("apiserver-etcd-client.crt"),
        &n1.pki("apiserver-etcd-client.key"),
    )
}

/// What a failed etcdctl run came to. etcdctl often says only "context deadline exceeded" (all
/// SubConns in TransientFailure) whether the member is down or the TLS handshake failed, so
/// when its words are not conclusive, `probe` (curl to the member's /health with the same
/// files) tells a trust failure from an unavailable member.
fn classify_etcd(o: &Output, probe: impl FnOnce() -> Outcome) -> (Kind, String) {
    let text = stdout(o) + &stderr(o);
    let t = text.to_lowercase();
    let detail: String = text.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    if ["x509", "certificate", "handshake failed", "tls:"]
        .iter()
        .any(|w| t.contains(w))
    {
        return (Kind::Tls, detail);
    }
    if t.contains("connection refused") {
        return (Kind::Refused, detail);
    }
    match probe() {
        Outcome::Tls(e) => (Kind::Tls, format!("{detail} | probe: {e}")),
        Outcome::Refused(_) => (Kind::Refused, detail),
        p => (Kind::Unavailable, format!("{detail} | probe: {p:?}")),
    }
}

/// curl to the /health of the etcd member at `url` with these files: a TLS verdict. TLS 1.2,
/// where a server refusing the client certificate says so in the handshake (with TLS 1.3 etcd's
/// alert comes after it, and curl sees only a reset connection).
fn etcd_probe(url: &str, ca: &Path, cert: &Path, key: &Path) -> Outcome {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--tls-max", "1.2", "--http1.1"])
        .args(["-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(format!("{url}/health"))
        .stdin(Stdio::null())
        .output();
    match o {
        Ok(o) => classify_curl(&o),
        Err(e) => Outcome::Other(format!("cannot run curl: {e}")),
    }
}

/// Puts key N every 250 ms as n1's API server, through member N%3 first and the next ones when
/// it fails (two rounds).
fn etcd_writer(topo: &Topo, t: &Tally, acks: &Mutex<Vec<u64>>, stop: &AtomicBool) {
    let start = Instant::now();
    for n in 0..LOAD_MAX_OPS {
        if stop.load(Ordering::SeqCst) || start.elapsed() > LOAD_LIMIT {
            break;
        }
        let tick = Instant::now();
        let mut ok = false;
        let mut last = String::new();
        'rounds: for _round in 0..2 {
            for i in order_from(n as usize) {
                let o = etcd_as_apiserver(topo, i)
                    .args(["put", &etcd_key(n), &format!("v{n}")])
                    .output();
                match o {
                    Ok(o) if o.status.success() && stdout(&o).trim() == "OK" => {
                        ok = true;
                        break 'rounds;
                    }
                    Ok(o) => {
                        let n1 = &topo.nodes[0];
                        let (kind, detail) = classify_etcd(&o, || {
                            etcd_probe(
                                &topo.nodes[i].member.client_url(),
                                &n1.pki("etcd/ca.crt"),
                                &n1.pki("apiserver-etcd-client.crt"),
                                &n1.pki("apiserver-etcd-client.key"),
                            )
                        });
                        last = format!("{}: {detail}", topo.nodes[i].name);
                        t.record(kind, &last);
                    }
                    Err(e) => {
                        last = format!("cannot run etcdctl: {e}");
                        t.record(Kind::Other, &last);
                    }
                }
            }
        }
        t.op(ok);
        if ok {
            lock(acks).push(n);
        } else {
            t.record(Kind::Failed, &format!("put {}: {last}", etcd_key(n)));
        }
        std::thread::sleep(ETCD_PERIOD.saturating_sub(tick.elapsed()));
    }
}

// ---------------------------------------------------------------------------------------------
// The control plane.

/// The running cluster. Field order is drop order: controller-manager and scheduler, then the
/// API servers, then etcd.
struct Plane {
    bin: PathBuf,
    topo: Topo,
    kcm_port: u16,
    sched_port: u16,
    /// The certificate and key the controller-manager signs with (as the last phase on n1 said).
    signer: (PathBuf, PathBuf),
    /// What happened, for failure messages.
    journal: Vec<String>,
    kcm: Option<Proc>,
    sched: Option<Proc>,
    apis: Vec<Proc>,
    etcds: Vec<Proc>,
}

/// Waits (bounded in time and tries) until `f` is Ok; panics with its last error.
fn wait_ok(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    let mut last = String::new();
    let tries = (timeout.as_millis() / 250).max(1);
    for _ in 0..tries {
        match f() {
            Ok(()) => return,
            Err(e) => last = e,
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "timed out after {:?} waiting for {what}; last error:\n{last}",
        start.elapsed()
    );
}

/// `endpoint health` of node `n`'s member with its own healthcheck-client certificate.
fn etcd_health(n: &Node) -> Result<(), String> {
    let m = &n.member;
    let o = etcdctl(
        &m.client_url(),
        &n.pki("etcd/ca.crt"),
        &n.pki("etcd/healthcheck-client.crt"),
        &n.pki("etcd/healthcheck-client.key"),
    )
    .args(["endpoint", "health"])
    .output()
    .map_err(|e| e.to_string())?;
    let text = stdout(&o) + &stderr(&o);
    if o.status.success() && text.contains(&format!("{} is healthy", m.client_url())) {
        Ok(())
    } else {
        Err(show(&o))
    }
}

/// /readyz of node `n`'s API server is `ok` to its super-admin.conf.
fn api_ready(n: &Node) -> Result<(), String> {
    let f = cred_files(&n.conf("super-admin.conf"), &n.dir.join("probe"))?;
    match curl(
        &f.ca,
        &Auth::Cert(&f.cert, &f.key),
        "GET",
        &format!("{}/readyz", n.server()),
        None,
    ) {
        Outcome::Http(200, b) if b.trim() == "ok" => Ok(()),
        o => Err(format!("{}/readyz: {o:?}", n.server())),
    }
}

/// /healthz of a controller-manager or scheduler on `ip:port` answers 200.
fn healthz(ip: IpAddr, port: u16) -> Result<(), String> {
    let o = Command::new("curl")
        .args(["-sk", "--max-time", "5", "-w", "\n%{http_code}"])
        .arg(format!("https://{ip}:{port}/healthz"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    match classify_curl(&o) {
        Outcome::Http(200, _) => Ok(()),
        x => Err(format!("https://{ip}:{port}/healthz: {x:?}")),
    }
}

fn alive(p: &mut Proc) -> Result<(), String> {
    match p.try_wait() {
        None => Ok(()),
        Some(st) => Err(format!(
            "{} exited with {st}; log {}:\n{}",
            p.name,
            p.log.display(),
            tail(&p.log_text(), 40)
        )),
    }
}

impl Plane {
    fn new(bin: PathBuf, topo: Topo) -> Plane {
        let ip = topo.nodes[0].ip;
        let taken = [
            topo.nodes[0].api_port,
            topo.nodes[0].member.client_port,
            topo.nodes[0].member.peer_port,
        ];
        let mut ports = Vec::new();
        for _ in 0..40 {
            let p = free_port(ip);
            if !taken.contains(&p) && !ports.contains(&p) {
                ports.push(p);
            }
            if ports.len() == 2 {
                break;
            }
        }
        assert_eq!(ports.len(), 2, "no two more free ports on {ip}");
        let n1 = &topo.nodes[0];
        let signer = (n1.pki("ca.crt"), n1.pki("ca.key"));
        Plane {
            bin,
            kcm_port: ports[0],
            sched_port: ports[1],
            signer,
            journal: Vec::new(),
            kcm: None,
            sched: None,
            apis: Vec::new(),
            etcds: Vec::new(),
            topo,
        }
    }

    fn note(&mut self, s: String) {
        eprintln!("[rotation-test] {s}");
        self.journal.push(s);
    }

    fn tails(&self) -> String {
        let procs = self
            .etcds
            .iter()
            .chain(&self.apis)
            .chain(&self.kcm)
            .chain(&self.sched);
        let mut s = log_tails(procs, 25);
        s.push_str("\n--- what the test did, last 40 steps:\n");
        let j = &self.journal;
        s.push_str(&j[j.len().saturating_sub(40)..].join("\n"));
        s
    }

    fn start_apiserver(&self, i: usize) -> Proc {
        let n = &self.topo.nodes[i];
        let mut p = start_apiserver(&self.bin, &n.dir, n.ip, n.api_port, &self.topo.etcd_urls(i));
        p.name = format!("{} kube-apiserver", n.name);
        p
    }

    fn start_etcd(&self, i: usize, state: &str) -> Proc {
        let mut p = start_etcd_member(&self.topo.nodes[i].member, &self.topo.initial(), state);
        p.name = format!("{} etcd", self.topo.nodes[i].name);
        p
    }

    fn start_kcm(&self) -> Proc {
        let n1 = &self.topo.nodes[0];
        let mut p = start_kcm_signing(
            &self.bin,
            &n1.dir,
            n1.ip,
            self.kcm_port,
            CONTROLLERS,
            (&self.signer.0, &self.signer.1),
        );
        p.name = "n1 kube-controller-manager".into();
        p
    }

    fn start_scheduler(&self) -> Proc {
        let n1 = &self.topo.nodes[0];
        let mut p = start_scheduler(&self.bin, &n1.dir, n1.ip, self.sched_port);
        p.name = "n1 kube-scheduler".into();
        p
    }

    fn wait_etcd(&mut self, i: usize) {
        let n = self.topo.nodes[i].clone();
        let p = &mut self.etcds[i];
        wait_ok(
            &format!("{} etcd member healthy", n.name),
            Duration::from_secs(60),
            || {
                alive(p)?;
                etcd_health(&n)
            },
        );
    }

    fn wait_apiserver(&mut self, i: usize, timeout: Duration) {
        let n = self.topo.nodes[i].clone();
        let p = &mut self.apis[i];
        wait_ok(
            &format!("{} kube-apiserver /readyz", n.name),
            timeout,
            || {
                alive(p)?;
                api_ready(&n)
            },
        );
    }

    fn wait_kcm(&mut self) {
        let (ip, port) = (self.topo.nodes[0].ip, self.kcm_port);
        let p = self.kcm.as_mut().unwrap();
        wait_ok(
            "kube-controller-manager /healthz",
            Duration::from_secs(60),
            || {
                alive(p)?;
                healthz(ip, port)
            },
        );
    }

    fn wait_scheduler(&mut self) {
        let (ip, port) = (self.topo.nodes[0].ip, self.sched_port);
        let p = self.sched.as_mut().unwrap();
        wait_ok("kube-scheduler /healthz", Duration::from_secs(60), || {
            alive(p)?;
            healthz(ip, port)
        });
    }

    /// Starts everything and waits until each is healthy.
    fn bring_up(&mut self) {
        let t = Instant::now();
        for i in 0..3 {
            let p = self.start_etcd(i, "new");
            self.etcds.push(p);
        }
        for i in 0..3 {
            self.wait_etcd(i);
        }
        let t_etcd = t.elapsed();
        for i in 0..3 {
            let p = self.start_apiserver(i);
            self.apis.push(p);
        }
        for i in 0..3 {
            self.wait_apiserver(i, Duration::from_secs(150));
        }
        let t_api = t.elapsed();
        let n1 = self.topo.nodes[0].clone();
        create_cluster_admins_binding(&n1.conf("super-admin.conf"));
        self.kcm = Some(self.start_kcm());
        self.sched = Some(self.start_scheduler());
        self.wait_kcm();
        self.wait_scheduler();
        for n in &self.topo.nodes {
            wait_lists_namespaces(
                &format!("{}'s admin.conf lists namespaces", n.name),
                &n.conf("admin.conf"),
                &["default", "kube-system"],
            );
        }
        let s = format!(
            "bring-up: etcd healthy at {t_etcd:.1?}, API servers ready at {t_api:.1?}, \
             controller-manager and scheduler healthy at {:.1?}",
            t.elapsed()
        );
        self.note(s);
    }

    /// Restarts `component` of node `i` (SIGTERM by PID, start again with the same flags, wait
    /// for health). Returns how long it took, or None for what this cluster does not run there.
    fn restart(&mut self, i: usize, component: &str) -> Option<Duration> {
        let t = Instant::now();
        let name = self.topo.nodes[i].name.clone();
        let grace = Duration::from_secs(30);
        let stopped = match component {
            "etcd" => {
                self.etcds[i].stop(grace);
                let stopped = t.elapsed();
                self.etcds[i] = self.start_etcd(i, "existing");
                self.wait_etcd(i);
                stopped
            }
            "kube-apiserver" => {
                // kube-apiserver closes its listener at once on SIGTERM but, with watches open
                // (the controller-manager's, the scheduler's), may not exit for a minute: the
                // kubelet would SIGKILL it after the grace period; so does this, sooner.
                self.apis[i].stop(Duration::from_secs(5));
                let stopped = t.elapsed();
                self.apis[i] = self.start_apiserver(i);
                self.wait_apiserver(i, Duration::from_secs(120));
                stopped
            }
            "kube-controller-manager" if i == 0 => {
                if let Some(p) = self.kcm.as_mut() {
                    p.stop(grace);
                }
                let stopped = t.elapsed();
                self.kcm = Some(self.start_kcm());
                self.wait_kcm();
                stopped
            }
            "kube-scheduler" if i == 0 => {
                if let Some(p) = self.sched.as_mut() {
                    p.stop(grace);
                }
                let stopped = t.elapsed();
                self.sched = Some(self.start_scheduler());
                self.wait_scheduler();
                stopped
            }
            "kube-controller-manager" | "kube-scheduler" | "kubelet" => {
                self.note(format!(
                    "{name}: no {component} runs here; nothing to restart"
                ));
                return None;
            }
            other => panic!("{name}: asked to restart an unknown component {other:?}"),
        };
        let took = t.elapsed();
        self.note(format!(
            "{name}: restarted {component} in {took:.1?} (stopped after {stopped:.1?})"
        ));
        Some(took)
    }

    /// Every process running and healthy, now (bounded waits for the API servers, which a
    /// moment ago may have been restarted).
    fn assert_up(&mut self, when: &str) {
        for p in self
            .etcds
            .iter_mut()
            .chain(self.apis.iter_mut())
            .chain(self.kcm.as_mut())
            .chain(self.sched.as_mut())
        {
            if let Err(e) = alive(p) {
                panic!("{when}: {e}");
            }
        }
        for i in 0..3 {
            if let Err(e) = etcd_health(&self.topo.nodes[i]) {
                panic!(
                    "{when}: {} etcd is not healthy:\n{e}",
                    self.topo.nodes[i].name
                );
            }
            self.wait_apiserver(i, Duration::from_secs(20));
        }
        self.wait_kcm();
        self.wait_scheduler();
    }
}

// ---------------------------------------------------------------------------------------------
// The rotation: the only place that runs `kubepki ca rotate`.

/// What one `kubepki ca rotate` step on one node said.
struct PhaseOut {
    json: Value,
    /// The components to restart on that node, in order.
    restart: Vec<String>,
    /// The files the controller-manager signs with from now on.
    signer: (PathBuf, PathBuf),
}

/// `kubepki ca rotate ARGS --cert-dir <node>/pki --kubeconfig-dir <node> -o json` (bounded to
/// 3 minutes); panics with its output unless it succeeds with the JSON of the contract.
fn rotate(node: &Node, args: &[&str]) -> PhaseOut {
    let mut all = vec!["ca", "rotate"];
    all.extend_from_slice(args);
    let mut c = kubepki_in(&node.dir, &all);
    c.args(["-o", "json"]);
    let o = run_sinks(&c, Sink::Captured, Sink::Captured, Duration::from_secs(180));
    assert!(
        o.status.success(),
        "{}: kubepki ca rotate {}: {}",
        node.name,
        args.join(" "),
        show(&o)
    );
    let json: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| {
        panic!(
            "{}: kubepki ca rotate {}: stdout is not JSON ({e}): {}",
            node.name,
            args.join(" "),
            show(&o)
        )
    });
    let restart: Vec<String> = json["restart"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no \"restart\" list in {json:#}", node.name))
        .iter()
        .map(|v| {
            let s = v.as_str().unwrap_or_default().to_string();
            assert!(
                COMPONENTS.contains(&s.as_str()),
                "{}: unknown component {v} in \"restart\" of {json:#}",
                node.name
            );
            s
        })
        .collect();
    let path = |k: &str| {
        let p = PathBuf::from(
            json["signer"][k]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no \"signer\".\"{k}\" in {json:#}", node.name)),
        );
        assert!(
            p.is_absolute(),
            "{}: signer.{k} {p:?} is not absolute",
            node.name
        );
        assert!(
            p.is_file(),
            "{}: signer.{k} {p:?} does not exist",
            node.name
        );
        p
    };
    let signer = (path("cert"), path("key"));
    PhaseOut {
        json,
        restart,
        signer,
    }
}

/// `kubepki ca rotate tokens --kubeconfig <n>/admin.conf` on node `n` (after switch: the
/// legacy token Secrets the old service-account key signed are re-issued with the new one), bounded
/// to 3 minutes; its output.
fn rotate_tokens(n: &Node) -> String {
    let admin = n.conf("admin.conf").display().to_string();
    let c = kubepki_in(&n.dir, &["ca", "rotate", "tokens", "--kubeconfig", &admin]);
    let o = run_sinks(&c, Sink::Captured, Sink::Captured, Duration::from_secs(180));
    assert!(
        o.status.success(),
        "{}: ca rotate tokens: {}",
        n.name,
        show(&o)
    );
    stdout(&o) + &stderr(&o)
}

/// `kubepki ca rotate status -o json` of node `n`.
fn rotation_status(n: &Node) -> Value {
    let mut c = kubepki_in(&n.dir, &["ca", "rotate", "status"]);
    c.args(["-o", "json"]);
    let o = run_sinks(&c, Sink::Captured, Sink::Captured, Duration::from_secs(60));
    assert!(
        o.status.success(),
        "{}: ca rotate status: {}",
        n.name,
        show(&o)
    );
    serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{}: ca rotate status: not JSON ({e}): {}", n.name, show(&o)))
}

/// How a phase is run on node `i`: the `kubepki ca rotate` arguments (given the certificate
/// key n1's trust step printed), or None for the harness's baseline, which restarts everything
/// without rotating anything.
type Args = dyn Fn(usize, Option<&str>) -> Option<Vec<String>>;

/// One phase, a rolling one: on n1, n2, n3 in turn, the step, then the restarts it lists one at
/// a time (each waited for), then every component checked healthy and the load seen to go on.
fn phase(p: &mut Plane, load: &Load, label: &str, args: &Args) -> Vec<PhaseOut> {
    let t_phase = Instant::now();
    let mut outs: Vec<PhaseOut> = Vec::new();
    let mut key: Option<String> = None;
    for i in 0..3 {
        let node = p.topo.nodes[i].clone();
        load.set_phase(&format!("{label}/{}", node.name));
        let t = Instant::now();
        let out = match args(i, key.as_deref()) {
            Some(a) => {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                p.note(format!("{}: kubepki ca rotate {}", node.name, a.join(" ")));
                rotate(&node, &a)
            }
            None => PhaseOut {
                json: Value::Null,
                restart: COMPONENTS.iter().map(|s| s.to_string()).collect(),
                signer: p.signer.clone(),
            },
        };
        let t_cmd = t.elapsed();
        if i == 0 {
            if let Some(k) = out.json["certificateKey"].as_str() {
                key = Some(k.to_string());
            }
            if out.signer != p.signer {
                assert!(
                    out.restart.iter().any(|c| c == "kube-controller-manager"),
                    "n1: {label} changes the controller-manager's signer from {:?} to {:?} \
                     but does not list kube-controller-manager to restart: {:#}",
                    p.signer,
                    out.signer,
                    out.json
                );
                p.signer = out.signer.clone();
            }
        }
        p.note(format!(
            "{}: {label} took {t_cmd:.1?}; restart {:?}; signer {:?}",
            node.name, out.restart, out.signer
        ));
        let mut timings = Vec::new();
        for c in out.restart.clone() {
            if let Some(d) = p.restart(i, &c) {
                timings.push(format!("{c} {d:.1?}"));
            }
        }
        p.assert_up(&format!("after {label} on {}", node.name));
        load.wait_progress(2, &format!("after {label} on {}", node.name));
        p.note(format!(
            "[timing] {label} on {}: command {t_cmd:.1?}, restarts [{}], step {:.1?}",
            node.name,
            timings.join(", "),
            t.elapsed()
        ));
        outs.push(out);
    }
    if args(0, Some("")).is_some() {
        for n in p.topo.nodes.clone() {
            let s = rotation_status(&n);
            p.note(format!("{}: status after {label}: {s}", n.name));
        }
    }
    p.note(format!("[timing] phase {label}: {:.1?}", t_phase.elapsed()));
    outs
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The arguments of the trust step: export the new CAs on n1, import them on the others.
fn trust_args(root: &Path) -> impl Fn(usize, Option<&str>) -> Option<Vec<String>> + use<> {
    trust_args_of(root, "all")
}

/// [`trust_args`] for `target` (`all`, `ca`, `front-proxy-ca`, `etcd-ca`, `sa`) alone.
fn trust_args_of(
    root: &Path,
    target: &'static str,
) -> impl Fn(usize, Option<&str>) -> Option<Vec<String>> + use<> {
    let name = if target == "all" {
        "rotation.enc".to_string()
    } else {
        format!("rotation-{target}.enc")
    };
    let bundle = root.join(name).display().to_string();
    move |i, key| {
        Some(if i == 0 {
            strings(&["trust", target, "--export", &bundle])
        } else {
            let key = key.expect("n1's trust step printed no certificateKey");
            strings(&[
                "trust",
                target,
                "--import",
                &bundle,
                "--certificate-key",
                key,
            ])
        })
    }
}

fn simple_args(step: &'static str) -> impl Fn(usize, Option<&str>) -> Option<Vec<String>> {
    simple_args_of(step, "all")
}

fn simple_args_of(
    step: &'static str,
    target: &'static str,
) -> impl Fn(usize, Option<&str>) -> Option<Vec<String>> {
    move |_, _| Some(strings(&[step, target]))
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// `openssl verify -partial_chain` of the first certificate of `cert` against the CA
/// certificates in `ca_file`: whether `ca_file` holds its issuer.
fn verifies(ca_file: &Path, cert: &Path) -> bool {
    Command::new("openssl")
        .args(["verify", "-partial_chain", "-CAfile"])
        .arg(ca_file)
        .arg(cert)
        .stdin(Stdio::null())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A kubelet client certificate through the controller-manager, in phase `label`: the CSR is
/// approved, signed by the signer the controller-manager was given, and the certificate
/// authenticates (anything but 401) to every API server.
fn csr_check(p: &mut Plane, label: &str) {
    let t = Instant::now();
    let n1 = p.topo.nodes[0].clone();
    let admin = n1.conf("admin.conf");
    let dir = p.topo.root.join("csrs");
    let name = format!("kubelet-client-{label}");
    let yaml = csr_object(
        &dir,
        &name,
        &format!("/O=system:nodes/CN=system:node:xyz-{label}"),
        &[],
        "kubernetes.io/kube-apiserver-client-kubelet",
        "\"digital signature\", \"key encipherment\", \"client auth\"",
    );
    let o = kc(&admin, &["create", "-f", &yaml.display().to_string()]);
    assert!(
        o.status.success(),
        "{label}: create CSR {name}: {}",
        show(&o)
    );
    let o = kc(&admin, &["certificate", "approve", &name]);
    assert!(
        o.status.success(),
        "{label}: approve CSR {name}: {}",
        show(&o)
    );
    let mut cert_b64 = String::new();
    wait_ok(
        &format!("{label}: CSR {name} gets its certificate"),
        Duration::from_secs(60),
        || {
            let o = kc(
                &admin,
                &["get", "csr", &name, "-o", "jsonpath={.status.certificate}"],
            );
            cert_b64 = stdout(&o).trim().to_string();
            if o.status.success() && !cert_b64.is_empty() {
                Ok(())
            } else {
                let all = kc(&admin, &["get", "csr", &name, "-o", "yaml"]);
                Err(show(&all))
            }
        },
    );
    let crt = dir.join(format!("{name}.crt"));
    write_file(&crt, &b64d(&cert_b64).unwrap());
    let key = dir.join(format!("{name}.key"));
    assert!(
        verifies(&p.signer.0, &crt),
        "{label}: the certificate of CSR {name} is not signed by the signer {:?}",
        p.signer
    );
    let signed_by_old = verifies(&p.topo.old("ca.crt"), &crt);
    let f = cred_files(&admin, &dir.join("admin")).unwrap();
    for n in &p.topo.nodes {
        let url = format!("{}/api/v1/nodes/xyz-{label}", n.server());
        match curl(&f.ca, &Auth::Cert(&crt, &key), "GET", &url, None) {
            Outcome::Http(s, _) if s != 401 => {}
            o => {
                panic!("{label}: the kubelet client certificate of CSR {name} against {url}: {o:?}")
            }
        }
    }
    p.note(format!(
        "{label}: CSR {name} signed (by the {} CA) and authenticates to the 3 servers, in {:.1?}",
        if signed_by_old { "old" } else { "new" },
        t.elapsed()
    ));
}

/// The namespace, the ConfigMap the writer patches, and a service account allowed to read
/// ConfigMaps; returns its token Secret's name once the controller-manager made it, and the
/// token.
fn make_service_account(p: &mut Plane, sa: &str) -> (String, String) {
    let admin = p.topo.nodes[0].conf("admin.conf");
    let ok = |args: &[&str]| {
        let o = kc(&admin, args);
        assert!(o.status.success(), "kubectl {args:?}: {}", show(&o));
    };
    if !stdout(&kc(&admin, &["get", "ns", NS, "-o", "name"])).contains(NS) {
        ok(&["create", "namespace", NS]);
        ok(&[
            "-n",
            NS,
            "create",
            "configmap",
            "counter",
            "--from-literal=last=none",
        ]);
        // Not the aggregated ClusterRole "view": its rules come from a controller this
        // controller-manager does not run.
        ok(&[
            "-n",
            NS,
            "create",
            "role",
            "configmap-reader",
            "--verb=get,list",
            "--resource=configmaps",
        ]);
    }
    ok(&["-n", NS, "create", "serviceaccount", sa]);
    ok(&[
        "-n",
        NS,
        "create",
        "rolebinding",
        &format!("{sa}-reads-configmaps"),
        "--role=configmap-reader",
        &format!("--serviceaccount={NS}:{sa}"),
    ]);
    make_service_account_secret(p, sa)
}

/// The token Secret service account `sa` refers to now (waiting, bounded, until the
/// controller-manager has made it and put a token in it), and that token.
fn make_service_account_secret(p: &mut Plane, sa: &str) -> (String, String) {
    let admin = p.topo.nodes[0].conf("admin.conf");
    let mut secret = String::new();
    wait_ok(
        &format!("the token Secret of service account {sa}"),
        Duration::from_secs(60),
        || {
            let o = kc(
                &admin,
                &[
                    "-n",
                    NS,
                    "get",
                    "sa",
                    sa,
                    "-o",
                    "jsonpath={.secrets[0].name}",
                ],
            );
            secret = stdout(&o).trim().to_string();
            if secret.is_empty() {
                return Err(show(&o));
            }
            let o = kc(
                &admin,
                &[
                    "-n",
                    NS,
                    "get",
                    "secret",
                    &secret,
                    "-o",
                    "jsonpath={.data.token}",
                ],
            );
            if stdout(&o).trim().is_empty() {
                Err(show(&o))
            } else {
                Ok(())
            }
        },
    );
    let o = kc(
        &admin,
        &[
            "-n",
            NS,
            "get",
            "secret",
            &secret,
            "-o",
            "jsonpath={.data.token}",
        ],
    );
    let token = String::from_utf8(b64d(&stdout(&o)).unwrap()).unwrap();
    p.note(format!("service account {sa}: token Secret {secret}"));
    (secret, token)
}

/// The status `token` gets from every API server (each checked with `ca`).
fn token_statuses(p: &Plane, ca: &Path, token: &str) -> Vec<Outcome> {
    p.topo
        .nodes
        .iter()
        .map(|n| {
            curl(
                ca,
                &Auth::Bearer(token),
                "GET",
                &format!("{}/api/v1/namespaces/{NS}/configmaps?limit=1", n.server()),
                None,
            )
        })
        .collect()
}

/// Every API server answers `want` to `token` (trusting `ca`). Bounded retries (20 s): a new
/// RoleBinding reaches RBAC through an informer.
fn assert_token(p: &Plane, ca: &Path, token: &str, want: u16, what: &str) {
    wait_ok(
        &format!("{what}: HTTP {want} from every API server"),
        Duration::from_secs(20),
        || {
            let got = token_statuses(p, ca, token);
            if got
                .iter()
                .all(|o| matches!(o, Outcome::Http(s, _) if *s == want))
            {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
}

/// Saves the CA certificates and sa.pub of n1 (the same on every node) before a rotation.
fn save_old(topo: &Topo) {
    let n1 = &topo.nodes[0];
    let mut all = Vec::new();
    for f in CA_FILES.iter().chain(&["sa.pub"]) {
        let bytes = fs::read(n1.pki(f)).unwrap();
        write_file(&topo.old(f), &bytes);
        if f.ends_with(".crt") {
            all.extend_from_slice(&bytes);
        }
    }
    write_file(&topo.old("all-cas.pem"), &all);
}

/// Every certificate a node's files hold, with where: each certificate of every .crt/.pem file
/// below its dir (not below backups or the servers' own data), and the CA data and client
/// certificate of every kubeconfig.
fn certs_on(n: &Node) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<(String, String)>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                let skip = ["etcd-data", "kube-cache", "kcm-certs", "scheduler-certs"]
                    .contains(&name.as_str())
                    || name == "apiserver-certs"
                    || name == "probe"
                    || name.contains("backup");
                if !skip {
                    walk(&p, out);
                }
            } else if name.ends_with(".crt") || name.ends_with(".pem") {
                let text = fs::read_to_string(&p).unwrap_or_default();
                for c in pem_certs(&text) {
                    out.push((p.display().to_string(), c));
                }
            } else if name.ends_with(".conf") {
                let text = fs::read_to_string(&p).unwrap_or_default();
                for k in ["certificate-authority-data", "client-certificate-data"] {
                    if let Some(Ok(b)) = kubeconfig_field(&text, k) {
                        for c in pem_certs(&String::from_utf8_lossy(&b)) {
                            out.push((format!("{} {k}", p.display()), c));
                        }
                    }
                }
            }
        }
    }
    walk(&n.dir, &mut out);
    out
}

/// After `finish`: no certificate on any node is one of the old CAs or signed by one, and no
/// sa.pub holds the old service-account key.
fn assert_nothing_old(topo: &Topo) {
    let (seen, bad) = old_findings(topo);
    assert!(
        bad.is_empty(),
        "after finish, {} of {seen} certificates (and sa.pub files) still old:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Every certificate on node `n` ([`certs_on`]) that is one of the old CAs `old_ders` or that
/// one of them (the bundle file `old_bundle`) signed, as openssl verifies it, added to `bad`;
/// how many certificates were looked at. `tmp` is a scratch file.
fn scan_certs(
    n: &Node,
    old_ders: &[Vec<u8>],
    old_bundle: &Path,
    tmp: &Path,
    bad: &mut Vec<String>,
) -> usize {
    let mut seen = 0;
    for (place, pem) in certs_on(n) {
        seen += 1;
        if old_ders.contains(&pem_der(&pem)) {
            bad.push(format!("{place}: is an old CA certificate"));
            continue;
        }
        write_file(tmp, pem.as_bytes());
        if verifies(old_bundle, tmp) {
            bad.push(format!("{place}: is signed by an old CA"));
        }
    }
    seen
}

/// What [`assert_nothing_old`] finds: how many certificates (and sa.pub files) it looked at,
/// and which of them are, or are signed by, an old CA (or hold the old service-account key).
fn old_findings(topo: &Topo) -> (usize, Vec<String>) {
    let old_all = topo.old("all-cas.pem");
    let old_ders: Vec<Vec<u8>> = ders(&fs::read_to_string(&old_all).unwrap());
    let old_sa = pem_blocks(&fs::read_to_string(topo.old("sa.pub")).unwrap());
    let tmp = topo.root.join("scan.pem");
    let mut bad = Vec::new();
    let mut seen = 0;
    for n in &topo.nodes {
        seen += scan_certs(n, &old_ders, &old_all, &tmp, &mut bad);
        seen += 1;
        let sa = pem_blocks(&fs::read_to_string(n.pki("sa.pub")).unwrap());
        if !sa.is_disjoint(&old_sa) {
            bad.push(format!(
                "{}: holds the old service-account key",
                n.pki("sa.pub").display()
            ));
        }
    }
    // 3 nodes x (3 CAs, 7 leaves, 5 kubeconfigs x 2, sa.pub) at least.
    assert!(seen >= 63, "only {seen} certificates found on the nodes");
    (seen, bad)
}

/// After a full rollback: every CA file holds exactly the old CA, every leaf and kubeconfig
/// client certificate is signed by its old CA, every kubeconfig trusts exactly the old CA, and
/// sa.pub is the old key.
fn assert_all_old(topo: &Topo) {
    let mut bad = Vec::new();
    let old_sa = pem_blocks(&fs::read_to_string(topo.old("sa.pub")).unwrap());
    let old_ca = ders(&fs::read_to_string(topo.old("ca.crt")).unwrap());
    let tmp = topo.root.join("scan.pem");
    for n in &topo.nodes {
        for f in CA_FILES {
            let now = ders(&fs::read_to_string(n.pki(f)).unwrap());
            let old = ders(&fs::read_to_string(topo.old(f)).unwrap());
            if now != old {
                bad.push(format!(
                    "{}: {} certificates, not the old CA alone",
                    n.pki(f).display(),
                    now.len()
                ));
            }
        }
        for l in LEAVES {
            let issuer = topo.old(l.issuer.trim_start_matches("pki/"));
            if !verifies(&issuer, &n.dir.join(l.crt())) {
                bad.push(format!("{}/{}: not signed by the old CA", n.name, l.crt()));
            }
        }
        for conf in KUBECONFIGS.iter().chain(&["kubelet.conf"]) {
            let text = fs::read_to_string(n.conf(conf)).unwrap();
            let ca = kubeconfig_field(&text, "certificate-authority-data")
                .and_then(Result::ok)
                .unwrap_or_default();
            if ders(&String::from_utf8_lossy(&ca)) != old_ca {
                bad.push(format!(
                    "{}/{conf}: does not trust the old CA alone",
                    n.name
                ));
            }
            let cert = kubeconfig_field(&text, "client-certificate-data")
                .and_then(Result::ok)
                .unwrap_or_default();
            write_file(&tmp, &cert);
            if !verifies(&topo.old("ca.crt"), &tmp) {
                bad.push(format!(
                    "{}/{conf}: client certificate not signed by the old CA",
                    n.name
                ));
            }
        }
        if pem_blocks(&fs::read_to_string(n.pki("sa.pub")).unwrap()) != old_sa {
            bad.push(format!("{}: sa.pub is not the old key alone", n.name));
        }
    }
    assert!(bad.is_empty(), "after the rollback:\n{}", bad.join("\n"));
}

/// After `switch`: no leaf nor kubeconfig client certificate is signed by an old CA any more.
fn assert_leaves_not_old(topo: &Topo) {
    let (_, bad) = leaves_signed_by_old(topo);
    assert!(
        bad.is_empty(),
        "after switch, still signed by the old CA:\n{}",
        bad.join("\n")
    );
}

/// How many leaves and kubeconfig client certificates there are, and those an old CA signs.
fn leaves_signed_by_old(topo: &Topo) -> (usize, Vec<String>) {
    let mut bad = Vec::new();
    let mut seen = 0;
    let tmp = topo.root.join("scan.pem");
    for n in &topo.nodes {
        for l in LEAVES {
            seen += 1;
            let issuer = topo.old(l.issuer.trim_start_matches("pki/"));
            if verifies(&issuer, &n.dir.join(l.crt())) {
                bad.push(format!("{}/{}", n.name, l.crt()));
            }
        }
        for conf in KUBECONFIGS.iter().chain(&["kubelet.conf"]) {
            seen += 1;
            let text = fs::read_to_string(n.conf(conf)).unwrap();
            let cert = kubeconfig_field(&text, "client-certificate-data")
                .and_then(Result::ok)
                .unwrap_or_default();
            write_file(&tmp, &cert);
            if verifies(&topo.old("ca.crt"), &tmp) {
                bad.push(format!("{}/{conf}", n.name));
            }
        }
    }
    (seen, bad)
}

/// The load's detectors do tell trust failures from restarts: a foreign CA on either side of
/// a TLS connection is a TLS failure (curl and etcdctl), a client certificate the API server
/// does not trust is a 401, a stopped server is a refusal.
fn detector_controls(topo: &Topo) {
    let d = topo.root.join("foreign");
    fs::create_dir_all(&d).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run_ok(
        Command::new("openssl")
            .current_dir(&d)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"])
            .args(["-subj", "/CN=kubernetes"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
    );
    // The key and request (the CSR object beside them is not used).
    csr_object(
        &d,
        "client",
        "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
        &[],
        "x",
        "x",
    );
    openssl_sign(
        &d.join("client.csr"),
        (&d.join("ca.crt"), &d.join("ca.key")),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\n",
        2,
        "0x1234",
        &d.join("client.crt"),
    );
    let (fca, fcrt, fkey) = (d.join("ca.crt"), d.join("client.crt"), d.join("client.key"));
    let n1 = &topo.nodes[0];
    let f = cred_files(&n1.conf("admin.conf"), &d.join("admin")).unwrap();
    let url = format!("{}/api/v1/namespaces/{NS}/configmaps", n1.server());
    let o = curl(&fca, &Auth::Cert(&f.cert, &f.key), "GET", &url, None);
    assert!(
        matches!(o, Outcome::Tls(_)),
        "a server of a foreign CA: {o:?}"
    );
    let o = curl(&f.ca, &Auth::Cert(&fcrt, &fkey), "GET", &url, None);
    assert!(
        matches!(o, Outcome::Http(401, _)),
        "a client of a foreign CA: {o:?}"
    );
    let o = curl(&f.ca, &Auth::Bearer("not-a-token"), "GET", &url, None);
    assert!(matches!(o, Outcome::Http(401, _)), "a bogus token: {o:?}");
    // The aggregated-API-style client: its identity is the headers' (200 as system:masters,
    // 403 as the user alone), and proxy headers with a client certificate of a foreign CA are
    // a 401.
    let (pcrt, pkey) = (
        n1.pki("front-proxy-client.crt"),
        n1.pki("front-proxy-client.key"),
    );
    let proxied = |cert: &Path, key: &Path, group: &str| {
        curl(
            &f.ca,
            &Auth::Proxied(cert, key, PROXY_USER, group),
            "GET",
            &url,
            None,
        )
    };
    let o = proxied(&pcrt, &pkey, PROXY_GROUP);
    assert!(
        matches!(o, Outcome::Http(200, _)),
        "front-proxy-client as {PROXY_USER} in {PROXY_GROUP}: {o:?}"
    );
    let o = proxied(&pcrt, &pkey, "");
    assert!(
        matches!(o, Outcome::Http(403, _)),
        "front-proxy-client as {PROXY_USER} in no group: {o:?}"
    );
    let o = proxied(&fcrt, &fkey, PROXY_GROUP);
    assert!(
        matches!(o, Outcome::Http(401, _)),
        "proxy headers with a client of a foreign CA: {o:?}"
    );
    let closed = format!("https://{}:{}/", n1.ip, free_port(n1.ip));
    let o = curl(&f.ca, &Auth::Cert(&f.cert, &f.key), "GET", &closed, None);
    assert!(matches!(o, Outcome::Refused(_)), "a closed port: {o:?}");
    let m = n1.member.client_url();
    let closed = format!("https://{}:{}", n1.ip, free_port(n1.ip));
    let o = etcdctl(
        &closed,
        &n1.pki("etcd/ca.crt"),
        &n1.pki("apiserver-etcd-client.crt"),
        &n1.pki("apiserver-etcd-client.key"),
    )
    .args(["put", "/foreign", "x"])
    .output()
    .unwrap();
    let (k, detail) = classify_etcd(&o, || {
        etcd_probe(
            &closed,
            &n1.pki("etcd/ca.crt"),
            &n1.pki("apiserver-etcd-client.crt"),
            &n1.pki("apiserver-etcd-client.key"),
        )
    });
    assert!(
        !o.status.success() && k == Kind::Refused,
        "a stopped etcd member: {k:?} {detail}"
    );
    let o = etcdctl(
        &m,
        &fca,
        &n1.pki("apiserver-etcd-client.crt"),
        &n1.pki("apiserver-etcd-client.key"),
    )
    .args(["put", "/foreign", "x"])
    .output()
    .unwrap();
    let (k, detail) = classify_etcd(&o, || {
        etcd_probe(
            &m,
            &fca,
            &n1.pki("apiserver-etcd-client.crt"),
            &n1.pki("apiserver-etcd-client.key"),
        )
    });
    assert!(
        !o.status.success() && k == Kind::Tls,
        "etcd server of a foreign CA: {k:?} {detail}"
    );
    let o = etcdctl(&m, &n1.pki("etcd/ca.crt"), &fcrt, &fkey)
        .args(["put", "/foreign", "x"])
        .output()
        .unwrap();
    let (k, detail) = classify_etcd(&o, || etcd_probe(&m, &n1.pki("etcd/ca.crt"), &fcrt, &fkey));
    assert!(
        !o.status.success() && k == Kind::Tls,
        "etcd client of a foreign CA: {k:?} {detail}"
    );
}

/// Every node's admin.conf works against every API server, with kubectl and with curl.
fn assert_admin_confs(topo: &Topo) {
    for n in &topo.nodes {
        let o = kc(&n.conf("admin.conf"), &["get", "namespaces", "-o", "name"]);
        assert!(
            o.status.success() && stdout(&o).contains("namespace/kube-system"),
            "{}'s admin.conf: {}",
            n.name,
            show(&o)
        );
        let f = cred_files(
            &n.conf("admin.conf"),
            &topo.root.join("checks").join(&n.name),
        )
        .unwrap();
        for s in &topo.nodes {
            let url = format!("{}/api/v1/namespaces/{NS}", s.server());
            match curl(&f.ca, &Auth::Cert(&f.cert, &f.key), "GET", &url, None) {
                Outcome::Http(200, _) => {}
                o => panic!("{}'s admin.conf against {url}: {o:?}", n.name),
            }
        }
    }
}

fn assert_check_expiration(topo: &Topo) {
    for n in &topo.nodes {
        let o = run_sinks(
            &kubepki_in(&n.dir, &["certs", "check-expiration"]),
            Sink::Captured,
            Sink::Captured,
            Duration::from_secs(60),
        );
        assert!(
            o.status.success(),
            "{}: certs check-expiration: {}",
            n.name,
            show(&o)
        );
    }
}

/// Every write the load had acknowledged is there: ConfigMaps (through n1's admin.conf, any
/// server) and etcd keys (through every member).
fn assert_no_lost_writes(topo: &Topo, load: &Load) {
    let f = cred_files(
        &topo.nodes[0].conf("admin.conf"),
        &topo.root.join("checks/lost"),
    )
    .unwrap();
    let t = Tally::new("final-read", &load.phase, Instant::now());
    let (_, body) = failover(
        &t,
        order_from(0),
        |i| {
            curl(
                &f.ca,
                &Auth::Cert(&f.cert, &f.key),
                "GET",
                &format!(
                    "{}/api/v1/namespaces/{NS}/configmaps",
                    topo.nodes[i].server()
                ),
                None,
            )
        },
        |s, _| s == 200,
    )
    .unwrap_or_else(|e| panic!("listing the ConfigMaps: {e}"));
    let v: Value = serde_json::from_str(&body).unwrap();
    let items: BTreeMap<String, Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_string(),
                i["data"].clone(),
            )
        })
        .collect();
    let acks = lock(&load.writer_acks);
    let lost: Vec<u64> = acks
        .created
        .iter()
        .copied()
        .filter(|&n| items.get(&cm_name(n)).and_then(|d| d["v"].as_str()) != Some(&n.to_string()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged ConfigMaps missing or wrong, first: {:?}",
        lost.len(),
        acks.created.len(),
        &lost[..lost.len().min(20)]
    );
    let last: u64 = items["counter"]["last"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let max_patch = acks.patched.iter().copied().max().unwrap_or(0);
    assert!(
        last >= max_patch,
        "ConfigMap counter says {last}, but the patch to {max_patch} was acknowledged"
    );
    assert!(
        acks.created.len() >= 30 && acks.patched.len() >= 30,
        "the API writer barely ran: {} creates, {} patches acknowledged",
        acks.created.len(),
        acks.patched.len()
    );

    let etcd_acks = lock(&load.etcd_acks);
    assert!(
        etcd_acks.len() >= 30,
        "the etcd writer barely ran: {} puts",
        etcd_acks.len()
    );
    for (i, n) in topo.nodes.iter().enumerate() {
        let o = etcd_as_apiserver(topo, i)
            .args(["get", "--prefix", ETCD_PREFIX])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "get --prefix through {}: {}",
            n.name,
            show(&o)
        );
        let s = stdout(&o);
        let lines: Vec<&str> = s.lines().collect();
        let kvs: BTreeMap<&str, &str> = lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0], c[1]))
            .collect();
        let missing: Vec<u64> = etcd_acks
            .iter()
            .copied()
            .filter(|&k| kvs.get(etcd_key(k).as_str()).copied() != Some(format!("v{k}").as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} of {} acknowledged etcd puts missing, first: {:?}",
            n.name,
            missing.len(),
            etcd_acks.len(),
            &missing[..missing.len().min(20)]
        );
    }
}

/// The load's verdict: no TLS failure, no 401 (but the service-account client's in the phases
/// `sa_401_ok` accepts), nothing unexpected, no failed operation (idem).
fn assert_load(load: &Load, sa_401_ok: impl Fn(&str) -> bool) {
    let report = load.report();
    eprintln!("[rotation-test] load:\n{report}");
    let any = |_: &str| true;
    let mut bad = Vec::new();
    for t in [&load.writer, &load.etcd] {
        for k in [Kind::Tls, Kind::Unauthorized, Kind::Other, Kind::Failed] {
            let n = t.count(k, any);
            if n > 0 {
                bad.push(format!("{}: {n} × {k:?}", t.name));
            }
        }
    }
    // The aggregated-API-style client speaks for system:masters, which no restart can leave
    // without its permissions: a 403 is a refused proxy identity, as much a failure as a 401.
    if let Some(t) = &load.proxy {
        for k in [
            Kind::Tls,
            Kind::Unauthorized,
            Kind::Forbidden,
            Kind::Other,
            Kind::Failed,
        ] {
            let n = t.count(k, any);
            if n > 0 {
                bad.push(format!("{}: {n} × {k:?}", t.name));
            }
        }
    }
    let sa = &load.sa;
    for k in [Kind::Tls, Kind::Other] {
        let n = sa.count(k, any);
        if n > 0 {
            bad.push(format!("{}: {n} × {k:?}", sa.name));
        }
    }
    for k in [Kind::Unauthorized, Kind::Failed] {
        let n = sa.count(k, |p| !sa_401_ok(p));
        if n > 0 {
            bad.push(format!("{}: {n} × {k:?}", sa.name));
        }
    }
    let n401 = sa.count(Kind::Unauthorized, &sa_401_ok);
    let first = lock(&sa.data)
        .samples
        .get(&Kind::Unauthorized)
        .and_then(|v| v.first().cloned())
        .unwrap_or_default();
    if n401 > 0 {
        eprintln!(
            "[rotation-test] the service-account client's legacy token got {n401} 401s where \
             they are expected (its Secret re-issued, or the old key dropped); the first: \
             {}",
            first.lines().next().unwrap_or("")
        );
    }
    assert!(
        bad.is_empty(),
        "failures under load:\n{}\n{report}",
        bad.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Checks of the rotations of one CA alone.

/// What one CA's rotation may change on a node (relative to the node's dir): its own CA files
/// and the leaves it signs.
const FRONT_PROXY_FILES: &[&str] = &[
    "pki/front-proxy-ca.crt",
    "pki/front-proxy-ca.key",
    "pki/front-proxy-client.crt",
    "pki/front-proxy-client.key",
];
const ETCD_FILES: &[&str] = &[
    "pki/etcd/ca.crt",
    "pki/etcd/ca.key",
    "pki/etcd/server.crt",
    "pki/etcd/server.key",
    "pki/etcd/peer.crt",
    "pki/etcd/peer.key",
    "pki/etcd/healthcheck-client.crt",
    "pki/etcd/healthcheck-client.key",
    "pki/apiserver-etcd-client.crt",
    "pki/apiserver-etcd-client.key",
];
/// What neither of them may change: the `ca` CA and the service-account key pair.
const NOT_ROTATED: &[&str] = &["pki/ca.crt", "pki/ca.key", "pki/sa.key", "pki/sa.pub"];
/// Saved from n1 beside the CA certificates before the single-CA rotations: the old CA keys and
/// the old client pairs, to look for and to try against the servers at the end.
const OLD_EXTRA: &[&str] = &[
    "front-proxy-ca.key",
    "etcd/ca.key",
    "front-proxy-client.crt",
    "front-proxy-client.key",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
];

fn save_old_extra(topo: &Topo) {
    for f in OLD_EXTRA {
        write_file(&topo.old(f), &fs::read(topo.nodes[0].pki(f)).unwrap());
    }
}

/// Every file of node `n` but the servers' data and caches, the test's probes, backups and
/// logs: what kubepki wrote and keeps.
fn node_files(n: &Node) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                let skip = [
                    "etcd-data",
                    "kube-cache",
                    "kcm-certs",
                    "scheduler-certs",
                    "apiserver-certs",
                    "probe",
                ]
                .contains(&name.as_str())
                    || name.contains("backup");
                if !skip {
                    walk(&p, out);
                }
            } else if !name.ends_with(".log") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&n.dir, &mut out);
    out
}

/// The contents of every [`node_files`] of every node, by path relative to the scratch root.
fn snapshot(topo: &Topo) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for n in &topo.nodes {
        for p in node_files(n) {
            if let Ok(b) = fs::read(&p) {
                let rel = p.strip_prefix(&topo.root).unwrap_or(&p);
                out.insert(rel.display().to_string(), b);
            }
        }
    }
    out
}

/// The paths whose contents differ between two snapshots (made, changed or removed).
fn changed(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    before
        .keys()
        .chain(after.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// The etcd cluster, `when`: three members listed and started (a name and client URLs), each
/// healthy to its own node's healthcheck client, all three agreeing on one leader (bounded
/// retries: 20 s, an election may just have happened).
fn assert_etcd_quorum(topo: &Topo, when: &str) {
    wait_ok(
        &format!("{when}: 3 healthy etcd members with one leader"),
        Duration::from_secs(20),
        || {
            let as_health = |n: &Node, endpoints: &str| {
                etcdctl(
                    endpoints,
                    &n.pki("etcd/ca.crt"),
                    &n.pki("etcd/healthcheck-client.crt"),
                    &n.pki("etcd/healthcheck-client.key"),
                )
            };
            let json = |mut c: Command, what: &str| -> Result<Value, String> {
                let o = c.output().map_err(|e| e.to_string())?;
                if !o.status.success() {
                    return Err(format!("{what}: {}", show(&o)));
                }
                serde_json::from_str(&stdout(&o)).map_err(|e| format!("{what}: {e}: {}", show(&o)))
            };
            let mut c = as_health(&topo.nodes[0], &topo.etcd_urls(0));
            c.args(["member", "list", "-w", "json"]);
            let v = json(c, "member list")?;
            let members = v["members"].as_array().cloned().unwrap_or_default();
            let started: BTreeSet<&str> = members
                .iter()
                .filter(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()))
                .filter_map(|m| m["name"].as_str())
                .collect();
            if members.len() != 3 || started != BTreeSet::from(["n1", "n2", "n3"]) {
                return Err(format!("member list: {v}"));
            }
            let mut leaders = BTreeSet::new();
            for n in &topo.nodes {
                etcd_health(n).map_err(|e| format!("{}: {e}", n.name))?;
                let mut c = as_health(n, &n.member.client_url());
                c.args(["endpoint", "status", "-w", "json"]);
                let v = json(c, &format!("{}: endpoint status", n.name))?;
                match v[0]["Status"]["leader"].as_u64() {
                    Some(l) if l != 0 => {
                        leaders.insert(l);
                    }
                    _ => return Err(format!("{}: no leader: {v}", n.name)),
                }
            }
            if leaders.len() == 1 {
                Ok(())
            } else {
                Err(format!("the members see different leaders: {leaders:?}"))
            }
        },
    );
}

/// What is left on the nodes of the old CAs `cas` (as saved in `old/`, with their keys): every
/// certificate that is one of them or that one signed (the files and kubeconfigs
/// [`certs_on`] reads), and every kept file ([`node_files`]: kubepki's JSON and manifests
/// too) holding the PEM body of one of them or of its key. Returns how many certificates were
/// looked at, and what was found.
fn old_ca_findings(topo: &Topo, cas: &[&str]) -> (usize, Vec<String>) {
    let bundle = topo.root.join("old/single-cas.pem");
    let mut pems = Vec::new();
    let mut needles = BTreeSet::new();
    for ca in cas {
        let crt = fs::read_to_string(topo.old(ca)).unwrap();
        pems.extend_from_slice(crt.as_bytes());
        let key = fs::read_to_string(topo.old(&ca.replace(".crt", ".key"))).unwrap();
        needles.extend(pem_blocks(&crt));
        needles.extend(pem_blocks(&key));
    }
    write_file(&bundle, &pems);
    let old_ders = ders(&String::from_utf8_lossy(&pems));
    let tmp = topo.root.join("scan-single.pem");
    let mut bad = Vec::new();
    let mut seen = 0;
    for n in &topo.nodes {
        seen += scan_certs(n, &old_ders, &bundle, &tmp, &mut bad);
        for p in node_files(n) {
            let text: String = String::from_utf8_lossy(&fs::read(&p).unwrap_or_default())
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if needles.iter().any(|b| text.contains(b.as_str())) {
                bad.push(format!(
                    "{}: holds an old CA certificate or key",
                    p.display()
                ));
            }
        }
    }
    (seen, bad)
}

/// The CA bundle kube-apiserver publishes for extension API servers (kube-system/
/// extension-apiserver-authentication, requestheader-client-ca-file): how many certificates,
/// and whether the old front-proxy CA is one; None while the ConfigMap is not there.
fn published_front_proxy_cas(topo: &Topo) -> Option<(usize, bool)> {
    let o = kc(
        &topo.nodes[0].conf("admin.conf"),
        &[
            "-n",
            "kube-system",
            "get",
            "configmap",
            "extension-apiserver-authentication",
            "-o",
            "jsonpath={.data.requestheader-client-ca-file}",
        ],
    );
    if !o.status.success() {
        return None;
    }
    let now = ders(&stdout(&o));
    let old = ders(&fs::read_to_string(topo.old("front-proxy-ca.crt")).unwrap());
    Some((now.len(), old.iter().any(|c| now.contains(c))))
}

/// What [`published_front_proxy_cas`] says, in words.
fn published_words(p: Option<(usize, bool)>) -> String {
    match p {
        None => "not there".into(),
        Some((n, old)) => format!(
            "{n} certificate(s), {} the old front-proxy CA",
            if old { "still with" } else { "without" }
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// A cluster up, the load's service account made and checked, the old CAs saved, the load
/// running: what every test starts from.
fn start(p: &mut Plane) -> (Load, String, PathBuf) {
    start_load(p, false)
}

/// As [`start`], with the aggregated-API-style client in the load when `proxy`.
fn start_load(p: &mut Plane, proxy: bool) -> (Load, String, PathBuf) {
    p.bring_up();
    save_old(&p.topo);
    let (secret, token) = make_service_account(p, "load-sa");
    write_file(&p.topo.old("sa-token"), token.as_bytes());
    let ca = p.topo.old("ca.crt");
    assert_token(
        p,
        &ca,
        &token,
        200,
        "the load's service-account token before the rotation",
    );
    detector_controls(&p.topo);
    csr_check(p, "before");
    let load = Load::start_with(&p.topo, &secret, proxy);
    load.wait_progress(5, "the load's start");
    p.note("load running".into());
    (load, token, ca)
}

/// Runs `body` on a fresh cluster, with the process logs in any failure message.
fn with_cluster(test: &str, body: impl FnOnce(&mut Plane)) {
    let _serial = lock(&SERIAL);
    let started = Instant::now();
    let bin = ensure_control_plane_tools();
    let bin = if bin.join("kube-scheduler").is_file() {
        bin
    } else {
        k8s_bin_dir_with("kube-scheduler")
    };
    ensure_installed("timeout", &["coreutils"]);
    let tmp = scratch();
    let topo = make_pki(tmp.path());
    let mut plane = Plane::new(bin, topo);
    run_checks(&mut plane, body, Plane::tails);
    eprintln!(
        "[rotation-test] {test}: passed in {:.1?}",
        started.elapsed()
    );
    // `plane` drops before `tmp`: every process stopped by PID first.
}

#[test]
fn ca_rotation_under_load_has_zero_failures() {
    with_cluster("ca rotation", |p| {
        let (mut load, old_token, _) = start(p);
        let root = p.topo.root.clone();

        phase(p, &load, "trust", &trust_args(&root));
        load.set_phase("trust-done");
        csr_check(p, "trust");

        phase(p, &load, "switch", &simple_args("switch"));
        load.set_phase("switch-done");
        assert_leaves_not_old(&p.topo);
        csr_check(p, "switch");
        load.wait_progress(2, "after switch");

        // The legacy token Secrets of the old key re-issued, in place, with the new one. With
        // --service-account-lookup (the default) the API servers compare a legacy token with
        // its Secret's copy, so the service-account client (modelled on a pod whose Secret
        // volume refreshes) is refused from the moment its Secret's token changes until it
        // reads the new one (every 2 s here, about a minute in a pod). Counted and reported, not
        // failed on; the token it started with is checked refused at the end.
        load.sa_may_fail();
        load.set_phase("tokens");
        let t = Instant::now();
        let out = rotate_tokens(&p.topo.nodes[0]);
        p.note(format!(
            "n1: ca rotate tokens in {:.1?}:\n{}",
            t.elapsed(),
            out.trim()
        ));
        load.set_phase("tokens-done");
        load.wait_progress(2, "after ca rotate tokens");

        phase(p, &load, "finish", &simple_args("finish"));
        load.set_phase("finish-done");
        let n1 = p.topo.nodes[0].clone();
        assert_eq!(
            p.signer,
            (n1.pki("ca.crt"), n1.pki("ca.key")),
            "after finish the controller-manager signs with ca.crt/ca.key again"
        );
        csr_check(p, "finish");
        load.wait_progress(3, "after finish");
        load.stop();

        assert_load(&load, |phase| {
            phase.starts_with("tokens") || phase.starts_with("finish")
        });
        assert_no_lost_writes(&p.topo, &load);
        assert_nothing_old(&p.topo);
        // The legacy token of the old key is refused; a new service account's works.
        let new_ca = p.topo.root.join("checks/new-ca.crt");
        let f = read_kubeconfig(&n1.conf("admin.conf")).unwrap();
        write_file(&new_ca, &f.ca);
        assert_token(
            p,
            &new_ca,
            &old_token,
            401,
            "a token of the old service-account key",
        );
        let (secret, token) = make_service_account(p, "fresh-sa");
        let t = Tally::new("fresh-sa", &load.phase, Instant::now());
        let (_, secret_ca) = read_secret(&p.topo, &t, &secret, &root.join("checks/fresh-sa"))
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("the new service account's Secret exists");
        assert_token(p, &secret_ca, &token, 200, "a new service account's token");
        // What `ca rotate tokens` re-issued for the load's service account works (a pod
        // started now would mount it).
        let (secret, _) = make_service_account_secret(p, "load-sa");
        let (token, secret_ca) = read_secret(&p.topo, &t, &secret, &root.join("checks/load-sa"))
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("the load service account's current Secret exists");
        assert_token(
            p,
            &secret_ca,
            &token,
            200,
            "the load service account's re-issued token",
        );
        let gone = load.sa.count(Kind::Gone, |_| true);
        p.note(format!(
            "the Secret the service-account client had mounted: {}",
            if gone > 0 {
                format!("deleted ({gone} reads found it gone); its new Secret is {secret}")
            } else {
                "still there".into()
            }
        ));
        assert_admin_confs(&p.topo);
        assert_check_expiration(&p.topo);
        p.assert_up("at the end");
    });
}

#[test]
fn ca_rotation_rollback_under_load_has_zero_failures() {
    with_cluster("ca rotation rollback", |p| {
        let (mut load, old_token, old_ca) = start(p);
        let root = p.topo.root.clone();

        phase(p, &load, "trust", &trust_args(&root));
        load.set_phase("trust-done");
        phase(p, &load, "switch", &simple_args("switch"));
        load.set_phase("switch-done");
        csr_check(p, "switch");

        phase(p, &load, "rollback-to-trust", &simple_args("rollback"));
        load.set_phase("rollback-to-trust-done");
        csr_check(p, "rollback1");
        phase(p, &load, "rollback-to-none", &simple_args("rollback"));
        load.set_phase("rollback-done");
        let n1 = p.topo.nodes[0].clone();
        assert_eq!(
            p.signer,
            (n1.pki("ca.crt"), n1.pki("ca.key")),
            "after the rollback the controller-manager signs with ca.crt/ca.key again"
        );
        csr_check(p, "rollback2");
        load.wait_progress(3, "after the rollback");
        load.stop();

        assert_load(&load, |_| false);
        assert_no_lost_writes(&p.topo, &load);
        assert_all_old(&p.topo);
        assert_token(
            p,
            &old_ca,
            &old_token,
            200,
            "the old token after the rollback",
        );
        assert_admin_confs(&p.topo);
        assert_check_expiration(&p.topo);
        p.assert_up("at the end");
    });
}

/// `front-proxy-ca` alone, then `etcd-ca` alone, each trust, switch, finish on every node with
/// the restarts its JSON lists, under the load plus an aggregated-API-style client (the
/// front-proxy-client certificate with `X-Remote-User`/`X-Remote-Group`): zero TLS, 401 or 403
/// failures, no lost write, three healthy etcd members after every phase; at the end nothing
/// on any node is, trusts or is signed by the old front-proxy or etcd CA, the old client
/// certificates of both are refused and the new ones accepted, and `ca` (and `sa`) are
/// byte-for-byte what they were.
#[test]
fn single_ca_rotations_under_load_have_zero_failures() {
    with_cluster("single CA rotations", |p| {
        let t_start = Instant::now();
        let (mut load, _, _) = start_load(p, true);
        save_old_extra(&p.topo);
        let root = p.topo.root.clone();
        let n1 = p.topo.nodes[0].clone();
        let ca_signer = (n1.pki("ca.crt"), n1.pki("ca.key"));
        let before = snapshot(&p.topo);
        assert_etcd_quorum(&p.topo, "before the rotations");
        let mut timings = vec![("cluster and load up".to_string(), t_start.elapsed())];

        for (target, tag, owned) in [
            ("front-proxy-ca", "fp", FRONT_PROXY_FILES),
            ("etcd-ca", "etcd", ETCD_FILES),
        ] {
            let t_rotation = Instant::now();
            let snap = snapshot(&p.topo);
            for step in ["trust", "switch", "finish"] {
                let label = format!("{tag}-{step}");
                let t = Instant::now();
                let args: Box<Args> = if step == "trust" {
                    Box::new(trust_args_of(&root, target))
                } else {
                    Box::new(simple_args_of(step, target))
                };
                let outs = phase(p, &load, &label, &*args);
                load.set_phase(&format!("{label}-done"));
                let restarts: Vec<String> = outs.iter().map(|o| o.restart.join("+")).collect();
                assert_eq!(
                    p.signer, ca_signer,
                    "{label}: the controller-manager's signer moved, though `ca` is not rotated"
                );
                assert_etcd_quorum(&p.topo, &format!("after {label}"));
                let took = t.elapsed();
                p.note(format!(
                    "[timing] {label}: {took:.1?} (restarts n1..n3: {restarts:?})"
                ));
                timings.push((label, took));
            }
            // What the rotation changed: only its own CA and the leaves that CA signs.
            let diff = changed(&snap, &snapshot(&p.topo));
            p.note(format!("{target}: files changed: {diff:#?}"));
            let foreign: Vec<&String> = diff
                .iter()
                .filter(|f| !owned.iter().any(|o| f.ends_with(o)))
                .collect();
            assert!(
                foreign.is_empty(),
                "rotating {target} alone changed files that are not {target}'s: {foreign:#?}"
            );
            for n in &p.topo.nodes {
                for f in owned.iter().filter(|f| f.ends_with(".crt")) {
                    let rel = format!("{}/{f}", n.name);
                    assert!(diff.contains(&rel), "rotating {target}: {rel} unchanged");
                }
            }
            csr_check(p, tag);
            load.wait_progress(2, &format!("after the {target} rotation"));
            timings.push((format!("{target} rotation"), t_rotation.elapsed()));
        }
        load.wait_progress(3, "at the end");
        load.stop();

        assert_load(&load, |_| false);
        assert_no_lost_writes(&p.topo, &load);
        assert_etcd_quorum(&p.topo, "at the end");

        // `ca` and `sa`: byte-for-byte what they were, on every node.
        let after = snapshot(&p.topo);
        for n in &p.topo.nodes {
            for f in NOT_ROTATED {
                let rel = format!("{}/{f}", n.name);
                assert!(
                    before.contains_key(&rel) && before.get(&rel) == after.get(&rel),
                    "{rel} changed, though neither `ca` nor `sa` was rotated"
                );
            }
        }
        // Nothing left of the old front-proxy and etcd CAs.
        let (seen, old) = old_ca_findings(&p.topo, &["front-proxy-ca.crt", "etcd/ca.crt"]);
        assert!(
            old.is_empty(),
            "after finish, of {seen} certificates and every kept file:\n{}",
            old.join("\n")
        );
        p.note(format!(
            "nothing of the old front-proxy and etcd CAs in {seen} certificates and every kept file"
        ));

        // The servers agree: the old front-proxy client is refused (401) by every API server,
        // every node's new one accepted; the old etcd client refused in the TLS handshake by
        // every member, the new one accepted.
        let checks = root.join("checks/single");
        for n in &p.topo.nodes {
            let (ca, cert, key) = proxy_files(n, &checks.join(&n.name)).unwrap();
            for s in &p.topo.nodes {
                let url = format!("{}/api/v1/namespaces/{NS}/configmaps?limit=1", s.server());
                let proxied = |c: &Path, k: &Path| {
                    curl(
                        &ca,
                        &Auth::Proxied(c, k, PROXY_USER, PROXY_GROUP),
                        "GET",
                        &url,
                        None,
                    )
                };
                match proxied(&cert, &key) {
                    Outcome::Http(200, _) => {}
                    o => panic!("{}'s new front-proxy-client against {url}: {o:?}", n.name),
                }
                let (oc, ok) = (
                    p.topo.old("front-proxy-client.crt"),
                    p.topo.old("front-proxy-client.key"),
                );
                match proxied(&oc, &ok) {
                    Outcome::Http(401, _) => {}
                    o => panic!("the old front-proxy-client against {url}: {o:?}"),
                }
            }
        }
        for m in &p.topo.nodes {
            let url = m.member.client_url();
            let ca = n1.pki("etcd/ca.crt");
            let new = etcd_probe(
                &url,
                &ca,
                &n1.pki("apiserver-etcd-client.crt"),
                &n1.pki("apiserver-etcd-client.key"),
            );
            assert!(
                matches!(new, Outcome::Http(200, _)),
                "the new apiserver-etcd-client against {url}: {new:?}"
            );
            let old = etcd_probe(
                &url,
                &ca,
                &p.topo.old("apiserver-etcd-client.crt"),
                &p.topo.old("apiserver-etcd-client.key"),
            );
            assert!(
                matches!(old, Outcome::Tls(_)),
                "the old apiserver-etcd-client against {url}: {old:?}"
            );
        }
        // Reported, not asserted: what kube-apiserver itself publishes to extension API
        // servers (it merges what is there with its own files, dropping only expired CAs), and
        // what it publishes once that ConfigMap is deleted (bounded: 30 s).
        let published = published_front_proxy_cas(&p.topo);
        let admin = n1.conf("admin.conf");
        let o = kc(
            &admin,
            &[
                "-n",
                "kube-system",
                "delete",
                "configmap",
                "extension-apiserver-authentication",
            ],
        );
        let mut again = None;
        let t = Instant::now();
        while o.status.success() && t.elapsed() < Duration::from_secs(30) {
            again = published_front_proxy_cas(&p.topo);
            if again.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        p.note(format!(
            "kube-system/extension-apiserver-authentication requestheader-client-ca-file after \
             finish: {}; deleted ({}), published again after {:.1?}: {}",
            published_words(published),
            if o.status.success() { "ok" } else { "failed" },
            t.elapsed(),
            published_words(again)
        ));
        assert_admin_confs(&p.topo);
        assert_check_expiration(&p.topo);
        p.assert_up("at the end");
        timings.push(("everything".into(), t_start.elapsed()));
        let lines: Vec<String> = timings
            .iter()
            .map(|(l, d)| format!("  {l:<24} {d:>8.1?}"))
            .collect();
        p.note(format!("[timing] summary:\n{}", lines.join("\n")));
    });
}

/// The harness's own baseline: the same rolling restarts of every component, the same load and
/// the same assertions, and no rotation; and the negative controls of the old-CA scans.
#[test]
fn rolling_restarts_under_load_have_zero_failures() {
    with_cluster("rolling restarts", |p| {
        let (mut load, old_token, old_ca) = start(p);
        phase(p, &load, "restart-all", &|_, _| None);
        load.set_phase("restart-all-done");
        csr_check(p, "restarted");
        load.wait_progress(3, "after the restarts");
        load.stop();
        assert_load(&load, |_| false);
        assert_no_lost_writes(&p.topo, &load);
        assert_all_old(&p.topo);
        // The scans the rotation tests rely on do see the old CAs: every certificate found is
        // one or is signed by one, and every sa.pub holds the old key.
        let (seen, old) = old_findings(&p.topo);
        assert_eq!(old.len(), seen, "{old:#?}");
        let (seen, old) = leaves_signed_by_old(&p.topo);
        assert_eq!(old.len(), seen, "{old:#?}");
        p.note(format!(
            "negative controls: {seen} leaves, all found signed by the old CAs"
        ));
        assert_token(p, &old_ca, &old_token, 200, "the token after the restarts");
        assert_admin_confs(&p.topo);
        assert_check_expiration(&p.topo);
        p.assert_up("at the end");
    });
}
