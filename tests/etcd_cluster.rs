//! Real 3-member etcd 3.4 clusters on certificates made only by `kubepki init` (one `init` per
//! member, all sharing one etcd CA, as kubeadm's "copy the etcd CA, then init the next control
//! plane" procedure does), with the flags kubeadm writes into its etcd static pod manifest.
//!
//! 1. `three_member_etcd_cluster_runs_on_kubepki_certs`: members on 127.0.0.1/2/3 form a
//!    cluster over peer TLS (peer certs, `--peer-client-cert-auth`); writes succeed with the
//!    apiserver-etcd-client cert and read back from another member; `etcdctl endpoint health`
//!    works with the healthcheck-client cert; etcd's JSON gateway (`/v3/kv/range`, which etcd
//!    serves by dialing itself as a client with its *server* cert: it fails with code 14 when
//!    that cert lacks clientAuth) answers on every member; a client cert from a foreign CA is
//!    refused.
//! 2. `renewal_under_load_loses_no_write`: members on 127.0.0.4/5/6, a writer putting a key
//!    every 50 ms through all three endpoints with the apiserver-etcd-client certs (which are
//!    renewed under it); for each member in turn `kubepki certs renew` of its etcd-server,
//!    etcd-peer, etcd-healthcheck-client and apiserver-etcd-client certs, new connections
//!    checked right after the renewal (before any restart: etcd reloads cert/key per
//!    handshake, and serves the new serials at once), then a rolling restart of that member.
//!    Every member is healthy after each step, and at the end every acknowledged key is on
//!    every member.
//!
//! Every process is stopped by its PID when its guard drops (also on panic); every wait is
//! bounded; any failure message carries the tails of the etcd members' logs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// The cert files `certs renew` replaces on each member in test 2, by renew name.
const RENEWED: &[(&str, &str)] = &[
    ("etcd-server", "etcd/server.crt"),
    ("etcd-peer", "etcd/peer.crt"),
    ("etcd-healthcheck-client", "etcd/healthcheck-client.crt"),
    ("apiserver-etcd-client", "apiserver-etcd-client.crt"),
];

/// A running 3-member cluster: `procs[i]` runs `members[i]`.
struct Etcd3 {
    members: Vec<EtcdMember>,
    procs: Vec<Proc>,
    initial: String,
}

impl Etcd3 {
    fn start(members: Vec<EtcdMember>) -> Etcd3 {
        let initial = initial_cluster(&members);
        let procs = members
            .iter()
            .map(|m| start_etcd_member(m, &initial, "new"))
            .collect();
        Etcd3 {
            members,
            procs,
            initial,
        }
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn tails(&self) -> String {
        log_tails(&self.procs, 40)
    }

    fn assert_all_running(&mut self) {
        for p in &mut self.procs {
            assert_running(p);
        }
    }

    /// Waits (bounded) until member `i` answers `endpoint health` with its own healthcheck
    /// client, panicking with its log if it exits meanwhile.
    fn wait_healthy(&mut self, i: usize, timeout: Duration) {
        let m = self.members[i].clone();
        let p = &mut self.procs[i];
        wait_for(
            &format!("{} endpoint health", m.name),
            timeout,
            (timeout.as_millis() / 250) as u32,
            || {
                assert_running(p);
                health(&m).ok()
            },
        );
    }

    /// Every member healthy, now (no retry): each through its own healthcheck-client cert, and
    /// `endpoint health --cluster` (which finds the members through `member list`) from the
    /// first. Also: `member list` shows the three, started.
    fn assert_all_healthy(&mut self, when: &str) {
        self.assert_all_running();
        for m in &self.members {
            if let Err(e) = health(m) {
                panic!("{when}: {} is not healthy:\n{e}", m.name);
            }
        }
        let m0 = &self.members[0];
        let o = out(health_ctl(m0, &m0.client_url()).args(["endpoint", "health", "--cluster"]));
        let text = stdout(&o) + &stderr(&o);
        assert!(
            o.status.success()
                && self
                    .members
                    .iter()
                    .all(|m| text.contains(&format!("{} is healthy", m.client_url()))),
            "{when}: endpoint health --cluster:\n{}",
            show(&o)
        );
        assert_member_list(self, when);
    }

    /// Stops member `i` (SIGTERM: a leader hands leadership over) and starts it again on the
    /// same data dir with `--initial-cluster-state existing`, as a static pod restart would.
    fn stop(&mut self, i: usize) {
        // Waits for the exit (SIGKILL after the grace period).
        self.procs[i].stop(Duration::from_secs(20));
    }

    fn start_again(&mut self, i: usize) {
        self.procs[i] = start_etcd_member(&self.members[i], &self.initial, "existing");
    }
}

/// Runs a command, whatever its exit status.
fn out(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// etcdctl as the API server of `m`'s node (apiserver-etcd-client).
fn api_ctl(m: &EtcdMember, endpoints: &str) -> Command {
    etcdctl(
        endpoints,
        &m.pki("etcd/ca.crt"),
        &m.pki("apiserver-etcd-client.crt"),
        &m.pki("apiserver-etcd-client.key"),
    )
}

/// etcdctl as `m`'s node's health check (etcd/healthcheck-client).
fn health_ctl(m: &EtcdMember, endpoints: &str) -> Command {
    etcdctl(
        endpoints,
        &m.pki("etcd/ca.crt"),
        &m.pki("etcd/healthcheck-client.crt"),
        &m.pki("etcd/healthcheck-client.key"),
    )
}

/// `endpoint health` of `m` alone, with its node's healthcheck client.
fn health(m: &EtcdMember) -> Result<(), String> {
    let o = out(health_ctl(m, &m.client_url()).args(["endpoint", "health"]));
    let text = stdout(&o) + &stderr(&o);
    if o.status.success() && text.contains(&format!("{} is healthy", m.client_url())) {
        Ok(())
    } else {
        Err(show(&o))
    }
}

/// `member list` (through each member in turn) names the three members, each started, with
/// its peer and client URLs.
fn assert_member_list(c: &Etcd3, when: &str) {
    for via in &c.members {
        let o = out(api_ctl(via, &via.client_url()).args(["member", "list"]));
        let s = stdout(&o);
        let rows: Vec<Vec<&str>> = s
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(", ").collect())
            .collect();
        let ok = o.status.success()
            && rows.len() == 3
            && c.members.iter().all(|m| {
                rows.iter().any(|r| {
                    r.len() == 6
                        && r[1] == "started"
                        && r[2] == m.name
                        && r[3] == m.peer_url()
                        && r[4] == m.client_url()
                        && r[5] == "false"
                })
            });
        assert!(
            ok,
            "{when}: member list through {} should show 3 started members:\n{}",
            via.name,
            show(&o)
        );
    }
}

/// `put KEY VALUE` through `endpoints` as `m`'s API server; Ok when etcd acknowledged it.
fn put(m: &EtcdMember, endpoints: &str, key: &str, value: &str) -> Result<(), String> {
    let o = out(api_ctl(m, endpoints).args(["put", key, value]));
    if o.status.success() && stdout(&o).trim() == "OK" {
        Ok(())
    } else {
        Err(show(&o))
    }
}

/// The value of `key` read (linearizably) through member `m` alone; None if absent.
fn get(m: &EtcdMember, key: &str) -> Option<String> {
    let o = run_ok(api_ctl(m, &m.client_url()).args(["get", key, "--print-value-only"]));
    let s = stdout(&o);
    let v = s.trim_end_matches('\n');
    (!s.is_empty()).then(|| v.to_string())
}

/// Every key under `prefix` with its value, read through member `m` alone.
fn get_prefix(m: &EtcdMember, prefix: &str) -> BTreeMap<String, String> {
    let o = run_ok(api_ctl(m, &m.client_url()).args(["get", "--prefix", prefix]));
    let s = stdout(&o);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines.len().is_multiple_of(2),
        "get --prefix {prefix} through {}: odd number of lines:\n{s}",
        m.name
    );
    lines
        .chunks(2)
        .map(|kv| (kv[0].to_string(), kv[1].to_string()))
        .collect()
}

/// openssl with `input` on stdin.
fn openssl_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().expect("openssl")
}

/// The serial of the certificate a TLS server at `ip:port` presents to a new connection made
/// with `cert`/`key` as client certificate; the server's chain and IP SAN are verified
/// against `ca`.
fn served_serial(ip: &str, port: u16, ca: &Path, cert: &Path, key: &Path) -> String {
    let o = out(Command::new("timeout")
        .args(["-k", "2", "10", "openssl", "s_client"])
        .arg("-connect")
        .arg(format!("{ip}:{port}"))
        .arg("-CAfile")
        .arg(ca)
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(["-verify_return_error", "-verify_ip", ip]));
    let s = stdout(&o);
    let (Some(b), Some(e)) = (
        s.find("-----BEGIN CERTIFICATE-----"),
        s.find("-----END CERTIFICATE-----"),
    ) else {
        panic!(
            "openssl s_client {ip}:{port} shows no certificate:\n{}",
            show(&o)
        );
    };
    assert!(
        stdout(&o).contains("Verify return code: 0 (ok)"),
        "openssl s_client {ip}:{port}: server certificate does not verify:\n{}",
        show(&o)
    );
    let pem = &s[b..e + "-----END CERTIFICATE-----".len()];
    let o = openssl_stdin(
        &["x509", "-noout", "-serial"],
        format!("{pem}\n").as_bytes(),
    );
    assert!(o.status.success(), "{}", show(&o));
    stdout(&o).trim().to_string()
}

/// `m` serves its certificate file `crt` on `port` to a new connection made with the client
/// certificate `client` (`<client>.crt` and `.key` below `m`'s cert dir).
fn assert_serves(m: &EtcdMember, port: u16, client: &str, crt: &str, what: &str) {
    let served = served_serial(
        &m.ip.to_string(),
        port,
        &m.pki("etcd/ca.crt"),
        &m.pki(&format!("{client}.crt")),
        &m.pki(&format!("{client}.key")),
    );
    assert_eq!(served, cert_serial(&m.pki(crt)), "{}: {what}", m.name);
}

/// `openssl verify -purpose PURPOSE` of `cert` against `ca`.
fn assert_verifies(ca: &Path, cert: &Path, purpose: &str) {
    run_ok(
        Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(ca)
            .arg(cert),
    );
}

fn b64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {s:?}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut outv = Vec::new();
    for c in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &b) in c.iter().enumerate() {
            n |= val(b) << (18 - 6 * i);
        }
        for i in 0..c.len().saturating_sub(1) {
            outv.push((n >> (16 - 8 * i)) as u8);
        }
    }
    outv
}

/// POSTs a range request for `key` to `m`'s JSON gateway with a client certificate; the
/// curl output whatever its status.
fn gateway_range(m: &EtcdMember, cert: &Path, key_file: &Path, key: &str) -> Output {
    let body = format!(r#"{{"key":"{}"}}"#, b64_encode(key.as_bytes()));
    out(curl_with_cert(&m.pki("etcd/ca.crt"), cert, key_file)
        .args(["-X", "POST", "-H", "Content-Type: application/json", "-d"])
        .arg(body)
        .arg(format!("{}/v3/kv/range", m.client_url())))
}

/// Three node directories under `root`, `kubepki init` in each for `names[i]` at `ips[i]`:
/// the first makes the etcd CA, the others get a copy of its ca.crt/ca.key first (as kubeadm
/// users copy the shared CAs to the next control-plane node) so `init` signs with it.
fn init_members(root: &Path, names: [&str; 3], ips: [u8; 3]) -> Vec<EtcdMember> {
    let dirs: Vec<_> = names.iter().map(|n| root.join(n)).collect();
    init_node(&dirs[0], names[0], loopback(ips[0]), &[]);
    for i in 1..3 {
        for f in ["ca.crt", "ca.key"] {
            let from = dirs[0].join("pki/etcd").join(f);
            write_file(&dirs[i].join("pki/etcd").join(f), &fs::read(&from).unwrap());
        }
        fs::set_permissions(
            dirs[i].join("pki/etcd/ca.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        init_node(&dirs[i], names[i], loopback(ips[i]), &[]);
    }
    let ca = dirs[0].join("pki/etcd/ca.crt");
    for (i, d) in dirs.iter().enumerate() {
        assert_eq!(
            fs::read(d.join("pki/etcd/ca.crt")).unwrap(),
            fs::read(&ca).unwrap(),
            "{}: init must have kept the shared etcd CA",
            names[i]
        );
        for f in ["etcd/server.crt", "etcd/peer.crt"] {
            assert_verifies(&ca, &d.join("pki").join(f), "sslserver");
            assert_verifies(&ca, &d.join("pki").join(f), "sslclient");
        }
        for f in ["etcd/healthcheck-client.crt", "apiserver-etcd-client.crt"] {
            assert_verifies(&ca, &d.join("pki").join(f), "sslclient");
        }
    }
    names
        .iter()
        .zip(&dirs)
        .zip(ips)
        .map(|((n, d), ip)| EtcdMember::new(n, d, loopback(ip)))
        .collect()
}

fn ensure_tools() {
    ensure_etcd();
    ensure_openssl();
    ensure_installed("curl", &["curl"]);
    ensure_installed("timeout", &["coreutils"]);
}

#[test]
fn three_member_etcd_cluster_runs_on_kubepki_certs() {
    let started = Instant::now();
    ensure_tools();
    let tmp = scratch();
    let members = init_members(tmp.path(), ["etcd-1", "etcd-2", "etcd-3"], [1, 2, 3]);
    let mut cluster = Etcd3::start(members);
    run_checks(
        &mut cluster,
        |c| cluster_checks(c, tmp.path()),
        Etcd3::tails,
    );
    eprintln!(
        "etcd cluster test: all checks passed in {:?}",
        started.elapsed()
    );
    // `cluster` drops before `tmp`: every member stopped by PID.
}

fn cluster_checks(c: &mut Etcd3, root: &Path) {
    for i in 0..3 {
        c.wait_healthy(i, Duration::from_secs(30));
    }
    c.assert_all_healthy("after start");

    // Writes as each node's API server, through one member, read back through another.
    let key = |i: usize| format!("/registry/kubepki-test/from-{}", c.members[i].name);
    let value = |i: usize| format!("value written through {}", c.members[i].name);
    for i in 0..3 {
        let m = &c.members[i];
        put(m, &m.client_url(), &key(i), &value(i))
            .unwrap_or_else(|e| panic!("put through {} as its apiserver:\n{e}", m.name));
    }
    for i in 0..3 {
        let other = &c.members[(i + 1) % 3];
        assert_eq!(
            get(other, &key(i)).as_deref(),
            Some(value(i).as_str()),
            "{} read through {}",
            key(i),
            other.name
        );
    }

    // The JSON gateway of every member: it dials its own gRPC server as a client with the
    // server cert, so this fails (code 14) if etcd-server lacks clientAuth.
    for i in 0..3 {
        let m = &c.members[i];
        let o = gateway_range(
            m,
            &m.pki("apiserver-etcd-client.crt"),
            &m.pki("apiserver-etcd-client.key"),
            &key((i + 2) % 3),
        );
        let body = stdout(&o);
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{}: /v3/kv/range: not JSON ({e}):\n{}", m.name, show(&o)));
        let kv = &json["kvs"][0];
        let got_key = b64_decode(kv["key"].as_str().unwrap_or_else(|| {
            panic!(
                "{}: /v3/kv/range has no kvs[0].key (code 14: etcd's gateway could \
                         not dial its own gRPC server with the etcd-server cert, e.g. one \
                         without clientAuth):\n{body}",
                m.name
            )
        }));
        let got = b64_decode(kv["value"].as_str().unwrap_or_default());
        assert!(
            o.status.success()
                && json["count"] == "1"
                && got_key == key((i + 2) % 3).as_bytes()
                && got == value((i + 2) % 3).as_bytes(),
            "{}: /v3/kv/range of {}: expected {:?}, got {:?}\n{body}",
            m.name,
            key((i + 2) % 3),
            value((i + 2) % 3),
            String::from_utf8_lossy(&got)
        );
    }

    // A client certificate from a foreign CA (otherwise a perfectly good client cert, with the
    // API server's CN) is refused, by etcdctl and by the gateway.
    let f = root.join("foreign");
    fs::create_dir_all(&f).unwrap();
    write_file(
        &f.join("client.ext"),
        b"basicConstraints=critical,CA:FALSE\n\
          keyUsage=critical,digitalSignature,keyEncipherment\n\
          extendedKeyUsage=clientAuth\n",
    );
    run_ok(
        Command::new("openssl")
            .current_dir(&f)
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"])
            .args(["-subj", "/CN=etcd-ca"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
    );
    run_ok(
        Command::new("openssl")
            .current_dir(&f)
            .args(["req", "-new", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", "client.key", "-out", "client.csr"])
            .args(["-subj", "/CN=kube-apiserver-etcd-client"]),
    );
    run_ok(
        Command::new("openssl")
            .current_dir(&f)
            .args(["x509", "-req", "-in", "client.csr", "-CA", "ca.crt"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "2"])
            .args(["-extfile", "client.ext", "-out", "client.crt"]),
    );
    // Control: it is a valid client certificate of its own CA, and not of the etcd CA.
    assert_verifies(&f.join("ca.crt"), &f.join("client.crt"), "sslclient");
    let m0 = &c.members[0];
    run_fail(
        Command::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(m0.pki("etcd/ca.crt"))
            .arg(f.join("client.crt")),
    );
    let foreign_key = "/registry/kubepki-test/foreign";
    let o = run_fail(
        etcdctl(
            &c.endpoints(),
            &m0.pki("etcd/ca.crt"),
            &f.join("client.crt"),
            &f.join("client.key"),
        )
        .args(["put", foreign_key, "should never be written"]),
    );
    assert!(
        !stdout(&o).contains("OK"),
        "etcdctl with a foreign client cert:\n{}",
        show(&o)
    );
    for m in &c.members {
        let o = gateway_range(m, &f.join("client.crt"), &f.join("client.key"), &key(0));
        assert!(
            !o.status.success() && !stdout(&o).contains("kvs"),
            "{}: the gateway answered a foreign client cert:\n{}",
            m.name,
            show(&o)
        );
    }
    for m in &c.members {
        assert_eq!(get(m, foreign_key), None, "{}: {foreign_key}", m.name);
    }
    // And etcd says why.
    let p = &c.procs[0];
    wait_for(
        "etcd-1 logs the rejected foreign client certificate",
        Duration::from_secs(5),
        20,
        || {
            p.log_text()
                .lines()
                .any(|l| l.contains("rejected connection") && l.contains("unknown authority"))
                .then_some(())
        },
    );
    c.assert_all_healthy("at the end");
}

/// What the writer saw: which keys etcd acknowledged, which puts failed (and why).
#[derive(Default)]
struct WriterLog {
    attempts: u64,
    acked: Vec<u64>,
    /// (N, when since the writer started, etcdctl's output)
    failed: Vec<(u64, Duration, String)>,
}

/// A thread putting `/registry/kubepki-load/N` every 50 ms through all three endpoints, put N
/// as the API server of node N % 3 (its apiserver-etcd-client files, re-read by every etcdctl
/// run, so renewals happen under it). Stopped (and joined) by `finish` or on drop.
struct Writer {
    log: Arc<Mutex<WriterLog>>,
    thread: Background,
    t0: Instant,
}

const LOAD_PREFIX: &str = "/registry/kubepki-load/";
const MAX_WRITES: u64 = 4000;

fn load_key(n: u64) -> String {
    format!("{LOAD_PREFIX}{n:06}")
}

fn load_value(n: u64) -> String {
    format!("v{n}")
}

impl Writer {
    fn start(members: Vec<EtcdMember>) -> Writer {
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let l = log.clone();
        let t0 = Instant::now();
        let thread = Background::spawn(move |stop| {
            let endpoints = members
                .iter()
                .map(|m| m.client_url())
                .collect::<Vec<_>>()
                .join(",");
            let deadline = t0 + Duration::from_secs(180);
            for n in 0..MAX_WRITES {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let tick = Instant::now();
                let r = put(
                    &members[n as usize % 3],
                    &endpoints,
                    &load_key(n),
                    &load_value(n),
                );
                {
                    let mut g = l.lock().unwrap_or_else(|e| e.into_inner());
                    g.attempts += 1;
                    match r {
                        Ok(()) => g.acked.push(n),
                        Err(e) => g.failed.push((n, t0.elapsed(), e)),
                    }
                }
                std::thread::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed()));
            }
        });
        Writer { log, thread, t0 }
    }

    fn acked(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acked
            .len()
    }

    /// Waits (bounded) until `more` further puts have been acknowledged.
    fn wait_acked(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        wait_for(what, Duration::from_secs(30), 300, || {
            (self.acked() >= target).then_some(())
        });
    }

    fn finish(mut self) -> WriterLog {
        self.thread.halt();
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[test]
fn renewal_under_load_loses_no_write() {
    let started = Instant::now();
    ensure_tools();
    let tmp = scratch();
    let members = init_members(tmp.path(), ["load-4", "load-5", "load-6"], [4, 5, 6]);
    let mut cluster = Etcd3::start(members);
    run_checks(&mut cluster, renewal_checks, Etcd3::tails);
    eprintln!(
        "etcd renewal-under-load test: all checks passed in {:?}",
        started.elapsed()
    );
}

fn renewal_checks(c: &mut Etcd3) {
    for i in 0..3 {
        c.wait_healthy(i, Duration::from_secs(30));
    }
    c.assert_all_healthy("after start");

    let writer = Writer::start(c.members.clone());
    writer.wait_acked(10, "the writer's first 10 acknowledged puts");

    for i in 0..3 {
        let step = Instant::now();
        let acked_before = writer.acked();
        let m = c.members[i].clone();
        let before: Vec<String> = RENEWED
            .iter()
            .map(|(_, f)| cert_serial(&m.pki(f)))
            .collect();

        // 1. Renew this member's etcd certs (and its API server's etcd client cert).
        let o = run_ok(
            kubepki()
                .args(["certs", "renew"])
                .args(RENEWED.iter().map(|(n, _)| *n))
                .arg("--cert-dir")
                .arg(m.dir.join("pki"))
                .arg("--kubeconfig-dir")
                .arg(&m.dir),
        );
        let ca = m.pki("etcd/ca.crt");
        for (j, (name, f)) in RENEWED.iter().enumerate() {
            let now = cert_serial(&m.pki(f));
            assert_ne!(
                now,
                before[j],
                "{}: {name} ({f}) has the same serial after certs renew:\n{}",
                m.name,
                show(&o)
            );
            assert_verifies(&ca, &m.pki(f), "sslclient");
            if f.ends_with("server.crt") || f.ends_with("peer.crt") {
                assert_verifies(&ca, &m.pki(f), "sslserver");
            }
        }

        // 2. New connections, right away, before any restart: the member serves the renewed
        //    server and peer certs, accepts the renewed healthcheck and API server clients.
        assert_serves(
            &m,
            m.client_port,
            "etcd/healthcheck-client",
            "etcd/server.crt",
            "client port should serve the renewed etcd-server cert before any restart",
        );
        assert_serves(
            &m,
            m.peer_port,
            "etcd/peer",
            "etcd/peer.crt",
            "peer port should serve the renewed etcd-peer cert before any restart",
        );
        health(&m).unwrap_or_else(|e| {
            panic!(
                "{}: endpoint health with the renewed healthcheck client, before restart:\n{e}",
                m.name
            )
        });
        put(
            &m,
            &m.client_url(),
            &format!("/registry/kubepki-step/{}/renewed", m.name),
            "1",
        )
        .unwrap_or_else(|e| {
            panic!(
                "{}: put with the renewed apiserver-etcd-client, before restart:\n{e}",
                m.name
            )
        });
        c.assert_all_healthy(&format!("after renewing {}", m.name));

        // 3. Rolling restart of this member; the other two keep a quorum meanwhile.
        c.stop(i);
        let (a, b) = (&c.members[(i + 1) % 3], &c.members[(i + 2) % 3]);
        let two = format!("{},{}", a.client_url(), b.client_url());
        let k = format!("/registry/kubepki-step/{}/while-down", m.name);
        wait_for(
            &format!("a put through the two others while {} is down", m.name),
            Duration::from_secs(20),
            40,
            || put(a, &two, &k, "1").ok(),
        );
        c.start_again(i);
        c.wait_healthy(i, Duration::from_secs(30));
        c.assert_all_healthy(&format!("after restarting {}", m.name));
        assert_serves(
            &m,
            m.client_port,
            "etcd/healthcheck-client",
            "etcd/server.crt",
            "after restart",
        );
        assert_eq!(get(&m, &k).as_deref(), Some("1"), "{}: {k}", m.name);
        writer.wait_acked(3, &format!("puts acknowledged after {}'s step", m.name));
        eprintln!(
            "{}: renewed and restarted in {:?} (writer time {:?} to {:?}); {} puts \
             acknowledged during the step",
            m.name,
            step.elapsed(),
            step.duration_since(writer.t0),
            writer.t0.elapsed(),
            writer.acked() - acked_before
        );
    }
    writer.wait_acked(10, "10 more puts after the last step");
    let log = writer.finish();
    c.assert_all_healthy("at the end");

    // Every acknowledged put is on every member, with its value.
    let acked: BTreeSet<u64> = log.acked.iter().copied().collect();
    let mut extra = 0;
    for m in &c.members {
        let kvs = get_prefix(m, LOAD_PREFIX);
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|&n| kvs.get(&load_key(n)) != Some(&load_value(n)))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} of {} acknowledged puts missing or wrong, first: {:?}",
            m.name,
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(20)]
        );
        extra = kvs.len() - acked.len();
    }
    eprintln!(
        "writer: {} puts attempted, {} acknowledged (all present on all 3 members), {} failed \
         ({} of those committed anyway)",
        log.attempts,
        acked.len(),
        log.failed.len(),
        extra
    );
    for (n, t, e) in log.failed.iter().take(10) {
        eprintln!(
            "failed put {n} at {t:?}: {}",
            e.lines().last().unwrap_or("")
        );
    }
    assert!(
        acked.len() >= 50,
        "only {} puts acknowledged: the writer barely ran",
        acked.len()
    );
}
