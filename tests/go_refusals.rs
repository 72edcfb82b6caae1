//! Files Go's crypto/x509 refuses or reads differently are refused by kubepki, naming the file,
//! before anything is installed (regressions of an adversarial review):
//! - `certs import` of an apiserver certificate carrying the SAN extension twice (Go refuses
//!   the certificate, so kube-apiserver would not start);
//! - `certs import` of a version 1 apiserver certificate carrying extensions (Go ignores them:
//!   no SANs, no serverAuth);
//! - `init` with a ca.key whose curve is given by explicit parameters, in SEC1 or PKCS#8, or not
//!   named at all (Go: "unknown elliptic curve", so kube-controller-manager's signer could not
//!   load the key kubepki signed everything with).
//!
//! The certificates are signed by openssl with the cluster CA's key; only their structure is
//! changed first (openssl cannot write these shapes), then re-signed with `openssl dgst`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::pki::{IP, NODE, init_cmd, kubepki_in};
use common::*;

/// A DER element's header length and total length.
fn span(b: &[u8]) -> (usize, usize) {
    if b[1] & 0x80 == 0 {
        return (2, 2 + usize::from(b[1]));
    }
    let n = usize::from(b[1] & 0x7f);
    let len = b[2..2 + n].iter().fold(0, |a, &x| a * 256 + usize::from(x));
    (2 + n, 2 + n + len)
}

/// The elements inside a constructed element.
fn children(el: &[u8]) -> Vec<Vec<u8>> {
    let (hdr, end) = span(el);
    let mut body = &el[hdr..end];
    let mut out = Vec::new();
    while !body.is_empty() {
        let (_, e) = span(body);
        out.push(body[..e].to_vec());
        body = &body[e..];
    }
    out
}

fn wrap(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    let body = parts.concat();
    let mut out = vec![tag];
    let n = body.len();
    if n < 128 {
        out.push(n as u8);
    } else if n < 256 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend(body);
    out
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = fs::read_to_string(path).unwrap();
    kubepki_pki::crypto::pem::parse_one(text.as_bytes(), "CERTIFICATE").unwrap()
}

/// Rewrites the TBSCertificate of the PEM certificate at `path` with `edit` and re-signs it
/// with `ca_key` (openssl dgst, same algorithm: ecdsa-with-SHA256).
fn rewrite(path: &Path, ca_key: &Path, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let cert = children(&pem_der(path));
    let mut tbs = children(&cert[0]);
    edit(&mut tbs);
    let tbs = wrap(0x30, &tbs);
    let tbs_file = path.with_extension("tbs");
    fs::write(&tbs_file, &tbs).unwrap();
    let sig = run_ok(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(ca_key)
            .arg(&tbs_file),
    )
    .stdout;
    fs::remove_file(&tbs_file).unwrap();
    let der = wrap(0x30, &[tbs, cert[1].clone(), wrap(0x03, &[vec![0], sig])]);
    fs::write(path, kubepki_pki::crypto::pem::encode("CERTIFICATE", &der)).unwrap();
}

/// A request for the node's apiserver certificate in `<d>/<name>`, signed by the cluster CA
/// with openssl as an external CA would (server profile, the node's SANs).
fn signed_apiserver(d: &Path, name: &str) -> (PathBuf, PathBuf) {
    let csr_dir = d.join(name);
    run_ok(
        kubepki_in(
            d,
            &[
                "certs",
                "generate-csr",
                "apiserver",
                "--node-name",
                NODE,
                "--apiserver-advertise-address",
                IP,
            ],
        )
        .arg("--csr-dir")
        .arg(&csr_dir),
    );
    let crt = csr_dir.join("apiserver.crt");
    openssl_sign(
        &csr_dir.join("apiserver.csr"),
        (&d.join("pki/ca.crt"), &d.join("pki/ca.key")),
        "keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:n1, DNS:kubernetes, DNS:kubernetes.default, \
         DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, \
         IP:10.96.0.1, IP:10.0.0.1\n",
        300,
        "4660",
        &crt,
    );
    (csr_dir, crt)
}

/// `certs import --csr-dir dir` fails naming `file` and `problem`, and changes nothing.
fn import_refused(d: &Path, dir: &Path, file: &Path, problem: &str) {
    let before = snapshot(d);
    let out = run_fail(
        kubepki_in(d, &["certs", "import"])
            .arg("--csr-dir")
            .arg(dir),
    );
    assert_no_panic(&out, "certs import");
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains(&file.display().to_string()) && l.contains(problem)),
        "import should refuse {} with {problem:?}:\n{err}",
        file.display()
    );
    assert!(err.contains("nothing was installed"), "{err}");
    assert!(
        snapshot(d) == before,
        "a refused import changed files:\n{err}"
    );
}

#[test]
fn import_refuses_duplicate_sans_and_v1_extensions() {
    ensure_openssl();
    let dir = fresh_pki(NODE, IP, &[]);
    let d = dir.path();
    let ca_key = d.join("pki/ca.key");

    // The untouched openssl certificate is accepted: the refusals below come from the edits.
    let (good, _) = signed_apiserver(d, "csr-good");
    import_would_install(d, &good);

    let (dup, crt) = signed_apiserver(d, "csr-dup");
    rewrite(&crt, &ca_key, |tbs| {
        let exts = tbs.last_mut().unwrap();
        let mut list = children(&children(exts)[0]);
        let san = list
            .iter()
            .find(|e| e[2..7] == [0x06, 0x03, 0x55, 0x1d, 0x11])
            .unwrap()
            .clone();
        // A second SAN extension naming another host.
        let extra = wrap(
            0x30,
            &[
                vec![0x06, 0x03, 0x55, 0x1d, 0x11],
                wrap(
                    0x04,
                    &[wrap(0x30, &[wrap(0x82, &[b"evil.example".to_vec()])])],
                ),
            ],
        );
        assert_ne!(san, extra);
        list.push(extra);
        *exts = wrap(0xa3, &[wrap(0x30, &list)]);
    });
    import_refused(d, &dup, &crt, "extension 2.5.29.17 appears twice");

    let (v1, crt) = signed_apiserver(d, "csr-v1");
    rewrite(&crt, &ca_key, |tbs| {
        assert_eq!(tbs[0], [0xa0, 0x03, 0x02, 0x01, 0x02], "a v3 certificate");
        tbs.remove(0);
    });
    import_refused(
        d,
        &v1,
        &crt,
        "a version 1 certificate with extensions: Go ignores extensions before version 3",
    );
}

#[test]
fn init_refuses_a_ca_key_go_cannot_load() {
    ensure_openssl();
    let tmp = scratch();
    let named = tmp.path().join("named.key");
    let explicit = tmp.path().join("explicit.key");
    openssl_p256_key(&named);
    run_ok(
        Command::new("openssl")
            .args(["ec", "-param_enc", "explicit", "-in"])
            .arg(&named)
            .arg("-out")
            .arg(&explicit),
    );
    let pkcs8 = run_ok(
        Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
            .arg(&explicit),
    )
    .stdout;
    // SEC1 without the [0] curve: Go's ParseECPrivateKey cannot tell the curve.
    let sec1 =
        kubepki_pki::crypto::pem::parse_one(&fs::read(&named).unwrap(), "EC PRIVATE KEY").unwrap();
    let no_curve: Vec<Vec<u8>> = children(&sec1)
        .into_iter()
        .filter(|e| e[0] != 0xa0)
        .collect();
    let no_curve = kubepki_pki::crypto::pem::encode("EC PRIVATE KEY", &wrap(0x30, &no_curve));
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "SEC1, explicit parameters",
            fs::read(&explicit).unwrap(),
            "explicit curve parameters",
        ),
        (
            "PKCS#8, explicit parameters",
            pkcs8,
            "explicit curve parameters",
        ),
        (
            "SEC1 without a curve",
            no_curve.into_bytes(),
            "no named curve",
        ),
    ];
    for (what, key, problem) in cases {
        let d = tmp.path().join(what.replace([' ', ',', '#'], "-"));
        let pki = d.join("pki");
        fs::create_dir_all(&pki).unwrap();
        // The CA certificate itself is well-formed (made from the named-curve form of the key).
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-new",
                    "-subj",
                    "/CN=kubernetes",
                    "-days",
                    "3650",
                ])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args([
                    "-addext",
                    "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
                ])
                .arg("-key")
                .arg(&named)
                .arg("-out")
                .arg(pki.join("ca.crt")),
        );
        write_file(&pki.join("ca.key"), &key);
        let out = run_fail(&mut init_cmd(&d, &[]));
        assert_no_panic(&out, what);
        let err = stderr(&out);
        let key_path = pki.join("ca.key").display().to_string();
        assert!(
            err.lines()
                .any(|l| l.contains(&key_path) && l.contains(problem)),
            "{what}: init should refuse {key_path} with {problem:?}:\n{err}"
        );
        let left: Vec<_> = fs::read_dir(&pki)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{what}: init wrote files: {left:?}");
        // The same CA with its key named by curve is taken as it is.
        fs::copy(&named, pki.join("ca.key")).unwrap();
        run_ok(&mut init_cmd(&d, &[]));
    }
}

/// Signs `csr` into `out` with the CA in `ca_crt`/`ca_key` and the extensions in `ext`.
/// A P-256 key in SEC1 with the curve named, as `openssl ecparam -genkey` writes it.
fn openssl_p256_key(out: &Path) {
    let mut c = Command::new("openssl");
    c.args([
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
    ]);
    run_ok(c.arg(out));
}

/// `certs import --dry-run --csr-dir dir` accepts what is there.
fn import_would_install(d: &Path, dir: &Path) {
    let out = run_ok(
        kubepki_in(d, &["certs", "import", "--dry-run"])
            .arg("--csr-dir")
            .arg(dir),
    );
    assert!(
        stdout(&out).contains("would be installed"),
        "{}",
        stdout(&out)
    );
}

fn sign_300d(csr: &Path, ca_crt: &Path, ca_key: &Path, ext: &str, out: &Path) {
    let serial = (1000 + out.as_os_str().len()).to_string();
    openssl_sign(csr, (ca_crt, ca_key), ext, 300, &serial, out);
}

/// An intermediate CA named `cn` in `dir`, signed by `parent` with the extensions `ext`.
fn intermediate(dir: &Path, cn: &str, parent: (&Path, &Path), ext: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (
        dir.join(format!("{cn}.key")),
        dir.join(format!("{cn}.csr")),
        dir.join(format!("{cn}.pem")),
    );
    openssl_p256_key(&key);
    run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-subj"])
            .arg(format!("/CN={cn}"))
            .arg("-key")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    sign_300d(&csr, parent.0, parent.1, ext, &crt);
    (crt, key)
}

const SERVER_LEAF: &str = "keyUsage = critical, digitalSignature, keyEncipherment\n\
     extendedKeyUsage = serverAuth\n\
     subjectAltName = DNS:n1, DNS:kubernetes, DNS:kubernetes.default, \
     DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, \
     IP:10.96.0.1, IP:10.0.0.1\n";

/// Defect (second review): `certs import` checked only "each certificate signed by the next,
/// which is a CA", so it installed chains Go's Verify refuses (too many intermediates for a
/// pathLenConstraint; an intermediate whose extended key usages exclude the leaf's), and a
/// name-constrained CA made init issue certificates Go then rejects.
#[test]
fn chains_and_cas_go_would_not_verify_are_refused() {
    ensure_openssl();
    let dir = fresh_pki(NODE, IP, &[]);
    let d = dir.path();
    let ca = (d.join("pki/ca.crt"), d.join("pki/ca.key"));
    let ca = (ca.0.as_path(), ca.1.as_path());
    let plain_ca = "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, digitalSignature\n";

    // One plain intermediate: fine (the control).
    let (ok_dir, ok_crt) = signed_apiserver(d, "csr-chain-ok");
    let (i, ik) = intermediate(&ok_dir, "inter", ca, plain_ca);
    sign_300d(&ok_dir.join("apiserver.csr"), &i, &ik, SERVER_LEAF, &ok_crt);
    write_file(
        &ok_crt,
        &[fs::read(&ok_crt).unwrap(), fs::read(&i).unwrap()].concat(),
    );
    import_would_install(d, &ok_dir);

    // pathlen:0 on the first intermediate, a second one below it.
    let (pl_dir, pl_crt) = signed_apiserver(d, "csr-pathlen");
    let (i1, i1k) = intermediate(
        &pl_dir,
        "i1",
        ca,
        "basicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign\n",
    );
    let (i2, i2k) = intermediate(&pl_dir, "i2", (&i1, &i1k), plain_ca);
    sign_300d(
        &pl_dir.join("apiserver.csr"),
        &i2,
        &i2k,
        SERVER_LEAF,
        &pl_crt,
    );
    write_file(
        &pl_crt,
        &[
            fs::read(&pl_crt).unwrap(),
            fs::read(&i2).unwrap(),
            fs::read(&i1).unwrap(),
        ]
        .concat(),
    );
    import_refused(d, &pl_dir, &pl_crt, "allows 0 intermediate(s) below it");

    // An intermediate for client certificates only, signing a serving certificate.
    let (eku_dir, eku_crt) = signed_apiserver(d, "csr-eku");
    let (ic, ick) = intermediate(
        &eku_dir,
        "clients",
        ca,
        &format!("{plain_ca}extendedKeyUsage = clientAuth\n"),
    );
    sign_300d(
        &eku_dir.join("apiserver.csr"),
        &ic,
        &ick,
        SERVER_LEAF,
        &eku_crt,
    );
    write_file(
        &eku_crt,
        &[fs::read(&eku_crt).unwrap(), fs::read(&ic).unwrap()].concat(),
    );
    import_refused(d, &eku_dir, &eku_crt, "does not allow serverAuth");

    // A name-constrained CA as the cluster CA: init refuses it, naming ca.crt.
    let nc = scratch();
    let pki = nc.path().join("pki");
    fs::create_dir_all(&pki).unwrap();
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-subj",
                "/CN=kubernetes",
                "-days",
                "3650",
                "-keyout",
            ])
            .arg(pki.join("ca.key"))
            .arg("-out")
            .arg(pki.join("ca.crt"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,digitalSignature"])
            .args([
                "-addext",
                "nameConstraints=critical,permitted;DNS:.example.com",
            ]),
    );
    let before = snapshot(nc.path());
    let out = run_fail(&mut init_cmd(nc.path(), &[]));
    let err = stderr(&out);
    assert!(
        err.contains(&pki.join("ca.crt").display().to_string())
            && err.contains("name-constrained CA"),
        "{err}"
    );
    assert!(snapshot(nc.path()) == before, "init wrote files:\n{err}");
}
