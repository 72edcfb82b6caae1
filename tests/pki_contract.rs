//! The PKI contract (kubeadm's names, CNs, groups, SANs, usages, modes), checked with openssl (and kubectl for kubeconfigs) as
//! independent judges, for every key algorithm.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::pki::{kubepki_in, leaf};
use common::*;

/// What a leaf must be; where its files are and which CA signs it is in `common::pki`.
struct Expect {
    name: &'static str,
    subject: &'static str,
    purposes: &'static [&'static str],
    eku: &'static str,
    dns: &'static [&'static str],
    ips: &'static [&'static str],
}

const NODE: &str = "cp-1";
const IP: &str = "192.0.2.10";

/// kubeadm's PKI, spelled out for node cp-1 at 192.0.2.10 with endpoint cp.example.com:6443 and one
/// extra SAN; openssl prints subjects as "O = ..., CN = ...".
const LEAVES: &[Expect] = &[
    Expect {
        name: "apiserver",
        subject: "CN = kube-apiserver",
        purposes: &["sslserver"],
        eku: "TLS Web Server Authentication",
        dns: &[
            "cp-1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "cp.example.com",
            "api.example.com",
        ],
        ips: &["10.96.0.1", "192.0.2.10", "203.0.113.9"],
    },
    Expect {
        name: "apiserver-kubelet-client",
        subject: "O = kubeadm:cluster-admins, CN = kube-apiserver-kubelet-client",
        purposes: &["sslclient"],
        eku: "TLS Web Client Authentication",
        dns: &[],
        ips: &[],
    },
    Expect {
        name: "apiserver-etcd-client",
        subject: "CN = kube-apiserver-etcd-client",
        purposes: &["sslclient"],
        eku: "TLS Web Client Authentication",
        dns: &[],
        ips: &[],
    },
    Expect {
        name: "front-proxy-client",
        subject: "CN = front-proxy-client",
        purposes: &["sslclient"],
        eku: "TLS Web Client Authentication",
        dns: &[],
        ips: &[],
    },
    Expect {
        name: "etcd-server",
        subject: "CN = cp-1",
        purposes: &["sslserver", "sslclient"],
        eku: "TLS Web Server Authentication, TLS Web Client Authentication",
        dns: &["cp-1", "localhost"],
        ips: &["192.0.2.10", "127.0.0.1", "0:0:0:0:0:0:0:1"],
    },
    Expect {
        name: "etcd-peer",
        subject: "CN = cp-1",
        purposes: &["sslserver", "sslclient"],
        eku: "TLS Web Server Authentication, TLS Web Client Authentication",
        dns: &["cp-1", "localhost"],
        ips: &["192.0.2.10", "127.0.0.1", "0:0:0:0:0:0:0:1"],
    },
    Expect {
        name: "etcd-healthcheck-client",
        subject: "CN = kube-etcd-healthcheck-client",
        purposes: &["sslclient"],
        eku: "TLS Web Client Authentication",
        dns: &[],
        ips: &[],
    },
];

const CAS: &[(&str, &str)] = &[
    ("ca", "CN = kubernetes"),
    ("front-proxy-ca", "CN = front-proxy-ca"),
    ("etcd/ca", "CN = etcd-ca"),
];

const KUBECONFIGS: &[(&str, &str, &str)] = &[
    (
        "admin.conf",
        "O = kubeadm:cluster-admins, CN = kubernetes-admin",
        "https://cp.example.com:6443",
    ),
    (
        "super-admin.conf",
        "O = system:masters, CN = kubernetes-super-admin",
        "https://cp.example.com:6443",
    ),
    (
        "controller-manager.conf",
        "CN = system:kube-controller-manager",
        "https://192.0.2.10:6443",
    ),
    (
        "scheduler.conf",
        "CN = system:kube-scheduler",
        "https://192.0.2.10:6443",
    ),
    (
        "kubelet.conf",
        "O = system:nodes, CN = system:node:cp-1",
        "https://cp.example.com:6443",
    ),
];

fn openssl(args: &[&str], input_file: &Path) -> String {
    let mut c = Command::new("openssl");
    c.args(args).arg("-in").arg(input_file);
    stdout(&run_ok(&mut c))
}

fn x509_field(cert: &Path, ext: &str) -> String {
    // "-ext name" prints a header line then the value, indented.
    openssl(&["x509", "-noout", "-ext", ext], cert)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn pubkey_of_cert(cert: &Path) -> String {
    openssl(&["x509", "-noout", "-pubkey"], cert)
}

fn pubkey_of_key(key: &Path) -> String {
    openssl(&["pkey", "-pubout"], key)
}

fn check_key(key: &Path, alg: &str) {
    assert_eq!(mode(key), 0o600, "{} mode", key.display());
    let pem = fs::read_to_string(key).unwrap();
    let text = openssl(&["pkey", "-noout", "-text"], key);
    match alg {
        "RSA-2048" | "RSA-3072" | "RSA-4096" => {
            assert!(
                pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
                "{}: kubeadm writes PKCS#1",
                key.display()
            );
            let bits = &alg[4..];
            assert!(
                text.contains(&format!("Private-Key: ({bits} bit")),
                "{}: {text:.60}",
                key.display()
            );
        }
        "ECDSA-P256" | "ECDSA-P384" => {
            assert!(
                pem.starts_with("-----BEGIN EC PRIVATE KEY-----"),
                "{}: kubeadm writes SEC1",
                key.display()
            );
            let curve = if alg == "ECDSA-P256" {
                "prime256v1"
            } else {
                "secp384r1"
            };
            assert!(
                text.contains(&format!("ASN1 OID: {curve}")),
                "{}: curve",
                key.display()
            );
        }
        _ => unreachable!(),
    }
}

fn verify(ca: &Path, cert: &Path, purpose: &str) {
    let out = Command::new("openssl")
        .args(["verify", "-purpose", purpose, "-CAfile"])
        .arg(ca)
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify -purpose {purpose} {}: {}{}",
        cert.display(),
        stdout(&out),
        stderr(&out)
    );
}

fn san_sets(cert: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = x509_field(cert, "subjectAltName");
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for part in text.lines().skip(1).flat_map(|l| l.split(',')) {
        let p = part.trim();
        if let Some(d) = p.strip_prefix("DNS:") {
            dns.insert(d.to_string());
        } else if let Some(i) = p.strip_prefix("IP Address:") {
            ips.insert(i.to_string());
        } else if !p.is_empty() {
            panic!("{}: unexpected SAN {p}", cert.display());
        }
    }
    (dns, ips)
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn subject(cert: &Path) -> String {
    openssl(&["x509", "-noout", "-subject"], cert)
        .trim()
        .trim_start_matches("subject=")
        .to_string()
}

fn days_valid(cert: &Path) -> i64 {
    let out = openssl(&["x509", "-noout", "-startdate", "-enddate"], cert);
    let parse = |prefix: &str| {
        let line = out.lines().find(|l| l.starts_with(prefix)).unwrap();
        let d = line.trim_start_matches(prefix);
        let o = run_ok(Command::new("date").args(["-u", "-d", d, "+%s"]));
        stdout(&o).trim().parse::<i64>().unwrap()
    };
    (parse("notAfter=") - parse("notBefore=")) / 86400
}

fn contract(alg: &str) {
    ensure_openssl();
    let dir = scratch();
    let d = dir.path();
    let out = init_node(
        d,
        NODE,
        IP.parse().unwrap(),
        &[
            "--control-plane-endpoint",
            "cp.example.com:6443",
            "--apiserver-cert-extra-sans",
            "api.example.com,203.0.113.9",
            "--encryption-algorithm",
            alg,
        ],
    );
    assert!(
        stdout(&out).contains(&format!("Generating 16 {alg} keys")),
        "{}",
        stdout(&out)
    );
    let pki = d.join("pki");

    for (base, subj) in CAS {
        let crt = pki.join(format!("{base}.crt"));
        let key = pki.join(format!("{base}.key"));
        assert_eq!(mode(&crt), 0o644, "{} mode", crt.display());
        check_key(&key, alg);
        assert_eq!(subject(&crt), *subj);
        assert_eq!(
            pubkey_of_cert(&crt),
            pubkey_of_key(&key),
            "{base}: key matches cert"
        );
        let bc = x509_field(&crt, "basicConstraints");
        assert!(
            bc.contains("critical") && bc.contains("CA:TRUE"),
            "{base}: {bc}"
        );
        let ku = x509_field(&crt, "keyUsage");
        assert!(ku.contains("critical"), "{base}: {ku}");
        assert!(
            ku.contains("Digital Signature, Key Encipherment, Certificate Sign"),
            "{base}: {ku}"
        );
        verify(&crt, &crt, "any");
        assert_eq!(days_valid(&crt), 3650, "{base}: 10 years (+5 min backdate)");
    }

    for e in LEAVES {
        let l = leaf(e.name).unwrap();
        let (crt, key, ca) = (d.join(l.crt()), d.join(l.key()), d.join(l.issuer));
        assert_eq!(mode(&crt), 0o644, "{} mode", crt.display());
        check_key(&key, alg);
        assert_eq!(
            pubkey_of_cert(&crt),
            pubkey_of_key(&key),
            "{}: key matches cert",
            e.name
        );
        assert_eq!(subject(&crt), e.subject, "{} subject", e.name);
        for p in e.purposes {
            verify(&ca, &crt, p);
        }
        let ku = x509_field(&crt, "keyUsage");
        assert!(
            ku.contains("critical") && ku.contains("Digital Signature, Key Encipherment"),
            "{}: {ku}",
            e.name
        );
        assert!(
            !ku.contains("Certificate Sign"),
            "{}: a leaf must not sign certificates",
            e.name
        );
        let eku = x509_field(&crt, "extendedKeyUsage");
        assert_eq!(
            eku.lines().nth(1).map(str::trim),
            Some(e.eku),
            "{} EKU",
            e.name
        );
        let bc = x509_field(&crt, "basicConstraints");
        assert!(!bc.contains("CA:TRUE"), "{}: {bc}", e.name);
        let (dns, ips) = san_sets(&crt);
        assert_eq!(dns, set(e.dns), "{} DNS SANs", e.name);
        assert_eq!(ips, set(e.ips), "{} IP SANs", e.name);
        assert_eq!(
            days_valid(&crt),
            365,
            "{}: 1 year (+5 min backdate)",
            e.name
        );
        // A leaf is not trusted by a CA that did not sign it.
        let other = if l.issuer == "pki/ca.crt" {
            "front-proxy-ca"
        } else {
            "ca"
        };
        let bad = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(pki.join(format!("{other}.crt")))
            .arg(&crt)
            .output()
            .unwrap();
        assert!(
            !bad.status.success(),
            "{} must not verify against {other}",
            e.name
        );
    }

    // sa.key / sa.pub: a matching pair.
    check_key(&pki.join("sa.key"), alg);
    assert_eq!(mode(&pki.join("sa.pub")), 0o644);
    assert_eq!(
        fs::read_to_string(pki.join("sa.pub")).unwrap(),
        pubkey_of_key(&pki.join("sa.key"))
    );

    // Kubeconfigs, read back by kubectl itself.
    let ca_pem = fs::read_to_string(pki.join("ca.crt")).unwrap();
    for (file, subj, server) in KUBECONFIGS {
        let kc = d.join(file);
        assert_eq!(mode(&kc), 0o600, "{file} mode");
        let view = |path: &str| {
            let o = run_ok(kubectl(&kc).args([
                "config",
                "view",
                "--raw",
                "-o",
                &format!("jsonpath={path}"),
            ]));
            stdout(&o)
        };
        assert_eq!(view("{.clusters[0].name}"), "kubernetes");
        assert_eq!(
            view("{.clusters[0].cluster.server}"),
            *server,
            "{file} server"
        );
        let user = view("{.users[0].name}");
        assert_eq!(view("{.current-context}"), format!("{user}@kubernetes"));
        let b64 = |s: String| {
            use std::io::Write;
            let mut c = Command::new("base64")
                .arg("-d")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
        };
        assert_eq!(
            b64(view("{.clusters[0].cluster.certificate-authority-data}")),
            ca_pem,
            "{file} CA data"
        );
        let cert = d.join(format!("{file}.crt"));
        let key = d.join(format!("{file}.key"));
        fs::write(&cert, b64(view("{.users[0].user.client-certificate-data}"))).unwrap();
        fs::write(&key, b64(view("{.users[0].user.client-key-data}"))).unwrap();
        assert_eq!(subject(&cert), *subj, "{file} subject");
        assert!(
            subj.ends_with(&format!("CN = {user}")),
            "{file}: user name is the CN"
        );
        verify(&pki.join("ca.crt"), &cert, "sslclient");
        assert_eq!(
            pubkey_of_cert(&cert),
            pubkey_of_key(&key),
            "{file}: key matches cert"
        );
        let pem = fs::read_to_string(&key).unwrap();
        assert!(pem.contains(if alg.starts_with("RSA") {
            "RSA PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        }));
    }
}

#[test]
fn contract_rsa_2048() {
    contract("RSA-2048");
}

#[test]
fn contract_rsa_3072() {
    contract("RSA-3072");
}

#[test]
fn contract_rsa_4096() {
    contract("RSA-4096");
}

#[test]
fn contract_ecdsa_p256() {
    contract("ECDSA-P256");
}

#[test]
fn contract_ecdsa_p384() {
    contract("ECDSA-P384");
}

/// A second run changes nothing and says it reuses every file.
#[test]
fn init_is_idempotent_and_never_overwrites() {
    let dir = fresh_pki(NODE, IP, &[]);
    let d = dir.path();
    let before = snapshot(d);
    let out = init_ecdsa(d, NODE, IP, &[]);
    assert_eq!(snapshot(d), before);
    let text = stdout(&out);
    assert!(!text.contains("Generated"), "{text}");
    assert_eq!(
        text.matches("Using the existing").count(),
        3 + 7 + 1,
        "{text}"
    );
    assert_eq!(
        text.matches("Using existing kubeconfig file").count(),
        5,
        "{text}"
    );
}

/// An existing CA signs what is missing; a removed leaf is re-created under the same CA.
#[test]
fn existing_ca_signs_missing_files() {
    let dir = fresh_pki(NODE, IP, &[]);
    let d = dir.path();
    let ca_before = fs::read(d.join("pki/ca.crt")).unwrap();
    fs::remove_file(d.join("pki/apiserver.crt")).unwrap();
    fs::remove_file(d.join("pki/apiserver.key")).unwrap();
    fs::remove_file(d.join("admin.conf")).unwrap();
    let out = init_ecdsa(d, NODE, IP, &[]);
    let text = stdout(&out);
    assert!(
        text.contains("Generated \"apiserver\" certificate and key"),
        "{text}"
    );
    assert!(
        text.contains("Wrote \"admin.conf\" kubeconfig file"),
        "{text}"
    );
    assert_eq!(fs::read(d.join("pki/ca.crt")).unwrap(), ca_before);
    verify(
        &d.join("pki/ca.crt"),
        &d.join("pki/apiserver.crt"),
        "sslserver",
    );
}

/// --dry-run prints the plan and writes nothing.
#[test]
fn dry_run_writes_nothing() {
    let dir = scratch();
    let d = dir.path();
    let out = run_ok(&mut kubepki_in(
        d,
        &[
            "init",
            "--dry-run",
            "--node-name",
            "n1",
            "--apiserver-advertise-address",
            "10.0.0.1",
        ],
    ));
    let text = stdout(&out);
    assert!(
        text.contains("[dry-run] [certs] Would generate \"ca\" certificate and key"),
        "{text}"
    );
    assert!(
        text.contains("Would write \"admin.conf\" kubeconfig file"),
        "{text}"
    );
    assert!(snapshot(d).is_empty(), "dry run wrote files");
}

/// A kubeadm v1beta4 config file drives the same settings as flags.
#[test]
fn config_file_drives_init() {
    let dir = scratch();
    let d = dir.path();
    let cfg = d.join("kubeadm.yaml");
    write_file(
        &cfg,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cfg-node
localAPIEndpoint:
  advertiseAddress: 10.1.2.3
  bindPort: 7443
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
certificatesDir: {pki}
clusterName: prod
encryptionAlgorithm: ECDSA-P384
certificateValidityPeriod: 720h
caCertificateValidityPeriod: 43800h
networking:
  serviceSubnet: 10.200.0.0/16
  dnsDomain: prod.local
apiServer:
  certSANs: [api.prod.example]
etcd:
  external:
    endpoints: [https://10.9.9.9:2379]
",
            pki = d.join("pki").display()
        )
        .as_bytes(),
    );
    let mut c = kubepki();
    c.arg("init")
        .arg("--config")
        .arg(&cfg)
        .arg("--kubeconfig-dir")
        .arg(d);
    run_ok(&mut c);
    let pki = d.join("pki");
    assert!(
        !pki.join("etcd").exists(),
        "external etcd: no etcd certificates"
    );
    assert!(!pki.join("apiserver-etcd-client.crt").exists());
    let (dns, ips) = san_sets(&pki.join("apiserver.crt"));
    assert!(
        dns.contains("kubernetes.default.svc.prod.local")
            && dns.contains("api.prod.example")
            && dns.contains("cfg-node")
    );
    assert!(
        ips.contains("10.200.0.1") && ips.contains("10.1.2.3"),
        "{ips:?}"
    );
    assert_eq!(days_valid(&pki.join("apiserver.crt")), 30);
    assert_eq!(days_valid(&pki.join("ca.crt")), 1825);
    check_key(&pki.join("apiserver.key"), "ECDSA-P384");
    let o = run_ok(kubectl(&d.join("admin.conf")).args([
        "config",
        "view",
        "-o",
        "jsonpath={.clusters[0].name} {.clusters[0].cluster.server}",
    ]));
    assert_eq!(stdout(&o), "prod https://10.1.2.3:7443");
}
