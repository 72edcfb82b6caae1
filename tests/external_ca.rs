//! External CA end to end (CA certificates present, their keys elsewhere): the three CAs live in their own directories, run by
//! `openssl ca` with its own configuration (database, serials, policy, and one extension
//! profile per kind of certificate: the CA decides usages, SANs are copied from the request);
//! the node holds only their certificates. `kubepki certs generate-csr` writes keys and CSRs,
//! openssl signs them, `kubepki certs import` installs them, and a real etcd and
//! kube-apiserver v1.20.2 then run on the result.
//!
//! Then, each with its own fresh CSR set in a `--csr-dir` (renewal through the external CA), a
//! returned certificate with the wrong usages, one for another key, and one from another CA
//! with the same name as the cluster CA are each refused with an error naming the file and the
//! problem, and nothing at all is installed (the node's files are byte-identical before and
//! after). The same sets, repaired, pass: each refusal is caused by the bad file alone.
//!
//! Everything listens on 127.0.0.30 only; every process is stopped by PID when the test ends
//! (also on panic), and the tails of their logs are part of any failure message.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::cluster::*;
use common::*;

/// 127.0.0.30: clear of the addresses the other cluster tests use.
const LOOPBACK: u8 = 30;
const NODE: &str = "cp-30";

/// What the external CAs sign: (kubepki's name, path of the request below the cert dir or
/// the kubeconfig dir without `.csr`, kubeconfig?, signing CA, `openssl ca` profile).
/// Profiles follow kubeadm's usages: apiserver is a server, etcd server and peer are both, the rest are
/// clients.
const SIGNED: [(&str, &str, bool, &str, &str); 12] = [
    ("apiserver", "apiserver", false, "ca", "server"),
    (
        "apiserver-kubelet-client",
        "apiserver-kubelet-client",
        false,
        "ca",
        "client",
    ),
    (
        "apiserver-etcd-client",
        "apiserver-etcd-client",
        false,
        "etcd-ca",
        "client",
    ),
    (
        "front-proxy-client",
        "front-proxy-client",
        false,
        "front-proxy-ca",
        "client",
    ),
    (
        "etcd-server",
        "etcd/server",
        false,
        "etcd-ca",
        "server_client",
    ),
    ("etcd-peer", "etcd/peer", false, "etcd-ca", "server_client"),
    (
        "etcd-healthcheck-client",
        "etcd/healthcheck-client",
        false,
        "etcd-ca",
        "client",
    ),
    ("admin.conf", "admin.conf", true, "ca", "client"),
    ("super-admin.conf", "super-admin.conf", true, "ca", "client"),
    (
        "controller-manager.conf",
        "controller-manager.conf",
        true,
        "ca",
        "client",
    ),
    ("scheduler.conf", "scheduler.conf", true, "ca", "client"),
    ("kubelet.conf", "kubelet.conf", true, "ca", "client"),
];

/// One external CA: a directory `openssl ca` runs in, its key never leaves it.
struct ExtCa {
    dir: PathBuf,
}

impl ExtCa {
    fn cnf(&self) -> PathBuf {
        self.dir.join("openssl.cnf")
    }

    fn crt(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn new(root: &Path, name: &str, cn: &str) -> ExtCa {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("newcerts")).unwrap();
        write_file(&dir.join("index.txt"), b"");
        write_file(&dir.join("serial"), b"1000\n");
        let cnf = format!(
            r#"[ ca ]
default_ca = this_ca

[ this_ca ]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_days = 365
policy = policy_k8s
# etcd server and peer share a subject; renewals repeat subjects.
unique_subject = no
# SANs come from the request; usages never do: each profile below sets them, and an
# extension the profile sets is not copied.
copy_extensions = copy
email_in_dn = no
preserve = yes

[ policy_k8s ]
organizationName = optional
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = {cn}

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
subjectKeyIdentifier = hash

[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid

[ server_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
authorityKeyIdentifier = keyid

[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"#,
            dir = dir.display()
        );
        write_file(&dir.join("openssl.cnf"), cnf.as_bytes());
        let ca = ExtCa { dir };
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-config"])
                .arg(ca.cnf())
                .args(["-extensions", "v3_ca", "-newkey", "rsa:2048", "-nodes"])
                .arg("-keyout")
                .arg(ca.dir.join("ca.key"))
                .arg("-out")
                .arg(ca.crt())
                .args(["-days", "3650"]),
        );
        ca
    }

    /// `openssl ca -batch -extensions <profile>`: the CA's own config decides the usages.
    fn sign(&self, profile: &str, csr: &Path, out: &Path) {
        run_ok(
            Command::new("openssl")
                .args(["ca", "-batch", "-notext", "-config"])
                .arg(self.cnf())
                .args(["-extensions", profile, "-in"])
                .arg(csr)
                .arg("-out")
                .arg(out),
        );
    }
}

struct Cas {
    by_name: BTreeMap<&'static str, ExtCa>,
    /// Another CA whose subject is the cluster CA's (`CN=kubernetes`), with its own key.
    foreign: ExtCa,
}

impl Cas {
    fn get(&self, name: &str) -> &ExtCa {
        &self.by_name[name]
    }
}

/// (request, returned certificate) of `name` below `cert_root` / `kube_root`.
fn req_paths(name: &str, cert_root: &Path, kube_root: &Path) -> (PathBuf, PathBuf) {
    let (_, rel, kubeconfig, _, _) = SIGNED
        .iter()
        .find(|s| s.0 == name)
        .unwrap_or_else(|| panic!("{name} is not in SIGNED"));
    let root = if *kubeconfig { kube_root } else { cert_root };
    (
        root.join(format!("{rel}.csr")),
        root.join(format!("{rel}.crt")),
    )
}

/// Signs every request as the external CAs should: the right CA and profile for each.
fn sign_all(cas: &Cas, cert_root: &Path, kube_root: &Path) {
    for (name, _, _, ca, profile) in SIGNED {
        let (csr, crt) = req_paths(name, cert_root, kube_root);
        assert!(
            csr.is_file(),
            "generate-csr did not write {}",
            csr.display()
        );
        assert!(
            !crt.exists(),
            "{} exists before the CA signed anything",
            crt.display()
        );
        cas.get(ca).sign(profile, &csr, &crt);
    }
}

fn node_flags(node: &Path, api_port: u16) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["--cert-dir".into(), node.join("pki").into()];
    v.extend(["--kubeconfig-dir".into(), node.as_os_str().to_owned()]);
    v.extend(["--node-name".into(), NODE.into()]);
    v.extend([
        "--apiserver-advertise-address".into(),
        loopback(LOOPBACK).to_string().into(),
    ]);
    v.extend(["--apiserver-bind-port".into(), api_port.to_string().into()]);
    v
}

fn dirs_flags(node: &Path) -> Vec<OsString> {
    vec![
        "--cert-dir".into(),
        node.join("pki").into(),
        "--kubeconfig-dir".into(),
        node.as_os_str().to_owned(),
    ]
}

/// The node's files (cert dir, kubeconfigs, backups, anything kubepki might add) without what
/// the running servers and kubectl write there.
fn node_snapshot(node: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let volatile = ["etcd-data", "kube-cache", "apiserver-certs"].map(|d| node.join(d));
    snapshot(node)
        .into_iter()
        .filter(|(p, _, _)| {
            !volatile.iter().any(|v| p.starts_with(v)) && p.extension().is_none_or(|e| e != "log")
        })
        .collect()
}

/// Names of the files that differ between two snapshots, for failure messages.
fn diff(a: &[(PathBuf, Vec<u8>, u32)], b: &[(PathBuf, Vec<u8>, u32)]) -> Vec<String> {
    let ma: BTreeMap<_, _> = a.iter().map(|(p, c, m)| (p, (c, m))).collect();
    let mb: BTreeMap<_, _> = b.iter().map(|(p, c, m)| (p, (c, m))).collect();
    let mut out = Vec::new();
    for (p, v) in &ma {
        match mb.get(p) {
            None => out.push(format!("removed {}", p.display())),
            Some(w) if w != v => out.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in mb.keys().filter(|p| !ma.contains_key(*p)) {
        out.push(format!("added {}", p.display()));
    }
    out
}

fn openssl_text(args: &[&str], file: &Path) -> String {
    stdout(&run_ok(Command::new("openssl").args(args).arg(file)))
}

#[test]
fn external_ca_generate_csr_openssl_ca_import_then_etcd_and_apiserver_run() {
    let started = Instant::now();
    let bin = ensure_control_plane_tools();

    let tmp = scratch();
    let ext = tmp.path().join("external-ca");
    let node = tmp.path().join("node");
    let pki = node.join("pki");
    let ip = loopback(LOOPBACK);
    let api_port = free_port(ip);

    // The external CAs, each with its own key and database; the foreign one shares the
    // cluster CA's subject.
    let cas = Cas {
        by_name: [
            ("ca", "kubernetes"),
            ("front-proxy-ca", "front-proxy-ca"),
            ("etcd-ca", "etcd-ca"),
        ]
        .into_iter()
        .map(|(n, cn)| (n, ExtCa::new(&ext, n, cn)))
        .collect(),
        foreign: ExtCa::new(&ext, "foreign", "kubernetes"),
    };
    // External mode: the node has the CA certificates, never their keys.
    fs::create_dir_all(pki.join("etcd")).unwrap();
    for (ca, dest) in [
        ("ca", "ca.crt"),
        ("front-proxy-ca", "front-proxy-ca.crt"),
        ("etcd-ca", "etcd/ca.crt"),
    ] {
        fs::copy(cas.get(ca).crt(), pki.join(dest)).unwrap();
    }

    // 1. generate-csr all, in place (kubeadm's layout): a key and a CSR per certificate.
    let out = run_ok(
        kubepki()
            .args(["certs", "generate-csr", "all"])
            .args(node_flags(&node, api_port)),
    );
    let text = stdout(&out);
    for (name, ..) in SIGNED {
        assert!(
            text.contains(&format!("[csr] {name}: wrote")),
            "generate-csr should report {name}:\n{text}"
        );
    }
    // The requests carry names, not usages; SANs as kubeadm gives them.
    for (name, ..) in SIGNED {
        let (csr, _) = req_paths(name, &pki, &node);
        let t = openssl_text(&["req", "-noout", "-text", "-in"], &csr);
        assert!(
            !t.contains("Extended Key Usage") && !t.contains("X509v3 Key Usage"),
            "{} asks for usages; the CA decides them:\n{t}",
            csr.display()
        );
    }
    let t = openssl_text(
        &["req", "-noout", "-text", "-in"],
        &pki.join("apiserver.csr"),
    );
    for san in [
        format!("DNS:{NODE}"),
        "DNS:kubernetes.default.svc.cluster.local".into(),
        "IP Address:10.96.0.1".into(),
        format!("IP Address:{ip}"),
    ] {
        assert!(t.contains(&san), "apiserver.csr lacks {san}:\n{t}");
    }

    // 2. The external CAs sign; each certificate comes back beside its request.
    sign_all(&cas, &pki, &node);
    // The usages are the CA's: apiserver is a server only, kubelet client a client only.
    let purpose = |ca: &str, purpose: &str, crt: &Path| {
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(cas.get(ca).crt())
            .args(["-purpose", purpose])
            .arg(crt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(purpose("ca", "sslserver", &pki.join("apiserver.crt")));
    assert!(!purpose("ca", "sslclient", &pki.join("apiserver.crt")));
    assert!(purpose(
        "etcd-ca",
        "sslclient",
        &pki.join("etcd/server.crt")
    ));
    assert!(purpose(
        "etcd-ca",
        "sslserver",
        &pki.join("etcd/server.crt")
    ));
    assert!(!purpose(
        "ca",
        "sslserver",
        &pki.join("apiserver-kubelet-client.crt")
    ));

    // 3. import: every certificate checked and installed.
    let out = run_ok(kubepki().args(["certs", "import"]).args(dirs_flags(&node)));
    let text = stdout(&out);
    for (name, ..) in SIGNED {
        assert!(
            text.contains(&format!("[import] {name}: ")),
            "import should report {name}:\n{text}"
        );
    }
    // The kubeconfigs are complete now: the server is this node's, the CA embedded is ca.crt.
    for (name, _, kubeconfig, ..) in SIGNED {
        if !kubeconfig {
            continue;
        }
        let conf = node.join(name);
        let o = run_ok(kubectl(&conf).args([
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.server} {.users[0].user.client-certificate-data}",
        ]));
        let s = stdout(&o);
        let (server, cert) = s.trim().split_once(' ').unwrap_or((s.trim(), ""));
        assert_eq!(server, format!("https://{ip}:{api_port}"), "{name} server");
        if cert.is_empty() {
            // `config view` without --raw redacts the key: safe to show.
            let view = kc(&conf, &["config", "view"]);
            panic!(
                "{name} has no embedded client certificate:\n{}",
                show(&view)
            );
        }
    }

    // 4. check-expiration: nothing missing, every row signed by its CA and externally managed.
    let out = run_ok(
        kubepki()
            .args(["certs", "check-expiration"])
            .args(dirs_flags(&node)),
    );
    let report = stdout(&out);
    assert!(!report.contains("MISSING"), "{report}");
    let (leaves, authorities) = report
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("two tables expected:\n{report}"));
    let mut rows = 0;
    for line in leaves.lines().skip(1) {
        let tok: Vec<&str> = line.split_whitespace().collect();
        let (name, ca, managed) = (tok[0], tok[tok.len() - 2], tok[tok.len() - 1]);
        let want = SIGNED
            .iter()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("unexpected row {line:?}:\n{report}"));
        assert_eq!((ca, managed), (want.3, "yes"), "row {line:?}:\n{report}");
        rows += 1;
    }
    // kubeadm's list: all but kubelet.conf.
    assert_eq!(rows, SIGNED.len() - 1, "{report}");
    let cas_rows: Vec<(&str, &str)> = authorities
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t[0], t[t.len() - 1])
        })
        .collect();
    assert_eq!(
        cas_rows,
        [("ca", "yes"), ("etcd-ca", "yes"), ("front-proxy-ca", "yes")],
        "{report}"
    );

    // 5. init with the same flags: the CAs are external and every certificate is in place, so
    //    it only adds the service-account key pair (which no CA signs); a second run changes
    //    nothing at all.
    let before = node_snapshot(&node);
    let out = run_ok(kubepki().arg("init").args(node_flags(&node, api_port)));
    let after = node_snapshot(&node);
    assert_eq!(
        diff(&before, &after),
        [
            format!("added {}", pki.join("sa.key").display()),
            format!("added {}", pki.join("sa.pub").display()),
        ],
        "init after import:\n{}",
        stdout(&out)
    );
    let out = run_ok(kubepki().arg("init").args(node_flags(&node, api_port)));
    let text = stdout(&out);
    assert!(
        !text.contains("Generat") && text.contains("external \"ca\""),
        "second init should have nothing to do:\n{text}"
    );
    assert_eq!(diff(&after, &node_snapshot(&node)), Vec::<String>::new());
    for key in ["ca.key", "front-proxy-ca.key", "etcd/ca.key"] {
        assert!(!pki.join(key).exists(), "{key} appeared on the node");
    }

    // 6. etcd and kube-apiserver v1.20.2 on the result.
    let mut cluster = Cluster::start_on(bin, &node, NODE, ip, api_port);
    run_checks(
        &mut cluster,
        |c| {
            // The refusals need no server: they run while kube-apiserver starts.
            refusals(&cas, tmp.path(), &node, api_port);
            cluster_checks(c);
            repaired_import_is_installed(tmp.path(), &node, c);
        },
        Cluster::log_tails,
    );
    eprintln!(
        "external CA test: all checks passed in {:?}",
        started.elapsed()
    );
}

/// A fresh CSR set in `<tmp>/<name>` for the node's current certificates, signed correctly.
fn fresh_set(cas: &Cas, tmp: &Path, name: &str, node: &Path, api_port: u16) -> PathBuf {
    let dir = tmp.join(name);
    run_ok(
        kubepki()
            .args(["certs", "generate-csr", "all", "--csr-dir"])
            .arg(&dir)
            .args(node_flags(node, api_port)),
    );
    sign_all(cas, &dir, &dir);
    dir
}

/// `import --csr-dir dir` must fail naming each of `bad` (file, problem) and change nothing;
/// then `fix` repairs the set and a dry run accepts it.
fn assert_refused(node: &Path, dir: &Path, bad: &[(&Path, &str)], fix: impl FnOnce()) {
    let before = node_snapshot(node);
    let out = run_fail(
        kubepki()
            .args(["certs", "import", "--csr-dir"])
            .arg(dir)
            .args(dirs_flags(node)),
    );
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    for (file, problem) in bad {
        let file = file.display().to_string();
        assert!(
            errors
                .iter()
                .any(|l| l.contains(&file) && l.contains(problem)),
            "import should refuse {file} with {problem:?}\n{}",
            show(&out)
        );
    }
    // Only the bad files are blamed, and the verdict is said.
    assert_eq!(errors.len(), bad.len() + 1, "{}", show(&out));
    assert!(err.contains("nothing was installed"), "{}", show(&out));
    assert_eq!(
        diff(&before, &node_snapshot(node)),
        Vec::<String>::new(),
        "a refused import changed the node's files\n{}",
        show(&out)
    );
    fix();
    let out = run_ok(
        kubepki()
            .args(["certs", "import", "--dry-run", "--csr-dir"])
            .arg(dir)
            .args(dirs_flags(node)),
    );
    assert!(
        stdout(&out).contains("would be installed"),
        "{}",
        show(&out)
    );
    assert_eq!(diff(&before, &node_snapshot(node)), Vec::<String>::new());
}

fn refusals(cas: &Cas, tmp: &Path, node: &Path, api_port: u16) {
    let ca = cas.get("ca");
    let etcd_ca = cas.get("etcd-ca");

    // Wrong usages: apiserver signed with the client profile (no serverAuth), etcd-server with
    // the server-only profile (no clientAuth, which etcd's own gateway needs).
    let d = fresh_set(cas, tmp, "csr-usages", node, api_port);
    let (api_csr, api_crt) = req_paths("apiserver", &d, &d);
    let (etcd_csr, etcd_crt) = req_paths("etcd-server", &d, &d);
    ca.sign("client", &api_csr, &api_crt);
    etcd_ca.sign("server", &etcd_csr, &etcd_crt);
    assert_refused(
        node,
        &d,
        &[
            (&api_crt, "wrong usages for apiserver: it needs serverAuth"),
            (
                &etcd_crt,
                "wrong usages for etcd-server: it needs clientAuth",
            ),
        ],
        || {
            ca.sign("server", &api_csr, &api_crt);
            etcd_ca.sign("server_client", &etcd_csr, &etcd_crt);
        },
    );

    // Wrong key: the right CA, names and usages, but signed from a CSR made with another key.
    let d = fresh_set(cas, tmp, "csr-key", node, api_port);
    let other = tmp.join("csr-other-key");
    run_ok(
        kubepki()
            .args(["certs", "generate-csr", "apiserver", "--csr-dir"])
            .arg(&other)
            .args(node_flags(node, api_port)),
    );
    let (api_csr, api_crt) = req_paths("apiserver", &d, &d);
    let (other_csr, _) = req_paths("apiserver", &other, &other);
    ca.sign("server", &other_csr, &api_crt);
    assert_refused(node, &d, &[(&api_crt, "is not for the key in")], || {
        ca.sign("server", &api_csr, &api_crt)
    });

    // A space, this cluster's certificate, then a foreign one: Go's readers (kube-apiserver,
    // etcd) skip a block whose BEGIN line does not start a line, so they would serve the
    // foreign certificate. Refused, whichever block kubepki would have liked.
    let d = fresh_set(cas, tmp, "csr-envelope", node, api_port);
    let (api_csr, api_crt) = req_paths("apiserver", &d, &d);
    let good = fs::read(&api_crt).unwrap();
    cas.foreign.sign("server", &api_csr, &api_crt);
    let foreign = fs::read(&api_crt).unwrap();
    write_file(&api_crt, &[b" ".as_slice(), &good, &foreign].concat());
    assert_refused(
        node,
        &d,
        &[(
            &api_crt,
            "text that is not part of a PEM block at line 1 (byte 1)",
        )],
        || write_file(&api_crt, &good),
    );

    // Another CA with the cluster CA's very subject: only the signature tells them apart.
    // admin.conf's comes with the real ca.crt appended, as if it were the chain.
    let foreign_subject = openssl_text(&["x509", "-noout", "-subject", "-in"], &cas.foreign.crt());
    assert_eq!(
        foreign_subject,
        openssl_text(&["x509", "-noout", "-subject", "-in"], &ca.crt()),
        "the foreign CA must have the cluster CA's subject"
    );
    // And front-proxy-client signed by one of this cluster's CAs, but the wrong one.
    let d = fresh_set(cas, tmp, "csr-foreign", node, api_port);
    let (api_csr, api_crt) = req_paths("apiserver", &d, &d);
    let (admin_csr, admin_crt) = req_paths("admin.conf", &d, &d);
    let (fp_csr, fp_crt) = req_paths("front-proxy-client", &d, &d);
    cas.foreign.sign("server", &api_csr, &api_crt);
    cas.foreign.sign("client", &admin_csr, &admin_crt);
    ca.sign("client", &fp_csr, &fp_crt);
    let mut chain = fs::read(&admin_crt).unwrap();
    chain.extend(fs::read(ca.crt()).unwrap());
    write_file(&admin_crt, &chain);
    assert_eq!(
        openssl_text(&["x509", "-noout", "-issuer", "-in"], &api_crt).replace("issuer=", ""),
        foreign_subject.replace("subject=", ""),
        "the foreign certificate names the cluster CA as its issuer"
    );
    let by = |ca: &str| {
        format!(
            "not signed by the CA in {}",
            node.join("pki").join(ca).display()
        )
    };
    assert_refused(
        node,
        &d,
        &[
            (&api_crt, &by("ca.crt")),
            (&admin_crt, &by("ca.crt")),
            (&fp_crt, &by("front-proxy-ca.crt")),
        ],
        || {
            ca.sign("server", &api_csr, &api_crt);
            ca.sign("client", &admin_csr, &admin_crt);
            cas.get("front-proxy-ca").sign("client", &fp_csr, &fp_crt);
        },
    );
}

fn cluster_checks(c: &mut Cluster) {
    let super_admin = c.conf("super-admin.conf");
    let admin = c.conf("admin.conf");

    // etcd serves with the etcd CA's server certificate and accepts its healthcheck client,
    // and its JSON gateway works (it needs clientAuth on the server certificate).
    c.wait_etcd_healthy();
    let o = run_ok(
        curl_with_cert(
            &c.pki("etcd/ca.crt"),
            &c.pki("etcd/healthcheck-client.crt"),
            &c.pki("etcd/healthcheck-client.key"),
        )
        .args(["-X", "POST", "-d", r#"{"key":"Zm9v"}"#])
        .arg(format!("{}/v3/kv/range", c.etcd_url)),
    );
    let body = stdout(&o);
    assert!(
        body.contains("\"header\"") && !body.contains("\"code\""),
        "etcd's gateway /v3/kv/range:\n{body}"
    );

    // kube-apiserver comes up; super-admin.conf (system:masters) reads /readyz.
    c.wait_apiserver_ready();
    let o = run_ok(kctl(&super_admin).args(["get", "--raw", "/readyz"]));
    assert_eq!(stdout(&o).trim(), "ok", "/readyz as super-admin.conf");

    // admin.conf authenticates as kubernetes-admin in kubeadm:cluster-admins: forbidden until
    // the binding kubeadm creates exists, then cluster-admin.
    let o = kc(&admin, &["get", "namespaces"]);
    assert!(
        !o.status.success() && stderr(&o).contains("User \"kubernetes-admin\" cannot"),
        "admin.conf before the binding:\n{}",
        show(&o)
    );
    create_cluster_admins_binding(&super_admin);
    wait_lists_namespaces(
        "admin.conf: get namespaces lists kube-system",
        &admin,
        &["kube-system"],
    );
    assert_running(&mut c.etcd);
    assert_running(&mut c.apiserver);
}

/// The repaired foreign set is really imported (with a backup of what it replaces) and the
/// servers go on working with the new files.
fn repaired_import_is_installed(tmp: &Path, node: &Path, c: &mut Cluster) {
    let d = tmp.join("csr-foreign");
    let backups = tmp.join("backups");
    let before = node_snapshot(node);
    let old_api = fs::read(node.join("pki/apiserver.crt")).unwrap();
    let out = run_ok(
        kubepki()
            .args(["certs", "import", "--csr-dir"])
            .arg(&d)
            .arg("--backup-dir")
            .arg(&backups)
            .args(dirs_flags(node)),
    );
    let changed = diff(&before, &node_snapshot(node));
    for (name, rel, kubeconfig, ..) in SIGNED {
        let target = if kubeconfig {
            node.join(rel)
        } else {
            node.join("pki").join(format!("{rel}.crt"))
        };
        assert!(
            changed.contains(&format!("changed {}", target.display())),
            "{name} should have been replaced:\n{changed:#?}\n{}",
            show(&out)
        );
    }
    // kubeadm's modes: certificates 0644, keys and kubeconfigs 0600.
    for (name, rel, kubeconfig, ..) in SIGNED {
        let files: Vec<(PathBuf, u32)> = if kubeconfig {
            vec![(node.join(rel), 0o600)]
        } else {
            let base = node.join("pki").join(rel);
            vec![
                (base.with_extension("crt"), 0o644),
                (base.with_extension("key"), 0o600),
            ]
        };
        for (f, mode) in files {
            let m = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{name}: mode of {} is {m:o}", f.display());
        }
    }
    let (_, api_crt) = req_paths("apiserver", &d, &d);
    assert_eq!(
        fs::read(node.join("pki/apiserver.crt")).unwrap(),
        fs::read(&api_crt).unwrap()
    );
    assert!(
        snapshot(&backups).iter().any(|(_, c, _)| *c == old_api),
        "{} holds no copy of the replaced apiserver.crt",
        backups.display()
    );
    wait_lists_namespaces(
        "admin.conf (renewed) lists namespaces",
        &c.conf("admin.conf"),
        &["default"],
    );
    let o = run_ok(kctl(&c.conf("super-admin.conf")).args(["get", "--raw", "/readyz"]));
    assert_eq!(stdout(&o).trim(), "ok");
    assert_running(&mut c.etcd);
    assert_running(&mut c.apiserver);
}
