//! The user-facing features of `certs renew` and its companions, each checked the way a user
//! would check it, with openssl as the independent judge:
//!
//! - `--expiring-within` renews exactly what expires within the window (its end included) and
//!   leaves everything else byte-identical; with nothing due it writes nothing, not even a backup;
//! - `--validity` sets the new notAfter (backdated notBefore as kubeadm), never past the CA's,
//!   and neither a zero nor an absurdly long validity breaks anything;
//! - `--add-sans` adds to apiserver (and etcd server/peer) exactly the new SANs, with a new key;
//! - `--dry-run` prints the plan and changes nothing, not even a backup directory;
//! - the backup a renewal prints restores the tree byte-for-byte (modes included), and the
//!   restore is itself undoable; a tampered backup is refused;
//! - the lock: a second run fails at once naming the directory, `--wait` waits for the holder;
//! - an external CA (ca.crt without ca.key): its certificates are reported, the rest renews;
//! - kubelet.conf: `renew kubelet.conf`, `kubeconfig kubelet` (embedded and `--rotated`), and
//!   `check-expiration --kubelet-dir`;
//! - the restart advice names exactly the components that read the renewed files at start.
//!
//! Times come from the hidden `--now` flag (openssl checks at the same instant with -attime),
//! so nothing sleeps except the lock test's one second; one renewal uses the real clock.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::pki::*;
use common::*;

/// The purpose openssl must accept the certificate for.
fn purpose_of(name: &str) -> &'static str {
    match name {
        "apiserver" | "etcd-server" | "etcd-peer" => "sslserver",
        _ => "sslclient",
    }
}

/// `certs renew NAMES EXTRA --now NOW`.
fn renew(d: &Path, now: &str, names: &[&str], extra: &[&str]) -> Command {
    let mut c = kubepki_in(d, &["certs", "renew"]);
    c.args(names).args(extra).args(["--now", now]);
    c
}

/// Every file and directory of a `snapshot(d)` but the backups.
fn but_backups(d: &Path, snapshot: Vec<(PathBuf, Vec<u8>, u32)>) -> Tree {
    let backups = d.join(BACKUPS);
    tree_of(d, snapshot, |p| !p.starts_with(&backups))
}

fn tree(d: &Path) -> Tree {
    but_backups(d, snapshot(d))
}

/// Paths that differ between two trees: changed, added or removed.
fn differing(a: &Tree, b: &Tree) -> BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.display().to_string())
        .collect()
}

/// The backup directory a renewal printed.
fn printed_backup(text: &str) -> PathBuf {
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix("[renew] the previous files are in "))
        .unwrap_or_else(|| panic!("no backup directory printed:\n{text}"));
    let (dir, tail) = rest.split_once("; ").unwrap();
    // The advice names the PKI's directories (absolute): it works from anywhere.
    assert!(
        tail.starts_with(&format!("`kubepki certs restore {dir} --cert-dir /"))
            && tail.contains("/pki --kubeconfig-dir /")
            && tail.ends_with("` puts them back"),
        "{text}"
    );
    PathBuf::from(dir)
}

/// Asserts that `text` (a command's stdout or stderr) contains `needle`, showing it if not.
#[track_caller]
fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text}");
}

/// Asserts that `text` has the line `line(n)` for each of `names`.
#[track_caller]
fn assert_lines(text: &str, names: &[&str], line: impl Fn(&str) -> String) {
    for n in names {
        let want = line(n);
        assert!(
            text.contains(&format!("{want}\n")),
            "{n}: no line {want:?} in:\n{text}"
        );
    }
}

/// The restart advice: every line that mentions a restart.
fn restart_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("restart")).collect()
}

fn no_panic(o: &Output) {
    assert!(
        !stderr(o).contains("panicked") && o.status.code() != Some(101),
        "kubepki panicked:\n{}",
        stderr(o)
    );
}

/// A base64 field of a kubeconfig, decoded.
fn kc_field(text: &str, field: &str) -> Vec<u8> {
    let prefix = format!("{field}: ");
    let v = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {field} in:\n{text}"));
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .unwrap_or_else(|e| panic!("{field}: {e}"))
}

fn kc_line<'a>(text: &'a str, field: &str) -> &'a str {
    let prefix = format!("{field}: ");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {field} in:\n{text}"))
}

/// The certificate of `name` as a PEM file openssl can read: the leaf's `.crt`, or a
/// kubeconfig's client certificate written to `work/<name>.crt`.
fn cert_file(d: &Path, work: &Path, name: &str) -> PathBuf {
    pem_file(d, work, name, "crt", "client-certificate-data")
}

/// The same for the private key.
fn key_file(d: &Path, work: &Path, name: &str) -> PathBuf {
    pem_file(d, work, name, "key", "client-key-data")
}

/// The leaf's `<base>.<ext>`, or the kubeconfig's `field` written to `work/<name>.<ext>`.
fn pem_file(d: &Path, work: &Path, name: &str, ext: &str, field: &str) -> PathBuf {
    match leaf(name) {
        Some(l) => d.join(format!("{}.{ext}", l.base)),
        None => {
            let text = fs::read_to_string(d.join(name)).unwrap();
            let p = work.join(format!("{name}.{ext}"));
            write_file(&p, &kc_field(&text, field));
            p
        }
    }
}

/// `openssl x509 -in FILE -noout OPTS`, trimmed.
fn x509(file: &Path, opts: &[&str]) -> String {
    ensure_openssl();
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-in"])
            .arg(file)
            .args(opts),
    );
    stdout(&out).trim().to_string()
}

fn serial(file: &Path) -> String {
    x509(file, &["-serial"])
}

/// The SANs as openssl prints them (`DNS:x`, `IP Address:1.2.3.4`); empty without the extension.
fn sans(file: &Path) -> BTreeSet<String> {
    ensure_openssl();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .skip(1)
        .flat_map(|l| l.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn epoch(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
        .to_string()
}

/// `openssl verify` of `cert` against `ca` for `purpose`, at the instant `at`.
fn verifies(ca: &Path, cert: &Path, purpose: &str, at: &str, extra: &[&str]) -> bool {
    ensure_openssl();
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .args(["-purpose", purpose, "-attime", &epoch(at)])
        .args(extra)
        .arg(cert)
        .output()
        .unwrap()
        .status
        .success()
}

/// The private key in `key` is the one whose public key `cert` carries.
fn key_matches(cert: &Path, key: &Path) -> bool {
    let from_cert = x509(cert, &["-pubkey"]);
    let out = run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(key),
    );
    from_cert == stdout(&out).trim()
}

/// `kubeconfig kubelet ARGS` for the node in `d`, with ECDSA keys (fast).
fn kubelet_kubeconfig(d: &Path, args: &[&str]) -> Command {
    let mut c = kubepki_in(
        d,
        &[
            "kubeconfig",
            "kubelet",
            "--encryption-algorithm",
            "ECDSA-P256",
        ],
    );
    c.args(args);
    c
}

/// `certs check-expiration ARGS --now RENEW_NOW` for the node in `d`.
fn check_expiration(d: &Path, args: &[&str]) -> Command {
    let mut c = kubepki_in(d, &["certs", "check-expiration"]);
    c.args(args).args(["--now", RENEW_NOW]);
    c
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn expiring_within_renews_exactly_what_is_due() {
    let dir = fresh();
    let d = dir.path();
    let work = scratch();
    let w = work.path();

    // Three certificates renewed at RENEW_NOW now expire on Jun 01, 2027; the rest on Jan 01.
    let late = ["apiserver", "etcd-server", "admin.conf"];
    run_ok(&mut renew(d, RENEW_NOW, &late, &[]));
    let due: Vec<&str> = cert_names()
        .into_iter()
        .filter(|n| !late.contains(n))
        .collect();

    // Dec 15, 2026: the rest expire in 17 days, within 720h; the three in 168 days.
    let at = "2026-12-15T00:00:00Z";
    let before = tree(d);
    let serials_before: BTreeMap<&str, String> = cert_names()
        .into_iter()
        .map(|n| (n, serial(&cert_file(d, w, n))))
        .collect();
    let n_backups = backups(d).len();
    let out = run_ok(&mut renew(d, at, &["all"], &["--expiring-within", "720h"]));
    let text = stdout(&out);
    assert_lines(&text, &late, |n| {
        format!(
            "[renew] certificate {n} expires Jun 01, 2027 00:00 UTC, not within the window: skipped"
        )
    });
    assert_lines(&text, &due, |n| format!("[renew] certificate {n} renewed"));
    let after = tree(d);
    assert_eq!(
        differing(&before, &after),
        files_of_all(&due),
        "exactly the due certificates' files change (kubelet.conf, CAs, sa.* and the three not due stay)"
    );
    assert_eq!(backups(d).len(), n_backups + 1, "one backup for the run");
    for n in cert_names() {
        let c = cert_file(d, w, n);
        let changed = serial(&c) != serials_before[n];
        assert_eq!(changed, due.contains(&n), "{n}: serial changed = {changed}");
        if due.contains(&n) {
            assert_eq!(
                x509(&c, &["-enddate"]),
                "notAfter=Dec 15 00:00:00 2027 GMT",
                "{n}"
            );
            assert!(
                verifies(&d.join(issuer_of(n)), &c, purpose_of(n), at, &[]),
                "{n} does not verify against {}",
                issuer_of(n)
            );
            assert!(key_matches(&c, &key_file(d, w, n)), "{n}: key mismatch");
        }
    }

    // May 01, 2027: the three expire in exactly 31 days (744h), the rest on Dec 15, 2027.
    let at = "2027-05-01T00:00:00Z";
    let before = tree(d);
    let n_backups = backups(d).len();
    let out = run_ok(&mut renew(d, at, &["all"], &["--expiring-within", "743h"]));
    assert_has(&stdout(&out), "[renew] nothing to renew\n");
    assert!(!stdout(&out).contains(" renewed"), "{}", stdout(&out));
    assert!(tree(d) == before, "nothing due, yet files changed");
    assert_eq!(backups(d).len(), n_backups, "a backup of nothing was made");
    // The end of the window is part of it.
    let out = run_ok(&mut renew(d, at, &["all"], &["--expiring-within", "744h"]));
    assert_eq!(
        differing(&before, &tree(d)),
        files_of_all(&late),
        "{}",
        stdout(&out)
    );
    // A window in days works the same: nothing is due within 1d now.
    let before = tree(d);
    run_ok(&mut renew(d, at, &["all"], &["--expiring-within", "1d"]));
    assert!(tree(d) == before);
}

#[test]
fn validity_sets_the_new_expiry_and_never_breaks_anything() {
    let dir = fresh();
    let d = dir.path();
    let work = scratch();
    let w = work.path();

    run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["front-proxy-client", "admin.conf"],
        &["--validity", "48h"],
    ));
    for n in ["front-proxy-client", "admin.conf"] {
        let c = cert_file(d, w, n);
        assert_eq!(x509(&c, &["-enddate"]), "notAfter=Jun  3 00:00:00 2026 GMT");
        // kubeadm's 5-minute backdate.
        assert_eq!(
            x509(&c, &["-startdate"]),
            "notBefore=May 31 23:55:00 2026 GMT"
        );
        assert!(verifies(
            &d.join(issuer_of(n)),
            &c,
            "sslclient",
            RENEW_NOW,
            &[]
        ));
    }
    assert_eq!(
        x509(&d.join("pki/apiserver.crt"), &["-enddate"]),
        "notAfter=Jan  1 00:00:00 2027 GMT",
        "a certificate not named keeps its expiry"
    );
    // check-expiration sees the same.
    let out = run_ok(&mut check_expiration(d, &[]));
    let report = stdout(&out);
    let row: Vec<&str> = report
        .lines()
        .find(|l| l.starts_with("front-proxy-client "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "front-proxy-client",
            "Jun",
            "03,",
            "2026",
            "00:00",
            "UTC",
            "2d",
            "front-proxy-ca",
            "no"
        ]
    );

    // Longer than the CA lives: cut at the CA's notAfter.
    let ca_end = x509(&d.join("pki/etcd/ca.crt"), &["-enddate"]);
    assert_eq!(ca_end, "notAfter=Dec 30 00:00:00 2035 GMT");
    run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["etcd-server"],
        &["--validity", "876000h"],
    ));
    assert_eq!(x509(&d.join("pki/etcd/server.crt"), &["-enddate"]), ca_end);
    // Longer than a date can hold: the same cut, not a crash.
    let out = renew(d, RENEW_NOW, &["etcd-peer"], &["--validity", "9999999999h"])
        .output()
        .unwrap();
    no_panic(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(x509(&d.join("pki/etcd/peer.crt"), &["-enddate"]), ca_end);

    // 0s, or a fraction of a second (X.509 times have whole seconds), would write certificates
    // that are expired when written: refused, nothing changed.
    let before = tree(d);
    let n_backups = backups(d).len();
    for v in ["0s", "500ms"] {
        let out = run_fail(&mut renew(d, RENEW_NOW, &["all"], &["--validity", v]));
        no_panic(&out);
        assert_eq!(out.status.code(), Some(1));
        assert_has(&stderr(&out), "must be at least 1s");
        assert!(tree(d) == before, "a refused renewal changed files");
        assert_eq!(backups(d).len(), n_backups);
    }

    // The real clock (no --now), on a PKI made now: notAfter is now + 48h, to a minute.
    let real = fresh_pki(NODE, IP, &[]);
    let r = real.path();
    run_ok(&mut kubepki_in(
        r,
        &[
            "certs",
            "renew",
            "apiserver-kubelet-client",
            "--validity",
            "48h",
        ],
    ));
    let c = r.join("pki/apiserver-kubelet-client.crt");
    let checkend = |secs: u64| {
        Command::new("openssl")
            .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
            .arg(&c)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(checkend(48 * 3600 - 60), "expires before now + 47h59m");
    assert!(!checkend(48 * 3600 + 60), "still valid at now + 48h01m");
}

#[test]
fn add_sans_extends_apiserver_with_a_new_key() {
    let dir = fresh();
    let d = dir.path();
    let crt = d.join("pki/apiserver.crt");
    let key = d.join("pki/apiserver.key");
    let ca = d.join("pki/ca.crt");
    let old_sans = sans(&crt);
    let expected_init: BTreeSet<String> = [
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:n1",
        "IP Address:10.96.0.1",
        "IP Address:10.0.0.1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(old_sans, expected_init);
    let old_key = fs::read(&key).unwrap();
    let old_subject = x509(&crt, &["-subject", "-nameopt", "RFC2253"]);
    let before = tree(d);

    let out = run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["apiserver"],
        &["--add-sans", "10.9.9.9,extra.example.com"],
    ));
    assert_has(
        &stdout(&out),
        "[renew] certificate apiserver renewed, adding IP:10.9.9.9, DNS:extra.example.com\n",
    );
    assert_eq!(
        differing(&before, &tree(d)),
        files_of_all(&["apiserver"]),
        "only apiserver's files change"
    );
    let mut want = old_sans.clone();
    want.insert("IP Address:10.9.9.9".into());
    want.insert("DNS:extra.example.com".into());
    assert_eq!(sans(&crt), want, "the old SANs plus exactly the new ones");
    assert_eq!(
        x509(&crt, &["-subject", "-nameopt", "RFC2253"]),
        old_subject
    );
    assert_ne!(fs::read(&key).unwrap(), old_key, "the key is new");
    assert!(key_matches(&crt, &key), "apiserver.key is apiserver.crt's");
    assert_eq!(mode(&key), 0o600);
    assert!(verifies(&ca, &crt, "sslserver", RENEW_NOW, &[]));
    assert!(verifies(
        &ca,
        &crt,
        "sslserver",
        RENEW_NOW,
        &["-verify_ip", "10.9.9.9"]
    ));
    assert!(verifies(
        &ca,
        &crt,
        "sslserver",
        RENEW_NOW,
        &["-verify_hostname", "extra.example.com"]
    ));
    assert!(
        !verifies(
            &ca,
            &crt,
            "sslserver",
            RENEW_NOW,
            &["-verify_hostname", "other.example.com"]
        ),
        "openssl accepts a name that is not in the certificate: the checks above prove nothing"
    );

    // SANs it already has (DNS names compared without case) are not added twice.
    let with_extra = sans(&crt);
    let out = run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["apiserver"],
        &["--add-sans", "10.0.0.1,KUBERNETES,extra.example.com"],
    ));
    assert_has(&stdout(&out), "[renew] certificate apiserver renewed\n");
    assert_eq!(sans(&crt), with_extra);

    // With `all`, the SANs go to apiserver, etcd-server and etcd-peer, and nowhere else.
    let sans_before: BTreeMap<&str, BTreeSet<String>> = LEAVES
        .iter()
        .map(|l| (l.name, sans(&cert_file(d, d, l.name))))
        .collect();
    let out = run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["all"],
        &["--add-sans", "10.7.7.7"],
    ));
    for (n, old) in &sans_before {
        let now = sans(&cert_file(d, d, n));
        if matches!(*n, "apiserver" | "etcd-server" | "etcd-peer") {
            let mut want = old.clone();
            want.insert("IP Address:10.7.7.7".into());
            assert_eq!(now, want, "{n}");
            assert_has(
                &stdout(&out),
                &format!("certificate {n} renewed, adding IP:10.7.7.7\n"),
            );
            assert!(verifies(
                &d.join(issuer_of(n)),
                &cert_file(d, d, n),
                "sslserver",
                RENEW_NOW,
                &["-verify_ip", "10.7.7.7"]
            ));
        } else {
            assert_eq!(&now, old, "{n} must not get SANs");
        }
    }
    // The etcd certificates carry the node's addresses: still there.
    assert!(sans(&d.join("pki/etcd/server.crt")).contains("IP Address:127.0.0.1"));

    // SANs for a certificate that has none: said, not silently dropped.
    let out = run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["front-proxy-client"],
        &["--add-sans", "x.example.com"],
    ));
    assert_has(
        &stdout(&out),
        "[renew] WARNING: extra SANs were given, but no apiserver or etcd server/peer certificate is being renewed",
    );
    assert!(sans(&d.join("pki/front-proxy-client.crt")).is_empty());
}

#[test]
fn dry_run_changes_nothing() {
    let dir = fresh();
    let d = dir.path();
    let before = snapshot(d);

    let out = run_ok(&mut renew(d, RENEW_NOW, &["all"], &["--dry-run"]));
    let text = stdout(&out);
    let mut want: Vec<String> = cert_names()
        .iter()
        .map(|n| format!("[renew] certificate {n} would be renewed"))
        .collect();
    want.push(
        "[renew] kube-apiserver, kube-controller-manager, kube-scheduler would then need restart \
         to load the renewed certificates (or rerun with --restart-static-pods)"
            .into(),
    );
    let mut got: Vec<String> = text.lines().map(String::from).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "dry-run output");
    assert!(snapshot(d) == before, "a dry run changed files");
    assert!(
        !d.join(BACKUPS).exists(),
        "a dry run made a backup directory"
    );
    // A dry run of --restart-static-pods says it would restart them, not to rerun with it.
    let out = run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["all"],
        &["--dry-run", "--restart-static-pods"],
    ));
    assert!(
        stdout(&out).ends_with(
            "[renew] kube-apiserver, kube-controller-manager, kube-scheduler would then be restarted, one at a time\n"
        ),
        "{}",
        stdout(&out)
    );
    assert!(snapshot(d) == before, "a dry run changed files");

    // With a window and extra SANs: says what it would do, still writes nothing.
    let out = run_ok(&mut renew(
        d,
        "2026-12-15T00:00:00Z",
        &["apiserver", "scheduler.conf"],
        &[
            "--dry-run",
            "--expiring-within",
            "720h",
            "--add-sans",
            "api2.example.com",
        ],
    ));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "[renew] certificate apiserver would be renewed, adding DNS:api2.example.com",
            "[renew] certificate scheduler.conf would be renewed",
            "[renew] kube-apiserver, kube-scheduler would then need restart to load the renewed \
             certificates (or rerun with --restart-static-pods)",
        ]
    );
    let out = run_ok(&mut renew(
        d,
        RENEW_NOW,
        &["all"],
        &["--dry-run", "--expiring-within", "1h"],
    ));
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.ends_with("not within the window: skipped"))
            .count(),
        11,
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stdout(&out).lines().last(),
        Some("[renew] nothing would be renewed"),
        "{}",
        stdout(&out)
    );
    assert!(snapshot(d) == before, "a dry run changed files");
    assert!(!d.join(BACKUPS).exists());
}

#[test]
fn backup_restores_the_tree_exactly() {
    let dir = fresh();
    let d = dir.path();
    let pristine = tree(d);

    let out = run_ok(&mut renew(d, RENEW_NOW, &["all"], &[]));
    let backup = printed_backup(&stdout(&out));
    assert_eq!(backup, d.join(BACKUPS).join("20260601T000000Z"));
    let renewed = tree(d);
    assert_eq!(
        differing(&pristine, &renewed),
        files_of_all(&cert_names()),
        "renew all replaces the 7 leaves and 4 kubeconfigs"
    );

    // The backup holds the 18 old files, readable by root only.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(backup.join("MANIFEST.json")).unwrap()).unwrap();
    let originals: BTreeSet<PathBuf> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f["original"].as_str().unwrap()))
        .collect();
    let want: BTreeSet<PathBuf> = files_of_all(&cert_names())
        .iter()
        .map(|f| d.join(f))
        .collect();
    assert_eq!(originals, want);
    assert_eq!(mode(&backup), 0o700, "the backup holds private keys");
    for f in manifest["files"].as_array().unwrap() {
        let stored = backup.join(f["stored"].as_str().unwrap());
        let original = PathBuf::from(f["original"].as_str().unwrap());
        let rel = original.strip_prefix(d).unwrap();
        assert_eq!(
            fs::read(&stored).unwrap(),
            pristine[rel].0,
            "{} in the backup is not the old file",
            rel.display()
        );
        assert_eq!(mode(&stored), 0o600, "{}", stored.display());
    }

    // Restore puts back every byte and mode.
    let out = run_ok(&mut restore(d, &backup, "2026-06-02T00:00:00Z", &[]));
    let text = stdout(&out);
    let undo = backup.with_file_name("20260601T000000Z.before-restore-20260602T000000Z");
    assert!(
        text.contains(&format!(
            "[restore] restored 18 files; what they replaced is in {}\n",
            undo.display()
        )),
        "{text}"
    );
    assert_eq!(
        restart_lines(&text),
        [
            "[renew] kube-apiserver, kube-controller-manager, kube-scheduler must restart to load \
             the renewed certificates (or rerun with --restart-static-pods)"
        ]
    );
    let restored = tree(d);
    assert!(
        restored == pristine,
        "restore differs from the tree before renew: {:?}",
        differing(&pristine, &restored)
    );
    for l in LEAVES {
        assert_eq!(mode(&d.join(l.key())), 0o600, "{}", l.key());
        assert_eq!(mode(&d.join(l.crt())), 0o644, "{}", l.crt());
    }
    for k in KUBECONFIGS {
        assert_eq!(mode(&d.join(k)), 0o600, "{k}");
    }

    // The restore is undoable: its own backup brings the renewed files back.
    run_ok(&mut restore(d, &undo, "2026-06-03T00:00:00Z", &[]));
    assert!(tree(d) == renewed, "undoing the restore");

    // A backup changed since it was made is refused, and nothing is touched.
    let stored_key = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["original"].as_str().unwrap().ends_with("/apiserver.key"))
        .map(|f| backup.join(f["stored"].as_str().unwrap()))
        .unwrap();
    let good = fs::read(&stored_key).unwrap();
    fs::write(&stored_key, b"tampered\n").unwrap();
    let before = tree(d);
    let n_backups = backups(d).len();
    let out = run_fail(&mut restore(d, &backup, "2026-06-04T00:00:00Z", &[]));
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_has(
        &stderr(&out),
        &format!(
            "{}: does not match the checksum in the backup manifest",
            stored_key.display()
        ),
    );
    assert!(tree(d) == before);
    assert_eq!(backups(d).len(), n_backups);
    fs::write(&stored_key, good).unwrap();

    // --backup-dir chooses where the old files go.
    let mine = d.join("mine");
    let out = run_ok(
        renew(d, RENEW_NOW, &["front-proxy-client"], &[])
            .arg("--backup-dir")
            .arg(&mine),
    );
    assert_eq!(printed_backup(&stdout(&out)), mine);
    let fp = d.join("pki/front-proxy-client.crt");
    assert_ne!(
        fs::read(&fp).unwrap(),
        renewed[Path::new("pki/front-proxy-client.crt")].0
    );
    run_ok(&mut restore(d, &mine, "2026-06-05T00:00:00Z", &[]));
    assert_eq!(
        fs::read(&fp).unwrap(),
        renewed[Path::new("pki/front-proxy-client.crt")].0
    );
}

/// `cmd.output()`, except that a run still going after `limit` is killed (by its PID) and
/// fails the test: a run that should not block must not hang the test either.
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let dir = scratch();
    let (o, e) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&o).unwrap())
        .stderr(fs::File::create(&e).unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {limit:?}: it blocked\n{}",
                fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: fs::read(&o).unwrap(),
        stderr: fs::read(&e).unwrap(),
    }
}

/// Holds kubepki's lock on a cert dir the way kubepki takes it: flock on the directory.
fn hold_lock(dir: &Path) -> nix::fcntl::Flock<fs::File> {
    let f = fs::File::open(dir).unwrap();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", dir.display()))
}

#[test]
fn lock_fails_fast_or_waits() {
    let dir = fresh();
    let d = dir.path();
    let pki = d.join("pki");
    let out = run_ok(&mut renew(d, RENEW_NOW, &["front-proxy-client"], &[]));
    let backup = printed_backup(&stdout(&out));

    let lock = hold_lock(&pki);
    let before = snapshot(d);
    let message = format!(
        "error: {}: another kubepki run is working on this directory (it holds the lock); retry \
         when it finishes, or pass --wait",
        pki.display()
    );
    let fast = Duration::from_secs(10);
    let out = output_within(&mut renew(d, "2026-06-02T00:00:00Z", &["all"], &[]), fast);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_has(&stderr(&out), &message);
    assert!(!stdout(&out).contains("renewed"), "{}", stdout(&out));
    // restore takes the same lock.
    let out = output_within(&mut restore(d, &backup, "2026-06-02T00:00:00Z", &[]), fast);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_has(&stderr(&out), &message);
    assert!(
        !stdout(&out).contains("restoring"),
        "a refused restore claims to restore:\n{}",
        stdout(&out)
    );
    // A dry run only reads: it answers while the lock is held.
    let out = output_within(
        &mut renew(d, "2026-06-02T00:00:00Z", &["all"], &["--dry-run"]),
        fast,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("[renew] certificate apiserver would be renewed"));
    assert!(
        snapshot(d) == before,
        "files changed while another run held the lock"
    );

    // --wait: blocks while the lock is held, then renews.
    let log = scratch();
    let mut waiter = Proc::spawn(
        "kubepki certs renew --wait",
        renew(d, "2026-06-02T00:00:00Z", &["all"], &["--wait"]),
        &log.path().join("renew.log"),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        waiter.try_wait().is_none(),
        "renew --wait did not wait for the lock:\n{}",
        waiter.log_text()
    );
    assert!(
        snapshot(d) == before,
        "renew --wait changed files before it had the lock"
    );
    drop(lock);
    let status = wait_for(
        "renew --wait to finish",
        Duration::from_secs(60),
        600,
        || waiter.try_wait(),
    );
    let text = waiter.log_text();
    assert!(status.success(), "renew --wait: {status}\n{text}");
    assert!(
        text.contains("[renew] certificate apiserver renewed"),
        "{text}"
    );
    let after = tree(d);
    assert_eq!(
        differing(&but_backups(d, before), &after),
        files_of_all(&cert_names())
    );
}

#[test]
fn external_ca_certificates_are_reported_the_rest_renews() {
    let dir = fresh();
    let d = dir.path();
    let work = scratch();
    let w = work.path();
    fs::remove_file(d.join("pki/ca.key")).unwrap();
    let before = tree(d);

    // kubeadm's rule for an external CA (its key is absent): report and go on; exit status 0.
    let out = run_ok(&mut renew(d, RENEW_NOW, &["all"], &[]));
    let text = stdout(&out);
    let ca_signed = signed_by("pki/ca.crt");
    let rest: Vec<&str> = cert_names()
        .into_iter()
        .filter(|n| !ca_signed.contains(n))
        .collect();
    assert_lines(&text, &ca_signed, |n| {
        format!("[renew] Detected external ca, {n} can't be renewed")
    });
    assert_lines(&text, &rest, |n| format!("[renew] certificate {n} renewed"));
    for n in &rest {
        let c = cert_file(d, w, n);
        assert!(
            verifies(&d.join(issuer_of(n)), &c, purpose_of(n), RENEW_NOW, &[]),
            "{n}"
        );
        assert!(key_matches(&c, &key_file(d, w, n)), "{n}");
    }
    assert_eq!(
        differing(&before, &tree(d)),
        files_of_all(&rest),
        "only what etcd-ca and front-proxy-ca sign changes; nothing appears (no ca.key)"
    );
    assert_eq!(
        restart_lines(&text),
        [
            "[renew] kube-apiserver must restart to load the renewed certificates (or rerun with \
          --restart-static-pods)"
        ]
    );

    // Naming only certificates the external CA signs: reported, nothing written, status 0.
    let before = tree(d);
    let n_backups = backups(d).len();
    let out = run_ok(&mut renew(d, RENEW_NOW, &["apiserver", "admin.conf"], &[]));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "[renew] Detected external ca, apiserver can't be renewed",
            "[renew] Detected external ca, admin.conf can't be renewed",
            "[renew] nothing to renew",
        ]
    );
    assert!(tree(d) == before);
    assert_eq!(backups(d).len(), n_backups);

    // The rule is per CA: with etcd-ca external too, only front-proxy-client renews.
    fs::remove_file(d.join("pki/etcd/ca.key")).unwrap();
    let before = tree(d);
    let out = run_ok(&mut renew(d, "2026-06-02T00:00:00Z", &["all"], &[]));
    let text = stdout(&out);
    assert_lines(&text, &signed_by("pki/etcd/ca.crt"), |n| {
        format!("[renew] Detected external etcd-ca, {n} can't be renewed")
    });
    assert_eq!(
        differing(&before, &tree(d)),
        files_of_all(&["front-proxy-client"])
    );
}

#[test]
fn kubelet_conf_and_kubelet_certificates() {
    let dir = fresh();
    let d = dir.path();
    let work = scratch();
    let w = work.path();
    let ca = d.join("pki/ca.crt");
    let conf = d.join("kubelet.conf");
    let old_text = fs::read_to_string(&conf).unwrap();
    let before = tree(d);

    // renew kubelet.conf, by name (never part of `all`: see the other tests' file sets).
    let out = run_ok(&mut renew(d, RENEW_NOW, &["kubelet.conf"], &[]));
    let text = stdout(&out);
    assert!(
        text.contains("[renew] certificate kubelet.conf renewed\n"),
        "{text}"
    );
    assert_eq!(
        restart_lines(&text),
        [
            "[renew] the kubelet must restart to load the new kubelet.conf: systemctl restart kubelet"
        ]
    );
    assert_eq!(
        differing(&before, &tree(d)),
        BTreeSet::from(["kubelet.conf".to_string()])
    );
    let renewed_text = fs::read_to_string(&conf).unwrap();
    assert_eq!(mode(&conf), 0o600);
    let c = cert_file(d, w, "kubelet.conf");
    assert_eq!(
        x509(&c, &["-subject", "-nameopt", "RFC2253"]),
        "subject=CN=system:node:n1,O=system:nodes"
    );
    assert_eq!(x509(&c, &["-enddate"]), "notAfter=Jun  1 00:00:00 2027 GMT");
    assert!(verifies(&ca, &c, "sslclient", RENEW_NOW, &[]));
    assert!(key_matches(&c, &key_file(d, w, "kubelet.conf")));
    assert_ne!(
        kc_field(&renewed_text, "client-key-data"),
        kc_field(&old_text, "client-key-data")
    );
    assert_eq!(
        kc_field(&renewed_text, "certificate-authority-data"),
        fs::read(&ca).unwrap()
    );
    assert_eq!(kc_line(&renewed_text, "server"), "https://10.0.0.1:6443");
    let renew_backup = printed_backup(&text);

    // kubeconfig kubelet: a fresh kubelet.conf for a node, printed; nothing written.
    let before = snapshot(d);
    let out = run_ok(&mut kubelet_kubeconfig(
        d,
        &["--node-name", NODE, "--now", RENEW_NOW],
    ));
    assert!(
        snapshot(d) == before,
        "kubeconfig kubelet without --write wrote"
    );
    let printed = stdout(&out);
    assert_eq!(kc_line(&printed, "server"), "https://10.0.0.1:6443");
    assert_eq!(
        kc_line(&printed, "current-context"),
        "system:node:n1@kubernetes"
    );
    let cert_pem = kc_field(&printed, "client-certificate-data");
    let key_pem = kc_field(&printed, "client-key-data");
    let c = w.join("kubelet-client.crt");
    write_file(&c, &cert_pem);
    let k = w.join("kubelet-client.key");
    write_file(&k, &key_pem);
    assert_eq!(
        x509(&c, &["-subject", "-nameopt", "RFC2253"]),
        "subject=CN=system:node:n1,O=system:nodes"
    );
    assert!(verifies(&ca, &c, "sslclient", RENEW_NOW, &[]));
    assert!(key_matches(&c, &k));
    assert_eq!(x509(&c, &["-enddate"]), "notAfter=Jun  1 00:00:00 2027 GMT");

    // A validity longer than a date can hold: cut at the CA, with a warning, not a crash;
    // 0s: refused.
    let out = kubelet_kubeconfig(
        d,
        &[
            "--node-name",
            NODE,
            "--validity-period",
            "9999999999h",
            "--now",
            RENEW_NOW,
        ],
    )
    .output()
    .unwrap();
    no_panic(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_has(
        &stderr(&out),
        "[kubeconfig] WARNING: the CA expires Dec 30, 2035 00:00 UTC; the certificate is cut off there",
    );
    let long = w.join("long.crt");
    write_file(&long, &kc_field(&stdout(&out), "client-certificate-data"));
    assert_eq!(x509(&long, &["-enddate"]), x509(&ca, &["-enddate"]));
    let out = run_fail(&mut kubelet_kubeconfig(
        d,
        &["--node-name", NODE, "--validity-period", "0s", "--write"],
    ));
    no_panic(&out);
    assert_has(&stderr(&out), "must be at least 1s");
    assert!(snapshot(d) == before);

    // The kubelet's own files: its rotated client certificate (cert and key in one file) and a
    // self-signed serving certificate, as a kubelet without serverTLSBootstrap makes one.
    let kubelet = w.join("var-lib-kubelet");
    let kdir = kubelet.to_str().unwrap();
    let empty = run_ok(&mut check_expiration(d, &["--kubelet-dir", kdir]));
    assert_has(&stdout(&empty), "!MISSING! kubelet-client");
    let pem = kubelet.join("pki/kubelet-client-current.pem");
    write_file(&pem, &[cert_pem.as_slice(), key_pem.as_slice()].concat());
    let serving = kubelet.join("pki/kubelet.crt");
    run_ok(
        Command::new("openssl")
            .args(
                "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365".split(' '),
            )
            .args(["-subj", "/CN=n1@1700000000", "-keyout"])
            .arg(kubelet.join("pki/kubelet.key"))
            .arg("-out")
            .arg(&serving),
    );
    let out = run_ok(&mut check_expiration(d, &["--kubelet-dir", kdir]));
    let text = stdout(&out);
    let table: Vec<Vec<&str>> = text
        .split("\nKUBELET CERTIFICATE")
        .nth(1)
        .unwrap_or_else(|| panic!("no kubelet table:\n{text}"))
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let pem_s = pem.display().to_string();
    let conf_s = conf.display().to_string();
    let serving_s = serving.display().to_string();
    // Both client certificates were issued at RENEW_NOW by the cluster CA.
    let renewed_row = |name, path| {
        [
            name, "Jun", "01,", "2027", "00:00", "UTC", "365d", "ca", path,
        ]
    };
    assert_eq!(table.len(), 3, "{text}");
    assert_eq!(table[0], renewed_row("kubelet-client", pem_s.as_str()));
    assert_eq!(table[1][0], "kubelet-serving");
    assert_eq!(&table[1][7..], ["self-signed", serving_s.as_str()]);
    assert_eq!(table[2], renewed_row("kubelet.conf", conf_s.as_str()));
    let out = run_ok(&mut check_expiration(
        d,
        &["-o", "json", "--kubelet-dir", kdir],
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = v["kubeletCertificates"].as_array().unwrap();
    assert_eq!(entries[0]["name"], "kubelet-client");
    assert_eq!(entries[0]["caName"], "ca");
    assert_eq!(entries[0]["expirationDate"], "2027-06-01T00:00:00Z");
    assert_eq!(entries[0]["missing"], false);

    // --rotated --write: kubelet.conf points at the rotated file again (after a backup) ...
    let out = run_ok(&mut kubelet_kubeconfig(
        d,
        &[
            "--node-name",
            NODE,
            "--rotated",
            "--write",
            "--kubelet-dir",
            kdir,
            "--now",
            "2026-06-02T00:00:00Z",
        ],
    ));
    let write_backup = d.join(BACKUPS).join("20260602T000000Z");
    assert_has(
        &stdout(&out),
        &format!(
            "[kubeconfig] backed up {} to {}",
            conf.display(),
            write_backup.display()
        ),
    );
    let rotated = fs::read_to_string(&conf).unwrap();
    assert_eq!(kc_line(&rotated, "client-certificate"), pem_s);
    assert_eq!(kc_line(&rotated, "client-key"), pem_s);
    assert_eq!(kc_line(&rotated, "server"), "https://10.0.0.1:6443");
    assert_eq!(mode(&conf), 0o600);
    // ... which renew leaves to the kubelet ...
    let before = tree(d);
    let out = run_ok(&mut renew(
        d,
        "2026-06-03T00:00:00Z",
        &["kubelet.conf"],
        &[],
    ));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "[renew] kubelet.conf uses the kubelet's rotating client certificate; the kubelet \
             renews it (if it expired: kubepki kubeconfig kubelet)",
            "[renew] nothing to renew",
        ]
    );
    assert!(tree(d) == before);
    // ... and check-expiration no longer has a kubelet.conf row of its own.
    let out = run_ok(&mut check_expiration(d, &["--kubelet-dir", kdir]));
    assert!(!stdout(&out).contains(&conf_s), "{}", stdout(&out));
    assert!(stdout(&out).contains(&pem_s));
    // The rotated file must be this node's.
    let out = run_fail(&mut kubelet_kubeconfig(
        d,
        &["--node-name", "n2", "--rotated", "--kubelet-dir", kdir],
    ));
    assert_has(
        &stderr(&out),
        &format!("{pem_s}: the certificate is for \"system:node:n1\", not \"system:node:n2\""),
    );

    // The backups restore: --write's brings back the embedded kubelet.conf, renew's the
    // original one.
    let out = run_ok(&mut restore(d, &write_backup, "2026-06-04T00:00:00Z", &[]));
    assert_eq!(fs::read_to_string(&conf).unwrap(), renewed_text);
    assert_eq!(
        restart_lines(&stdout(&out)),
        [
            "[renew] the kubelet must restart to load the new kubelet.conf: systemctl restart kubelet"
        ]
    );
    run_ok(&mut restore(d, &renew_backup, "2026-06-05T00:00:00Z", &[]));
    assert_eq!(fs::read_to_string(&conf).unwrap(), old_text);
}

#[test]
fn restart_advice_names_the_components_that_must_restart() {
    let dir = fresh();
    let d = dir.path();
    let statics = |list: &str| {
        format!(
            "[renew] {list} must restart to load the renewed certificates (or rerun with \
             --restart-static-pods)"
        )
    };
    let kubelet =
        "[renew] the kubelet must restart to load the new kubelet.conf: systemctl restart kubelet";
    let none = "[renew] no component needs a restart: these certificates are read when used";
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec!["apiserver"], vec![statics("kube-apiserver")]),
        // kube-apiserver presents it to aggregated API servers.
        (vec!["front-proxy-client"], vec![statics("kube-apiserver")]),
        (
            vec!["apiserver-etcd-client", "apiserver-kubelet-client"],
            vec![statics("kube-apiserver")],
        ),
        (
            vec!["scheduler.conf", "controller-manager.conf"],
            vec![statics("kube-controller-manager, kube-scheduler")],
        ),
        // etcd reloads its certificates per connection; the rest belong to per-use clients.
        (
            vec![
                "etcd-server",
                "etcd-peer",
                "etcd-healthcheck-client",
                "admin.conf",
                "super-admin.conf",
            ],
            vec![none.to_string()],
        ),
        (vec!["kubelet.conf"], vec![kubelet.to_string()]),
        (
            vec!["apiserver", "kubelet.conf"],
            vec![statics("kube-apiserver"), kubelet.to_string()],
        ),
        (
            vec!["all"],
            vec![statics(
                "kube-apiserver, kube-controller-manager, kube-scheduler",
            )],
        ),
    ];
    for (names, want) in &cases {
        let out = run_ok(&mut renew(d, RENEW_NOW, names, &[]));
        assert_eq!(
            restart_lines(&stdout(&out)),
            *want,
            "renew {names:?}:\n{}",
            stdout(&out)
        );
        // A dry run gives the same list, in the conditional.
        if want.iter().all(|l| l != none) {
            let out = run_ok(&mut renew(d, RENEW_NOW, names, &["--dry-run"]));
            let dry: Vec<String> = want
                .iter()
                .map(|l| l.replace(" must restart", " would then need restart"))
                .collect();
            assert_eq!(restart_lines(&stdout(&out)), dry, "dry-run {names:?}");
        }
    }
}
