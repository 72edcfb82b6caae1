//! `kubepki agent --no-api`: real processes, no cluster. What a node's operator relies on:
//! every certificate of the node is on /metrics with the right dates, serials, names and roles
//! (checked against openssl); a file is read again only when it changed; hostile files under
//! the watched paths each get their reason and never stop, hang or bloat the agent; start-up
//! mistakes fail at once with a clear message.
//!
//! Every agent listens on 127.0.0.61-66 only (no other test uses them) and is stopped by its
//! PID when its guard drops, also when an assertion fails; every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{assert_running, tail};
use common::pki::{INIT_NOW, KUBECONFIGS, LEAVES, NODE, kubepki_in};
use common::*;

/// The addresses, one per agent of this file (test 4 starts two on .61 on purpose).
const IP_START_UP: u8 = 61;
const IP_INVENTORY: u8 = 62;
const IP_NO_CA_KEY: u8 = 63;
const IP_REREAD: u8 = 64;
const IP_HOSTILE: u8 = 65;
const IP_CONCURRENT: u8 = 66;

/// Longest a scrape may take, hostile files or not.
const SCRAPE_LIMIT: Duration = Duration::from_secs(5);

/// The CAs of a kubeadm node: kubeadm's name, file relative to the kubeconfig dir.
const CAS: [(&str, &str); 3] = [
    ("ca", "pki/ca.crt"),
    ("front-proxy-ca", "pki/front-proxy-ca.crt"),
    ("etcd-ca", "pki/etcd/ca.crt"),
];

/// A PKI made by the real binary for NODE at 127.0.0.1, in a fresh scratch directory (the
/// cert dir is `pki/`, the kubeconfigs beside it).
fn node_pki() -> tempfile::TempDir {
    fresh_pki(NODE, "127.0.0.1", &["--now", INIT_NOW])
}

// ---------------------------------------------------------------------------------------------
// The agent and its /metrics.

/// One sample of the exposition text.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map(String::as_str).unwrap_or("")
    }
}

/// The samples of a Prometheus/OpenMetrics text (label values unescaped).
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let mut end = body.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = i + 1;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '"' => break,
                                '\\' => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(e) => value.push(e),
                                    None => panic!("unterminated escape: {line}"),
                                },
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            rest = &body[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value: {line}"));
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The samples named `name` whose labels include every pair of `with`.
fn select<'a>(samples: &'a [Sample], name: &str, with: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && with.iter().all(|(k, v)| s.label(k) == *v))
        .collect()
}

/// The one sample named `name` with `with`; panics (listing what is there) otherwise.
fn one<'a>(samples: &'a [Sample], name: &str, with: &[(&str, &str)]) -> &'a Sample {
    let found = select(samples, name, with);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {name} with {with:?}, found {found:#?}\namong {:#?}",
        select(samples, name, &[])
    );
    found[0]
}

/// The value of the label-less `name`.
fn scalar(samples: &[Sample], name: &str) -> f64 {
    one(samples, name, &[]).value
}

/// A running `kubepki agent`, stopped by PID when dropped.
struct Agent {
    proc: Proc,
    url: String,
}

impl Agent {
    /// `kubepki agent --no-api` on the node whose kubeconfig dir is `d` (cert dir `d/pki`,
    /// kubelet dir `d/kubelet`), serving on 127.0.0.`ip`, with `extra` flags; run through
    /// `wrap` (e.g. as another user). Returns once /readyz answers.
    fn start(d: &Path, ip: u8, extra: &[&OsStr], wrap: impl FnOnce(&Command) -> Command) -> Agent {
        let addr = format!("{}:{}", loopback(ip), free_port(loopback(ip)));
        let mut cmd = kubepki_in(d, &["agent", "--no-api", "--node-name", NODE]);
        cmd.arg("--kubelet-pki-dir")
            .arg(d.join("kubelet"))
            .args(["--metrics-bind-address", &addr])
            .args(extra);
        let log = d.join(format!("agent-{ip}.log"));
        let mut agent = Agent {
            proc: Proc::spawn(&format!("kubepki agent on {addr}"), wrap(&cmd), &log),
            url: format!("http://{addr}"),
        };
        // Ready once its first scan is done (hostile files included: bounded too).
        wait_for(
            &format!("{} to answer /readyz", agent.proc.name),
            Duration::from_secs(60),
            240,
            || {
                assert_running(&mut agent.proc);
                agent.get("/readyz", Duration::from_secs(2))
            },
        );
        agent
    }

    fn get(&self, path: &str, limit: Duration) -> Option<String> {
        let o = Command::new("curl")
            .args(["-sS", "--fail", "--max-time"])
            .arg(limit.as_secs().to_string())
            .arg(format!("{}{path}", self.url))
            .output()
            .ok()?;
        o.status.success().then(|| stdout(&o))
    }

    /// /metrics, answered within SCRAPE_LIMIT by an agent still running.
    fn scrape(&mut self) -> Vec<Sample> {
        let started = Instant::now();
        let text = self.get("/metrics", SCRAPE_LIMIT);
        assert_running(&mut self.proc);
        let text = text.unwrap_or_else(|| {
            panic!(
                "{} did not answer /metrics within {SCRAPE_LIMIT:?}; log:\n{}",
                self.proc.name,
                tail(&self.proc.log_text(), 60)
            )
        });
        assert!(
            started.elapsed() < SCRAPE_LIMIT,
            "/metrics took {:?}",
            started.elapsed()
        );
        assert!(text.ends_with("# EOF\n"), "truncated /metrics:\n{text}");
        parse_metrics(&text)
    }

    /// Peak resident memory of the agent's process (VmHWM), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in\n{status}"));
        kb * 1024
    }
}

fn no_wrap(cmd: &Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    c
}

// ---------------------------------------------------------------------------------------------
// What openssl says.

/// A certificate as openssl reads it.
#[derive(Debug)]
struct OpensslCert {
    not_after: i64,
    /// Decimal.
    serial: String,
    subject_cn: String,
    issuer_cn: String,
}

/// The first certificate of the PEM file `pem`, as openssl reads it.
fn openssl_cert(pem: &Path) -> OpensslCert {
    ensure_openssl();
    let o = run_ok(
        Command::new("openssl")
            .args([
                "x509", "-noout", "-enddate", "-serial", "-subject", "-issuer",
            ])
            .args(["-nameopt", "RFC2253", "-in"])
            .arg(pem),
    );
    let text = stdout(&o);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in openssl's {text}"))
            .to_string()
    };
    let cn = |dn: String| {
        dn.split(',')
            .find_map(|rdn| rdn.strip_prefix("CN="))
            .unwrap_or("")
            .to_string()
    };
    let end = field("notAfter=");
    let secs = run_ok(Command::new("date").args(["-u", "-d", &end, "+%s"]));
    OpensslCert {
        not_after: stdout(&secs).trim().parse().unwrap(),
        serial: hex_to_decimal(&field("serial=")),
        subject_cn: cn(field("subject=")),
        issuer_cn: cn(field("issuer=")),
    }
}

/// The decimal digits of the hexadecimal number `hex` (of any length, as serials are).
fn hex_to_decimal(hex: &str) -> String {
    // Little-endian decimal digits.
    let mut digits = vec![0u32];
    for c in hex.trim().chars() {
        let mut carry = c.to_digit(16).unwrap_or_else(|| panic!("not hex: {hex}"));
        for d in digits.iter_mut() {
            let x = *d * 16 + carry;
            *d = x % 10;
            carry = x / 10;
        }
        while carry > 0 {
            digits.push(carry % 10);
            carry /= 10;
        }
    }
    digits
        .iter()
        .rev()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect()
}

/// The certificates embedded in the kubeconfig `conf`: (embedded_kind, cluster or user name,
/// PEM written to a file in `tmp`).
fn embedded(conf: &Path, tmp: &Path) -> Vec<(&'static str, String, PathBuf)> {
    use base64::Engine;
    let doc: serde_json::Value = serde_saphyr::from_str(&fs::read_to_string(conf).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
    let mut out = Vec::new();
    for (list, kind, inner, field) in [
        (
            "clusters",
            "cluster",
            "cluster",
            "certificate-authority-data",
        ),
        ("users", "user", "user", "client-certificate-data"),
    ] {
        for item in doc[list].as_array().into_iter().flatten() {
            let Some(b64) = item[inner][field].as_str() else {
                continue;
            };
            let name = item["name"].as_str().unwrap().to_string();
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let file = tmp.join(format!(
                "{}-{kind}-{}.pem",
                conf.file_name().unwrap().to_string_lossy(),
                out.len()
            ));
            fs::write(&file, pem).unwrap();
            out.push((kind, name, file));
        }
    }
    out
}

/// Every file below `dir` whose name ends with `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if recursive && p.is_dir() {
            out.extend(files_ending(&p, suffix, true));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The node's certificate files (`*.crt` of the cert dir) and kubeconfigs.
fn node_files(d: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    (
        files_ending(&d.join("pki"), ".crt", true),
        files_ending(d, ".conf", false),
    )
}

/// Asserts that the series of the certificate `cert` (file `path`, and in a kubeconfig its
/// part `embedded`) are those openssl reads; returns its x509_cert_not_after sample.
fn assert_served<'a>(
    m: &'a [Sample],
    path: &Path,
    embedded: Option<(&str, &str)>,
    cert: &OpensslCert,
) -> &'a Sample {
    let p = path.to_string_lossy();
    let mut with = vec![("filepath", p.as_ref()), ("serial_number", &cert.serial)];
    if let Some((kind, key)) = embedded {
        with.extend([("embedded_kind", kind), ("embedded_key", key)]);
    }
    let s = one(m, "x509_cert_not_after", &with);
    let what = format!("{p} {embedded:?}");
    assert_eq!(s.value as i64, cert.not_after, "{what}: notAfter");
    assert_eq!(s.label("subject_CN"), cert.subject_cn, "{what}");
    assert_eq!(s.label("issuer_CN"), cert.issuer_cn, "{what}");
    assert_eq!(
        s.label("filename"),
        path.file_name().unwrap().to_string_lossy(),
        "{what}"
    );
    if embedded.is_none() {
        assert!(!s.labels.contains_key("embedded_kind"), "{s:?}");
    }
    for name in ["x509_cert_not_before", "x509_cert_expired"] {
        let twin = select(m, name, &[]);
        assert!(
            twin.iter().any(|t| t.labels == s.labels),
            "{what}: no {name} with the labels of its x509_cert_not_after"
        );
    }
    s
}

/// The kubepki_certificate_info labels (name, ca, externally_managed, renewable) of the
/// certificate of `path` with `serial` (and `embedded_kind`, "" for a plain file).
fn info(m: &[Sample], path: &Path, serial: &str, kind: &str) -> [String; 4] {
    let s = one(
        m,
        "kubepki_certificate_info",
        &[
            ("filepath", &path.to_string_lossy()),
            ("serial_number", serial),
            ("embedded_kind", kind),
        ],
    );
    assert_eq!(s.value, 1.0);
    ["name", "ca", "externally_managed", "renewable"].map(|k| s.label(k).to_string())
}

fn role(name: &str, ca: bool, external: bool, renewable: bool) -> [String; 4] {
    [
        name.to_string(),
        ca.to_string(),
        external.to_string(),
        renewable.to_string(),
    ]
}

/// The filepath labels of every x509_cert_not_after series.
fn listed(m: &[Sample]) -> BTreeSet<String> {
    select(m, "x509_cert_not_after", &[])
        .iter()
        .map(|s| s.label("filepath").to_string())
        .collect()
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. Every certificate of the node, right.

/// What kubeadm's name of each inventory file is, and whether `certs renew` may renew it.
fn expected_roles(d: &Path) -> BTreeMap<PathBuf, (&'static str, bool)> {
    let mut roles = BTreeMap::new();
    for (name, file) in CAS {
        roles.insert(d.join(file), (name, false));
    }
    for l in LEAVES {
        roles.insert(d.join(l.crt()), (l.name, true));
    }
    for conf in KUBECONFIGS {
        roles.insert(d.join(conf), (*conf, true));
    }
    // The kubelet rotates its own client certificate: not kubeadm's to renew.
    roles.insert(d.join("kubelet.conf"), ("kubelet.conf", false));
    roles
}

/// The kubelet's directory as it is on a node: its client certificate and key in a dated
/// file, `kubelet-client-current.pem` a symlink to it, and a self-signed serving certificate.
/// Returns (the symlink, the serving certificate).
fn kubelet_dir(d: &Path) -> (PathBuf, PathBuf) {
    use base64::Engine;
    let dir = d.join("kubelet");
    fs::create_dir_all(&dir).unwrap();
    let doc: serde_json::Value =
        serde_saphyr::from_str(&fs::read_to_string(d.join("kubelet.conf")).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let user = &doc["users"][0]["user"];
    let mut pem = b64
        .decode(user["client-certificate-data"].as_str().unwrap())
        .unwrap();
    pem.extend(
        b64.decode(user["client-key-data"].as_str().unwrap())
            .unwrap(),
    );
    let dated = dir.join("kubelet-client-2026-01-01-00-00-00.pem");
    write_file(&dated, &pem);
    let current = dir.join("kubelet-client-current.pem");
    symlink(&dated, &current).unwrap();
    let serving = dir.join("kubelet.crt");
    ensure_openssl();
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "365"])
            .args(["-subj", &format!("/CN={NODE}@1767225600")])
            .arg("-keyout")
            .arg(dir.join("kubelet.key"))
            .arg("-out")
            .arg(&serving),
    );
    (current, serving)
}

/// A bundle as operators write them: two CA certificates with comment lines around, which
/// Go's pem.Decode skips.
fn bundle(d: &Path) -> PathBuf {
    let path = d.join("extra/bundle.pem");
    let text = format!(
        "# cluster CA\n{}# front proxy CA, added 2026-01-01\n{}",
        fs::read_to_string(d.join("pki/ca.crt")).unwrap(),
        fs::read_to_string(d.join("pki/front-proxy-ca.crt")).unwrap()
    );
    write_file(&path, text.as_bytes());
    path
}

#[test]
fn every_certificate_of_the_node_is_listed_right() {
    let dir = node_pki();
    let d = dir.path();
    let tmp = scratch();
    let (kubelet_client, kubelet_serving) = kubelet_dir(d);
    let bundle = bundle(d);
    let mut agent = Agent::start(
        d,
        IP_INVENTORY,
        &["--watch-file".as_ref(), bundle.as_os_str()],
        no_wrap,
    );
    let m = agent.scrape();
    let roles = expected_roles(d);
    let mut expected_files = BTreeSet::new();

    let (crts, confs) = node_files(d);
    assert_eq!(crts.len(), 10, "init wrote {crts:?}");
    for crt in &crts {
        let cert = openssl_cert(crt);
        assert_served(&m, crt, None, &cert);
        let (name, renewable) = roles[crt];
        let is_ca = CAS.iter().any(|(n, _)| *n == name);
        assert_eq!(
            info(&m, crt, &cert.serial, ""),
            role(name, is_ca, false, renewable),
            "{}",
            crt.display()
        );
        expected_files.insert(lossy(crt));
    }

    assert_eq!(confs.len(), 5, "init wrote {confs:?}");
    for conf in &confs {
        let parts = embedded(conf, tmp.path());
        let kinds: Vec<&str> = parts.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(kinds, ["cluster", "user"], "{}", conf.display());
        for (kind, key, pem) in &parts {
            let cert = openssl_cert(pem);
            assert_served(&m, conf, Some((kind, key)), &cert);
            let (name, renewable) = roles[conf];
            let want = if *kind == "cluster" {
                role(name, true, false, false)
            } else {
                role(name, false, false, renewable)
            };
            assert_eq!(
                info(&m, conf, &cert.serial, kind),
                want,
                "{} {kind}",
                conf.display()
            );
        }
        assert_eq!(
            select(&m, "x509_cert_not_after", &[("filepath", &lossy(conf))]).len(),
            2,
            "{}: its cluster CA and user certificate, nothing else",
            conf.display()
        );
        expected_files.insert(lossy(conf));
    }

    // The bundle: both certificates, in a file outside kubeadm's inventory.
    for ca in ["pki/ca.crt", "pki/front-proxy-ca.crt"] {
        let cert = openssl_cert(&d.join(ca));
        assert_served(&m, &bundle, None, &cert);
        assert_eq!(
            info(&m, &bundle, &cert.serial, ""),
            role("", true, false, false)
        );
    }
    assert_eq!(
        select(&m, "x509_cert_not_after", &[("filepath", &lossy(&bundle))]).len(),
        2
    );
    expected_files.insert(lossy(&bundle));

    // The kubelet's: the current client certificate under the symlink's name, once.
    for (path, name) in [
        (&kubelet_client, "kubelet-client"),
        (&kubelet_serving, "kubelet-serving"),
    ] {
        let cert = openssl_cert(path);
        assert_served(&m, path, None, &cert);
        assert_eq!(
            info(&m, path, &cert.serial, ""),
            role(name, false, false, false)
        );
        expected_files.insert(lossy(path));
    }

    // Nothing else: no dated kubelet copy, no key, no sa.pub; and no error.
    assert_eq!(listed(&m), expected_files);
    assert_eq!(scalar(&m, "x509_read_errors"), 0.0);
    assert!(select(&m, "kubepki_read_errors", &[]).is_empty());
    assert_eq!(
        one(&m, "kubepki_build_info", &[]).label("version"),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(scalar(&m, "kubepki_agent_renewal_enabled"), 0.0);
}

/// Asserts every kubepki_certificate_info of `m` (the node in `d`): kubeadm's name, CA or not,
/// and with `ca_key` false (an external cluster CA), everything the cluster CA issued (itself
/// included) externally managed and not renewable here.
fn assert_roles(m: &[Sample], d: &Path, ca_key: bool) {
    let roles = expected_roles(d);
    let infos = select(m, "kubepki_certificate_info", &[]);
    // 10 certificate files, 5 kubeconfigs with 2 each.
    assert_eq!(infos.len(), 20, "{infos:#?}");
    for s in infos {
        let path = PathBuf::from(s.label("filepath"));
        let kind = s.label("embedded_kind");
        // Its own series (a kubeconfig's cluster CA and user certificate differ in kind).
        let series = one(
            m,
            "x509_cert_not_after",
            &[
                ("filepath", s.label("filepath")),
                ("serial_number", s.label("serial_number")),
                ("embedded_kind", kind),
            ],
        );
        let external = !ca_key && series.label("issuer_CN") == "kubernetes";
        let (name, renewable) = roles[&path];
        let ca = kind == "cluster" || CAS.iter().any(|(n, _)| *n == name);
        assert_eq!(
            info(m, &path, s.label("serial_number"), kind),
            role(name, ca, external, renewable && !ca && !external),
            "{} {kind}",
            path.display()
        );
    }
}

/// ca.key removed (the cluster CA made external): what it signs becomes externally managed
/// and not renewable here, at the next scrape, with no file read again; what the other CAs
/// sign is unchanged.
#[test]
fn without_the_ca_key_its_certificates_are_externally_managed() {
    let dir = node_pki();
    let d = dir.path();
    let mut agent = Agent::start(d, IP_NO_CA_KEY, &[], no_wrap);
    let before = agent.scrape();
    assert_roles(&before, d, true);
    fs::remove_file(d.join("pki/ca.key")).unwrap();
    let after = agent.scrape();
    assert_roles(&after, d, false);
    assert_eq!(file_reads(&after), file_reads(&before));
}

// ---------------------------------------------------------------------------------------------
// 2. Read again only what changed.

fn file_reads(m: &[Sample]) -> f64 {
    scalar(m, "kubepki_agent_file_reads_total")
}

#[test]
fn files_are_read_again_only_when_they_change() {
    let dir = node_pki();
    let d = dir.path();
    let mut agent = Agent::start(d, IP_REREAD, &[], no_wrap);
    let (crts, confs) = node_files(d);
    let first = agent.scrape();
    // Every certificate file and kubeconfig, once (by the start-up scan).
    assert_eq!(file_reads(&first), (crts.len() + confs.len()) as f64);
    // Time passing changes nothing either.
    std::thread::sleep(Duration::from_millis(1100));
    let second = agent.scrape();
    assert_eq!(file_reads(&second), file_reads(&first), "nothing changed");

    let apiserver = d.join("pki/apiserver.crt");
    let before = openssl_cert(&apiserver);
    run_ok(&mut kubepki_in(d, &["certs", "renew", "apiserver"]));
    let after = openssl_cert(&apiserver);
    assert_ne!(before.serial, after.serial);
    assert_ne!(before.not_after, after.not_after);
    let third = agent.scrape();
    assert_eq!(
        file_reads(&third),
        file_reads(&second) + 1.0,
        "only apiserver.crt changed"
    );
    assert_served(&third, &apiserver, None, &after);
    assert!(
        select(
            &third,
            "x509_cert_not_after",
            &[("serial_number", &before.serial)]
        )
        .is_empty(),
        "the old apiserver certificate is gone"
    );
    assert_eq!(
        info(&third, &apiserver, &after.serial, ""),
        role("apiserver", false, false, true)
    );

    // Two more files at once: a kubeconfig and a certificate.
    run_ok(&mut kubepki_in(
        d,
        &["certs", "renew", "admin.conf", "etcd-server"],
    ));
    let fourth = agent.scrape();
    assert_eq!(file_reads(&fourth), file_reads(&third) + 2.0);
    let server = d.join("pki/etcd/server.crt");
    assert_served(&fourth, &server, None, &openssl_cert(&server));
    let tmp = scratch();
    for (kind, key, pem) in embedded(&d.join("admin.conf"), tmp.path()) {
        assert_served(
            &fourth,
            &d.join("admin.conf"),
            Some((kind, &key)),
            &openssl_cert(&pem),
        );
    }
    assert_eq!(file_reads(&agent.scrape()), file_reads(&fourth));
}

// ---------------------------------------------------------------------------------------------
// 3. Hostile files.

/// A YAML alias bomb ("billion laughs"): 10^9 strings once expanded.
fn alias_bomb() -> String {
    let mut y = String::from("apiVersion: v1\nkind: Config\n");
    y.push_str("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=9 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        y.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    y.push_str("clusters: []\nusers: []\n");
    y
}

/// Writes every kind of hostile file into `dir` (copying good PEM from the node `d`); returns
/// each bad file with the reason it must be reported with, and the good certificate whose
/// name is not UTF-8. Endless writers are pushed to `writers`.
fn plant_hostile(
    d: &Path,
    dir: &Path,
    writers: &mut Vec<Proc>,
) -> (Vec<(PathBuf, &'static str)>, PathBuf) {
    use base64::Engine;
    fs::create_dir_all(dir).unwrap();
    let mut bad = Vec::new();
    let mut put = |name: &str, bytes: &[u8], reason| {
        write_file(&dir.join(name), bytes);
        bad.push((dir.join(name), reason));
    };
    let garbage = base64::engine::general_purpose::STANDARD.encode([0x30, 0x82, 0xff, 0x00, 0x42]);
    put(
        "corrupt.crt",
        format!("-----BEGIN CERTIFICATE-----\n{garbage}\n-----END CERTIFICATE-----\n").as_bytes(),
        "invalid_certificate",
    );
    put("nopem.crt", b"not a certificate\n", "not_pem");
    put(
        "keyonly.pem",
        &fs::read(d.join("pki/apiserver.key")).unwrap(),
        "no_certificate",
    );
    put(
        "secret.crt",
        &fs::read(d.join("pki/ca.crt")).unwrap(),
        "permission_denied",
    );
    put(
        "bad-yaml.conf",
        b"apiVersion: v1\nclusters: [\n  - {name: x\nusers: }}}\n",
        "invalid_kubeconfig",
    );
    put("bomb.conf", alias_bomb().as_bytes(), "invalid_kubeconfig");
    // Sparse: 1 GiB that takes no disk.
    fs::File::create(dir.join("big.crt"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    bad.push((dir.join("big.crt"), "too_large"));
    symlink("loop-b.crt", dir.join("loop-a.crt")).unwrap();
    symlink("loop-a.crt", dir.join("loop-b.crt")).unwrap();
    bad.push((dir.join("loop-a.crt"), "symlink_loop"));
    bad.push((dir.join("loop-b.crt"), "symlink_loop"));
    symlink("/dev/zero", dir.join("zero.crt")).unwrap();
    bad.push((dir.join("zero.crt"), "not_regular_file"));
    // A FIFO with a writer that never stops: whoever opens it reads forever.
    let fifo = dir.join("fifo.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let mut w = Command::new("sh");
    // Opened read-write, the FIFO does not wait for a reader: the writer fills it at once.
    w.args(["-c", "exec yes 'not a certificate' 1<>\"$0\""])
        .arg(&fifo);
    writers.push(Proc::spawn(
        "endless FIFO writer",
        w,
        &dir.with_extension("fifo.log"),
    ));
    bad.push((fifo, "not_regular_file"));
    // A directory whose name looks like a certificate is a directory, not listed.
    fs::create_dir(dir.join("d.crt")).unwrap();
    // A good certificate whose file name is not UTF-8.
    let odd = dir.join(OsStr::from_bytes(b"odd-\xff-name.crt"));
    fs::copy(d.join("pki/front-proxy-ca.crt"), &odd).unwrap();
    (bad, odd)
}

#[test]
fn hostile_files_are_reported_and_never_stop_the_agent() {
    let dir = node_pki();
    let d = dir.path();
    let mut writers = Vec::new();
    let (crts, confs) = node_files(d);
    let good: BTreeSet<String> = crts.iter().chain(&confs).map(|p| lossy(p)).collect();
    let watch = d.join("watch");
    let (mut bad, odd_watch) = plant_hostile(d, &watch, &mut writers);
    let (bad_pki, odd_pki) = plant_hostile(d, &d.join("pki"), &mut writers);
    bad.extend(bad_pki);
    // Named explicitly, a directory is a file that is not regular.
    let dir_file = watch.join("d.crt");
    bad.push((dir_file.clone(), "not_regular_file"));
    // Unprivileged, so that a file mode is enforced; every other file stays readable.
    give_to_nobody(d);
    for (p, reason) in &bad {
        if *reason == "permission_denied" {
            fs::set_permissions(p, fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
    let mut agent = Agent::start(
        d,
        IP_HOSTILE,
        &[
            "--watch-dir".as_ref(),
            watch.as_os_str(),
            "--watch-file".as_ref(),
            dir_file.as_os_str(),
        ],
        as_nobody,
    );

    let want: BTreeSet<(String, String)> =
        bad.iter().map(|(p, r)| (lossy(p), r.to_string())).collect();
    let mut reads = None;
    for round in 0..5 {
        let m = agent.scrape();
        // Nothing changed: no file is read again, the alias bomb is not parsed again.
        let now = file_reads(&m);
        assert_eq!(
            *reads.get_or_insert(now),
            now,
            "scrape {round}: files read again"
        );
        let errors: BTreeSet<(String, String)> = select(&m, "kubepki_read_errors", &[])
            .iter()
            .map(|s| {
                assert_eq!(s.value, 1.0);
                (
                    s.label("filepath").to_string(),
                    s.label("reason").to_string(),
                )
            })
            .collect();
        assert_eq!(
            errors, want,
            "scrape {round}: each hostile file with its reason, nothing else"
        );
        assert_eq!(scalar(&m, "x509_read_errors"), want.len() as f64);
        let listed = listed(&m);
        let missing: Vec<_> = good.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "good files no longer listed: {missing:?}"
        );
        // The certificate whose name is not UTF-8 is listed, under its lossy name.
        for odd in [&odd_watch, &odd_pki] {
            let s = one(&m, "x509_cert_not_after", &[("filepath", &lossy(odd))]);
            assert_eq!(s.label("filename"), "odd-\u{fffd}-name.crt");
            assert_eq!(s.label("subject_CN"), "front-proxy-ca");
        }
        let extra: Vec<_> = listed
            .difference(&good)
            .filter(|p| ![&odd_watch, &odd_pki].iter().any(|o| lossy(o) == **p))
            .collect();
        assert!(extra.is_empty(), "listed, but not a good file: {extra:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let peak = agent.peak_rss();
    assert!(
        peak < 64 << 20,
        "the agent's peak RSS is {} MiB",
        peak >> 20
    );
    assert_running(&mut agent.proc);
}

// ---------------------------------------------------------------------------------------------
// 4. Start-up mistakes.

/// `kubepki agent ARGS` on the node in `d`, expected to exit at once with `code` (None: any
/// failure), not panicking, its stderr saying each of `says`.
fn agent_fails(d: &Path, args: &[&str], code: Option<i32>, says: &[&str]) {
    let mut cmd = kubepki_in(d, &["agent", "--node-name", NODE]);
    cmd.args(args);
    let o = run_sinks(
        &cmd,
        Sink::Captured,
        Sink::Captured,
        Duration::from_secs(30),
    );
    let what = format!("agent {args:?}");
    assert_no_panic(&o, &what);
    let err = stderr(&o);
    match code {
        Some(c) => assert_eq!(o.status.code(), Some(c), "{what}: {err}"),
        None => assert!(!o.status.success(), "{what}: {err}"),
    }
    for s in says {
        assert!(err.contains(s), "{what}: stderr does not say {s:?}:\n{err}");
    }
}

#[test]
fn start_up_mistakes_fail_at_once_and_say_why() {
    let dir = node_pki();
    let d = dir.path();
    let first = Agent::start(d, IP_START_UP, &[], no_wrap);
    let addr = first.url.trim_start_matches("http://").to_string();

    // The address is taken: the second agent fails, naming it; the first keeps serving.
    agent_fails(
        d,
        &["--no-api", "--metrics-bind-address", &addr],
        None,
        &[&addr],
    );
    assert!(
        first.get("/healthz", Duration::from_secs(2)).is_some(),
        "the first agent still serves"
    );

    agent_fails(
        d,
        &[
            "--no-api",
            "--check-interval",
            "0s",
            "--metrics-bind-address",
            "127.0.0.61:0",
        ],
        Some(1),
        &["--check-interval must be more than 0"],
    );
    // A usage error: renewal needs the API.
    agent_fails(
        d,
        &["--no-api", "--renew-before", "1h"],
        Some(2),
        &["--no-api", "--renew-before"],
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Scrapes at the same time (two Prometheus replicas, or a replica and a curl).

/// BUG (reported to the lead, not fixed here): a scrape encodes the shared families after
/// releasing the scanner's lock (crates/agent/src/run.rs, `metrics_handler`), while another
/// scrape's `AgentMetrics::update` (crates/agent/src/metrics.rs) clears and refills them: a
/// concurrent response can lack some or all certificate series, which Prometheus takes as
/// the certificates being gone. Every response must list every certificate.
#[test]
fn concurrent_scrapes_each_see_every_certificate() {
    let dir = node_pki();
    let d = dir.path();
    // More series make the window between clearing and refilling wider.
    let many = d.join("many");
    for i in 0..100 {
        write_file(
            &many.join(format!("copy-{i}.crt")),
            &fs::read(d.join("pki/ca.crt")).unwrap(),
        );
    }
    let agent = Agent::start(
        d,
        IP_CONCURRENT,
        &["--watch-dir".as_ref(), many.as_os_str()],
        no_wrap,
    );
    // 10 certificate files, 5 kubeconfigs with 2 each, 100 copies.
    let want = 120;
    let bad: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let agent = &agent;
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for i in 0..40 {
                        let text = agent
                            .get("/metrics", SCRAPE_LIMIT)
                            .unwrap_or_else(|| panic!("thread {t}: scrape {i} unanswered"));
                        let m = parse_metrics(&text);
                        let counts = [
                            "x509_cert_not_after",
                            "x509_cert_not_before",
                            "x509_cert_expired",
                            "kubepki_certificate_info",
                        ]
                        .map(|n| select(&m, n, &[]).len());
                        if counts != [want; 4] {
                            bad.push(format!("thread {t}, scrape {i}: {counts:?}"));
                        }
                    }
                    bad
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    assert!(
        bad.is_empty(),
        "responses missing certificate series (want {want} of each): {bad:#?}"
    );
}

/// A renewal window as long as the validity renewed certificates get would make every renewal
/// due again at once (the control plane restarted every round): refused before anything runs.
#[test]
fn a_window_not_shorter_than_the_validity_is_refused() {
    for args in [
        vec!["--renew-before", "8760h"],
        vec!["--renew-before", "48h", "--validity", "24h"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kubepki"))
            .arg("agent")
            .args(["--kubeconfig", "/nonexistent/admin.conf"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("--renew-before") && err.contains("due again at once"),
            "{args:?}: {err}"
        );
    }
}
