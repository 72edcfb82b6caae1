//! `kubepki ca rotate` on PKIs made by `kubepki init`, without servers (the rotation of a
//! running cluster is `ca_rotation_cluster.rs`):
//!
//! - every step leaves a PKI where every leaf and kubeconfig client certificate verifies
//!   (openssl) against its CA file, every kubeconfig trusts exactly that file, and the phases
//!   move trust -> switch -> finish to a PKI with no trace of the old CAs or SA key;
//! - rollback from switch and from trust returns to the old CAs (CA files byte-identical);
//! - the new CAs travel to a second control-plane node encrypted, and only with the right key;
//! - the controller-manager manifest's signer flags move to ca-signer.* and back, byte-exact;
//! - bad input (not a CA, mismatched key, a CA too short-lived, steps out of order, a hand-edited
//!   CA file, a kubeconfig trusting a third CA, an old-CA kubelet certificate at finish)
//!   is refused with the file named and nothing changed;
//! - SIGKILL after every file operation of every step: the next command leaves the PKI wholly
//!   before or wholly after the step, consistent, and the rotation then completes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::pki::*;
use common::*;
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::key::{PrivateKey, public_keys_from_pem};
use kubepki_pki::model::kubeconfig;

const NOW: &str = "2026-06-01T00:00:00Z";
const KUBECONFIGS: &[&str] = &[
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "kubelet.conf",
];
/// CA file -> the leaves it signs (relative to the kubeconfig dir).
const CAS: &[(&str, &[&str])] = &[
    ("pki/ca", &["pki/apiserver", "pki/apiserver-kubelet-client"]),
    ("pki/front-proxy-ca", &["pki/front-proxy-client"]),
    (
        "pki/etcd/ca",
        &[
            "pki/etcd/server",
            "pki/etcd/peer",
            "pki/etcd/healthcheck-client",
            "pki/apiserver-etcd-client",
        ],
    ),
];

fn rotate(d: &Path, args: &[&str]) -> Command {
    let mut full = vec!["ca", "rotate"];
    full.extend_from_slice(args);
    let mut c = kubepki_in(d, &full);
    c.args(["--now", NOW, "--kubelet-dir"])
        .arg(d.join("kubelet"));
    c
}

fn rotate_ok(d: &Path, args: &[&str]) -> Output {
    run_ok(&mut rotate(d, args))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn certs(path: &Path) -> Vec<Certificate> {
    Certificate::from_pem_chain(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ders(path: &Path) -> Vec<Vec<u8>> {
    certs(path).iter().map(|c| c.der().to_vec()).collect()
}

/// openssl's verdict on `leaf` against the CA file `ca` (all of its certificates trusted).
fn openssl_verifies(ca: &Path, leaf: &Path) -> bool {
    let o = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(leaf)
        .output()
        .unwrap();
    o.status.success()
}

/// Whether every file of the PKI in `d` fits with the others: each leaf verifies against its
/// CA file and its key matches; each kubeconfig embeds exactly ca.crt and its client
/// certificate verifies against it; sa.pub's first key is sa.key's. `Err` says what does not.
fn consistent(d: &Path, with_openssl: bool) -> Result<(), String> {
    for (ca, leaves) in CAS {
        let ca_file = d.join(format!("{ca}.crt"));
        let chain = certs(&ca_file);
        let ca_key = PrivateKey::from_pem(&fs::read(d.join(format!("{ca}.key"))).unwrap()).unwrap();
        if !ca_key.matches_public_key(chain[0].public_key_der()) {
            return Err(format!("{ca}.key is not the first certificate's"));
        }
        for l in *leaves {
            let crt = d.join(format!("{l}.crt"));
            let c = &certs(&crt)[0];
            if !chain.iter().any(|ca| c.is_signed_by(ca)) {
                return Err(format!("{l}.crt is signed by no CA of {ca}.crt"));
            }
            if with_openssl && !openssl_verifies(&ca_file, &crt) {
                return Err(format!("openssl does not verify {l}.crt against {ca}.crt"));
            }
            let k = PrivateKey::from_pem(&fs::read(d.join(format!("{l}.key"))).unwrap()).unwrap();
            if !k.matches_public_key(c.public_key_der()) {
                return Err(format!("{l}.key does not match {l}.crt"));
            }
        }
    }
    let ca = ders(&d.join("pki/ca.crt"));
    for k in KUBECONFIGS {
        let p = d.join(k);
        let creds = kubeconfig::read_credentials(&p).unwrap();
        let embedded: Vec<Vec<u8>> = Certificate::from_pem_chain(creds.ca_pem.as_ref().unwrap())
            .unwrap()
            .iter()
            .map(|c| c.der().to_vec())
            .collect();
        if embedded != ca {
            return Err(format!("{k} does not embed exactly pki/ca.crt"));
        }
        let client = &creds.client_chain().unwrap()[0];
        let cas = certs(&d.join("pki/ca.crt"));
        if !cas.iter().any(|ca| client.is_signed_by(ca)) {
            return Err(format!(
                "{k}'s client certificate is signed by no CA of ca.crt"
            ));
        }
    }
    let pubs = public_keys_from_pem(&fs::read(d.join("pki/sa.pub")).unwrap()).unwrap();
    let sa = PrivateKey::from_pem(&fs::read(d.join("pki/sa.key")).unwrap()).unwrap();
    if !sa.matches_public_key(&pubs[0]) {
        return Err("sa.key is not sa.pub's first key".into());
    }
    Ok(())
}

fn phase(d: &Path) -> BTreeMap<String, String> {
    let o = run_ok(&mut kubepki_in(
        d,
        &["ca", "rotate", "status", "-o", "json"],
    ));
    json(&o)["rotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["phase"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all_in(d: &Path, p: &str) -> bool {
    phase(d).values().all(|v| v == p)
}

/// The PKI files (not backups) below `d`: path -> bytes.
fn pki_tree(d: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(d)
        .into_iter()
        .filter(|(p, _, m)| {
            m & 0o170000 != 0o040000
                && !p.strip_prefix(d).unwrap().starts_with(BACKUPS)
                && !p.starts_with(d.join("kubelet"))
        })
        .map(|(p, b, _)| (p.strip_prefix(d).unwrap().to_path_buf(), b))
        .collect()
}

/// The old CA certificates (DER) and SA public key of `d`, before a rotation.
fn olds(d: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = CAS
        .iter()
        .map(|(ca, _)| ders(&d.join(format!("{ca}.crt"))).remove(0))
        .collect();
    v.extend(public_keys_from_pem(&fs::read(d.join("pki/sa.pub")).unwrap()).unwrap());
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn trust_switch_finish_ends_on_new_cas_with_every_step_consistent() {
    ensure_openssl();
    let dir = fresh_pki(NODE, IP, &["--now", INIT_NOW]);
    let d = dir.path();
    let old = olds(d);
    let pristine = pki_tree(d);
    consistent(d, true).unwrap();

    // A dry run prints the plan and changes nothing.
    let o = rotate_ok(d, &["trust", "all", "--dry-run", "-o", "json"]);
    assert_eq!(json(&o)["changed"], true);
    assert_eq!(pki_tree(d), pristine, "a dry run changed files");

    let o = rotate_ok(d, &["trust", "all", "-o", "json"]);
    let r = json(&o);
    assert_eq!(
        r["restart"],
        serde_json::json!([
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet"
        ])
    );
    assert_eq!(
        r["signer"]["cert"],
        d.join("pki/ca-signer.crt").to_str().unwrap()
    );
    assert_eq!(r["discoveryTokenCaCertHashes"].as_array().unwrap().len(), 2);
    assert!(all_in(d, "trust"));
    consistent(d, true).unwrap();
    // trust: old first (it still signs), new second, in every CA file; both SA keys.
    for (ca, _) in CAS {
        let chain = ders(&d.join(format!("{ca}.crt")));
        assert_eq!(chain.len(), 2, "{ca}.crt");
        assert!(old.contains(&chain[0]), "{ca}.crt: the old CA is not first");
    }
    assert_eq!(
        public_keys_from_pem(&fs::read(d.join("pki/sa.pub")).unwrap())
            .unwrap()
            .len(),
        2
    );
    // The signer file holds one certificate: the one that signs.
    assert_eq!(ders(&d.join("pki/ca-signer.crt")), vec![old[0].clone()]);
    // Keys stay private.
    for k in [
        "pki/ca.rotation.key",
        "pki/ca-signer.key",
        "pki/sa.rotation.key",
    ] {
        let mode = fs::metadata(d.join(k)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{k}"
        );
    }
    // Idempotent: the same step again changes nothing.
    let before = pki_tree(d);
    let o = rotate_ok(d, &["trust", "all", "-o", "json"]);
    assert_eq!(json(&o)["changed"], false);
    assert_eq!(pki_tree(d), before);

    let o = rotate_ok(d, &["switch", "all", "-o", "json"]);
    assert!(all_in(d, "switch"));
    consistent(d, true).unwrap();
    let r = json(&o);
    let reissued: Vec<&str> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["reissued"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
        })
        .collect();
    for n in [
        "apiserver",
        "admin.conf",
        "front-proxy-client",
        "etcd-peer",
        "apiserver-etcd-client",
    ] {
        assert!(reissued.contains(&n), "{n} was not re-issued: {reissued:?}");
    }
    for (ca, leaves) in CAS {
        let chain = ders(&d.join(format!("{ca}.crt")));
        assert!(
            !old.contains(&chain[0]) && old.contains(&chain[1]),
            "{ca}.crt order"
        );
        // Every leaf now verifies against the new CA alone.
        let new_only = d.join("new-only.crt");
        fs::write(&new_only, certs(&d.join(format!("{ca}.crt")))[0].to_pem()).unwrap();
        for l in *leaves {
            assert!(
                openssl_verifies(&new_only, &d.join(format!("{l}.crt"))),
                "{l}"
            );
        }
        fs::remove_file(new_only).unwrap();
    }

    // Finish, once nothing is signed by the old CAs.
    let o = rotate_ok(d, &["finish", "all", "-o", "json"]);
    assert_eq!(
        json(&o)["signer"]["cert"],
        d.join("pki/ca.crt").to_str().unwrap()
    );
    assert!(all_in(d, "none"));
    consistent(d, true).unwrap();
    // No file of the PKI holds an old CA certificate or the old SA public key any more.
    for (p, bytes) in pki_tree(d) {
        let text = String::from_utf8_lossy(&bytes).to_string();
        let decoded = kubeconfig_ca_der(&text);
        for o in &old {
            let b64 = base64_of(o);
            assert!(
                !contains(&bytes, b64.as_bytes()) && !decoded.iter().any(|d| d == o),
                "{} still holds an old CA or key",
                p.display()
            );
        }
    }
    for f in [
        "pki/ca-signer.crt",
        "pki/ca.rotation.key",
        "pki/sa.rotation.key",
        "pki/kubepki-rotation.json",
    ] {
        assert!(!d.join(f).exists(), "{f} is left after finish");
    }
    // kubeadm's report reads the result.
    run_ok(&mut kubepki_in(
        d,
        &["certs", "check-expiration", "--now", NOW],
    ));
}

fn base64_of(der: &[u8]) -> String {
    use base64::Engine;
    // The first 60 base64 characters of the PEM body: unique enough to find a copy.
    base64::engine::general_purpose::STANDARD.encode(der)[..60].to_string()
}

/// The certificates of every certificate-authority-data in a kubeconfig text.
fn kubeconfig_ca_der(text: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .filter_map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .flat_map(|pem| Certificate::from_pem_chain(&pem).unwrap_or_default())
        .map(|c| c.der().to_vec())
        .collect()
}

#[test]
fn rollback_from_switch_and_from_trust_returns_to_the_old_cas() {
    ensure_openssl();
    let dir = fresh_pki(NODE, IP, &["--now", INIT_NOW]);
    let d = dir.path();
    let old = olds(d);
    let ca_files: Vec<(PathBuf, Vec<u8>)> = [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/front-proxy-ca.crt",
        "pki/etcd/ca.crt",
        "pki/sa.key",
        "pki/sa.pub",
    ]
    .iter()
    .map(|f| (d.join(f), fs::read(d.join(f)).unwrap()))
    .collect();
    rotate_ok(d, &["trust", "all"]);
    rotate_ok(d, &["switch", "all"]);
    // Back one phase: the old CAs sign again (leaves re-issued by them), both still trusted.
    let o = rotate_ok(d, &["rollback", "all", "-o", "json"]);
    assert!(all_in(d, "trust"), "{}", stdout(&o));
    consistent(d, true).unwrap();
    for (ca, leaves) in CAS {
        let chain = certs(&d.join(format!("{ca}.crt")));
        assert!(old.contains(&chain[0].der().to_vec()));
        for l in *leaves {
            assert!(
                certs(&d.join(format!("{l}.crt")))[0].is_signed_by(&chain[0]),
                "{l}"
            );
        }
    }
    // Back again: no rotation, the CA files exactly as before.
    rotate_ok(d, &["rollback", "all"]);
    assert!(all_in(d, "none"));
    consistent(d, true).unwrap();
    for (p, bytes) in &ca_files {
        assert_eq!(
            &fs::read(p).unwrap(),
            bytes,
            "{} differs from before the rotation",
            p.display()
        );
    }
    assert!(!d.join("pki/ca-signer.crt").exists() && !d.join("pki/ca.rotation.crt").exists());
    // Nothing left to roll back: a no-op, not an error.
    let o = rotate_ok(d, &["rollback", "all", "-o", "json"]);
    assert_eq!(json(&o)["changed"], false);
}

#[test]
fn a_second_control_plane_node_gets_the_same_new_cas_only_with_the_key() {
    let work = scratch();
    let (n1, n2, other) = (
        work.path().join("n1"),
        work.path().join("n2"),
        work.path().join("x"),
    );
    init_ecdsa(&n1, "n1", "10.0.0.1", &["--now", INIT_NOW]);
    // n2 shares the CAs and the SA key, as kubeadm's join of a control-plane node does.
    for f in [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
        "sa.key",
        "sa.pub",
    ] {
        write_file(
            &n2.join("pki").join(f),
            &fs::read(n1.join("pki").join(f)).unwrap(),
        );
    }
    init_ecdsa(&n2, "n2", "10.0.0.2", &["--now", INIT_NOW]);
    init_ecdsa(&other, "x", "10.0.0.3", &["--now", INIT_NOW]);
    // n3: the same cluster, which will make its own (other) new CAs.
    let n3 = work.path().join("n3");
    copy_tree(&n2, &n3);

    let archive = work.path().join("rotation.enc");
    let o = rotate_ok(
        &n1,
        &[
            "trust",
            "all",
            "--export",
            archive.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    let key = json(&o)["certificateKey"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 64);
    // The archive holds no key in clear text.
    let bytes = fs::read(&archive).unwrap();
    assert!(!contains(&bytes, b"PRIVATE KEY") && !contains(&bytes, b"BEGIN"));
    // The key is not stored anywhere on the node.
    for (p, b, _) in snapshot(&n1) {
        assert!(
            !contains(&b, key.as_bytes()),
            "{} holds the certificate key",
            p.display()
        );
    }

    let before = pki_tree(&n2);
    let wrong = format!(
        "{}{}",
        &key[..63],
        if key.ends_with('0') { "1" } else { "0" }
    );
    let o = run_fail(&mut rotate(
        &n2,
        &[
            "trust",
            "all",
            "--import",
            archive.to_str().unwrap(),
            "--certificate-key",
            &wrong,
        ],
    ));
    assert!(stderr(&o).contains("cannot be decrypted"), "{}", stderr(&o));
    assert_eq!(pki_tree(&n2), before);
    // Another cluster's node (other CAs) refuses the archive.
    let o = run_fail(&mut rotate(
        &other,
        &[
            "trust",
            "all",
            "--import",
            archive.to_str().unwrap(),
            "--certificate-key",
            &key,
        ],
    ));
    assert!(stderr(&o).contains("different"), "{}", stderr(&o));

    rotate_ok(
        &n2,
        &[
            "trust",
            "all",
            "--import",
            archive.to_str().unwrap(),
            "--certificate-key",
            &key,
        ],
    );
    // Run again with other new CAs of the same cluster (n3's archive): refused, the nodes must
    // share one.
    let other_archive = work.path().join("other.enc");
    let o = rotate_ok(
        &n3,
        &[
            "trust",
            "all",
            "--export",
            other_archive.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    let other_key = json(&o)["certificateKey"].as_str().unwrap().to_string();
    let before = pki_tree(&n2);
    let o = run_fail(&mut rotate(
        &n2,
        &[
            "trust",
            "all",
            "--import",
            other_archive.to_str().unwrap(),
            "--certificate-key",
            &other_key,
        ],
    ));
    assert!(stderr(&o).contains("another new CA"), "{}", stderr(&o));
    assert_eq!(pki_tree(&n2), before);
    // The same archive again is a no-op.
    let o = rotate_ok(
        &n2,
        &[
            "trust",
            "all",
            "--import",
            archive.to_str().unwrap(),
            "--certificate-key",
            &key,
            "-o",
            "json",
        ],
    );
    assert_eq!(json(&o)["changed"], false);
    // --ca-bundle is for workers only.
    let o = run_fail(&mut rotate(
        &n2,
        &[
            "switch",
            "ca",
            "--ca-bundle",
            n1.join("pki/ca.crt").to_str().unwrap(),
        ],
    ));
    assert!(stderr(&o).contains("control-plane node"), "{}", stderr(&o));
    for f in [
        "pki/ca.crt",
        "pki/front-proxy-ca.crt",
        "pki/etcd/ca.crt",
        "pki/sa.pub",
        "pki/ca.rotation.key",
        "pki/sa.rotation.key",
    ] {
        assert_eq!(
            fs::read(n1.join(f)).unwrap(),
            fs::read(n2.join(f)).unwrap(),
            "{f} differs between the nodes"
        );
    }
    for n in [&n1, &n2] {
        rotate_ok(n, &["switch", "all"]);
    }
    for f in ["pki/ca.crt", "pki/ca.key", "pki/sa.key", "pki/etcd/ca.key"] {
        assert_eq!(
            fs::read(n1.join(f)).unwrap(),
            fs::read(n2.join(f)).unwrap(),
            "{f} differs after switch"
        );
    }
    // A worker follows with the control plane's ca.crt.
    let w = work.path().join("w");
    fs::create_dir_all(w.join("pki")).unwrap();
    fs::copy(n1.join("pki/ca.rotation.crt"), w.join("pki/ca.crt")).unwrap();
    let kc = fs::read_to_string(n1.join("kubelet.conf")).unwrap();
    let old_ca = fs::read_to_string(n1.join("pki/ca.rotation.crt")).unwrap();
    let kc = kubeconfig::replace_ca(&kc, &w.join("kubelet.conf"), &old_ca).unwrap();
    fs::write(w.join("kubelet.conf"), kc).unwrap();
    let o = rotate_ok(
        &w,
        &[
            "switch",
            "ca",
            "--ca-bundle",
            n1.join("pki/ca.crt").to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(json(&o)["restart"], serde_json::json!(["kubelet"]));
    assert_eq!(ders(&w.join("pki/ca.crt")), ders(&n1.join("pki/ca.crt")));
    let creds = kubeconfig::read_credentials(&w.join("kubelet.conf")).unwrap();
    assert_eq!(
        creds.ca_pem.unwrap(),
        fs::read(n1.join("pki/ca.crt")).unwrap()
    );
}

const KCM_MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-controller-manager\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - kube-controller-manager\n    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt\n    - --cluster-signing-key-file=/etc/kubernetes/pki/ca.key\n    - --root-ca-file=/etc/kubernetes/pki/ca.crt\n    image: k8s.gcr.io/kube-controller-manager:v1.20.2\n    name: kube-controller-manager\n";

#[test]
fn the_controller_manager_signs_from_its_own_file_while_ca_rotates() {
    let dir = fresh_pki(NODE, IP, &["--now", INIT_NOW]);
    let d = dir.path();
    let m = d.join("manifests/kube-controller-manager.yaml");
    write_file(&m, KCM_MANIFEST.as_bytes());
    rotate_ok(d, &["trust", "ca"]);
    let text = fs::read_to_string(&m).unwrap();
    assert_eq!(
        text,
        KCM_MANIFEST
            .replace(
                "signing-cert-file=/etc/kubernetes/pki/ca.crt",
                "signing-cert-file=/etc/kubernetes/pki/ca-signer.crt"
            )
            .replace(
                "signing-key-file=/etc/kubernetes/pki/ca.key",
                "signing-key-file=/etc/kubernetes/pki/ca-signer.key"
            )
    );
    rotate_ok(d, &["switch", "ca"]);
    assert_eq!(
        fs::read_to_string(&m).unwrap(),
        text,
        "switch touched the manifest"
    );
    assert_eq!(
        ders(&d.join("pki/ca-signer.crt")),
        vec![ders(&d.join("pki/ca.crt")).remove(0)]
    );

    // Someone changes the flags mid-rotation: finish refuses, naming the manifest.
    let edited = text.replace("ca-signer.crt", "other.crt");
    fs::write(&m, &edited).unwrap();
    let before = pki_tree(d);
    let o = run_fail(&mut rotate(d, &["finish", "ca"]));
    assert!(
        stderr(&o).contains("kube-controller-manager.yaml")
            && stderr(&o).contains("--cluster-signing-cert-file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(pki_tree(d), before);
    fs::write(&m, &text).unwrap();
    rotate_ok(d, &["finish", "ca"]);
    assert_eq!(
        fs::read_to_string(&m).unwrap(),
        KCM_MANIFEST,
        "the manifest is not back as kubeadm wrote it"
    );
}

/// Runs `cmd`, expecting a refusal naming `names`, with nothing changed in `d`.
fn refused(d: &Path, cmd: &mut Command, names: &[&str]) {
    let before = snapshot(d);
    let o = run_fail(cmd);
    assert_no_panic(&o, "ca rotate");
    let err = stderr(&o);
    for n in names {
        assert!(err.contains(n), "the error does not name {n}: {err}");
    }
    assert!(snapshot(d) == before, "a refused step changed files: {err}");
}

#[test]
fn bad_input_is_refused_naming_the_file_and_changes_nothing() {
    ensure_openssl();
    let dir = fresh_pki(NODE, IP, &["--now", INIT_NOW]);
    let d = dir.path();
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    // Out of order.
    refused(
        d,
        &mut rotate(d, &["switch", "all"]),
        &["kubepki-rotation.json", "run trust first"],
    );
    refused(
        d,
        &mut rotate(d, &["switch", "sa"]),
        &["sa is in phase none"],
    );
    // finish with no rotation in progress is a rerun after the end: nothing to do.
    let o = rotate_ok(d, &["finish", "ca", "-o", "json"]);
    assert_eq!(json(&o)["changed"], false);
    // A leaf as the new CA; a key that is not the certificate's; a CA expiring in a month.
    refused(
        d,
        &mut rotate(
            d,
            &[
                "trust",
                "ca",
                "--new-ca-cert",
                &s("pki/apiserver.crt"),
                "--new-ca-key",
                &s("pki/apiserver.key"),
            ],
        ),
        &["apiserver.crt", "not a CA"],
    );
    let ca_dir = d.join("newca");
    fs::create_dir_all(&ca_dir).unwrap();
    let mk_ca = |name: &str, days: &str| {
        let (k, c) = (
            ca_dir.join(format!("{name}.key")),
            ca_dir.join(format!("{name}.crt")),
        );
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-subj",
                    "/CN=kubernetes",
                    "-days",
                    days,
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                    "-keyout",
                ])
                .arg(&k)
                .arg("-out")
                .arg(&c),
        );
        (
            c.to_str().unwrap().to_string(),
            k.to_str().unwrap().to_string(),
        )
    };
    let (good_c, _good_k) = mk_ca("good", "3650");
    let (_, other_k) = mk_ca("other", "3650");
    let (short_c, short_k) = mk_ca("short", "30");
    refused(
        d,
        &mut rotate(
            d,
            &[
                "trust",
                "ca",
                "--new-ca-cert",
                &good_c,
                "--new-ca-key",
                &other_k,
            ],
        ),
        &["other.key", "does not match"],
    );
    refused(
        d,
        &mut rotate(
            d,
            &[
                "trust",
                "ca",
                "--new-ca-cert",
                &short_c,
                "--new-ca-key",
                &short_k,
                "--now",
                "2099-01-01T00:00:00Z",
            ],
        ),
        &[],
    );
    // Expires before the leaves it would sign: 30 days < a year.
    let o = run_fail(&mut rotate(
        d,
        &[
            "trust",
            "ca",
            "--new-ca-cert",
            &short_c,
            "--new-ca-key",
            &short_k,
        ],
    ));
    assert!(
        stderr(&o).contains("before certificates issued now"),
        "{}",
        stderr(&o)
    );
    // The new CA given with its key works (and is the one installed).
    let (gc, gk) = mk_ca("given", "3650");
    rotate_ok(
        d,
        &["trust", "ca", "--new-ca-cert", &gc, "--new-ca-key", &gk],
    );
    assert_eq!(ders(&d.join("pki/ca.crt"))[1], ders(Path::new(&gc))[0]);
    rotate_ok(d, &["rollback", "ca"]);

    // A hand-edited CA file: two certificates but no rotation recorded.
    let ca = fs::read_to_string(d.join("pki/ca.crt")).unwrap();
    fs::write(
        d.join("pki/ca.crt"),
        format!("{ca}{}", fs::read_to_string(&good_c).unwrap()),
    )
    .unwrap();
    refused(
        d,
        &mut rotate(d, &["trust", "ca"]),
        &["pki/ca.crt", "no rotation of it is recorded"],
    );
    fs::write(d.join("pki/ca.crt"), &ca).unwrap();
    // Files that disagree with the record: the new CA swapped out by hand during trust.
    rotate_ok(d, &["trust", "front-proxy-ca"]);
    let fp = fs::read_to_string(d.join("pki/front-proxy-ca.crt")).unwrap();
    let first = fp
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_string();
    fs::write(
        d.join("pki/front-proxy-ca.crt"),
        format!("{first}{}", fs::read_to_string(&good_c).unwrap()),
    )
    .unwrap();
    refused(
        d,
        &mut rotate(d, &["switch", "front-proxy-ca"]),
        &["front-proxy-ca.crt", "changed outside kubepki"],
    );
    fs::write(d.join("pki/front-proxy-ca.crt"), &fp).unwrap();
    rotate_ok(d, &["rollback", "front-proxy-ca"]);

    // A kubeconfig that trusts a third CA.
    let admin = fs::read_to_string(d.join("admin.conf")).unwrap();
    let foreign = kubeconfig::replace_ca(
        &admin,
        &d.join("admin.conf"),
        &fs::read_to_string(&good_c).unwrap(),
    )
    .unwrap();
    fs::write(d.join("admin.conf"), foreign).unwrap();
    refused(
        d,
        &mut rotate(d, &["trust", "ca"]),
        &["admin.conf", "neither the old nor the new"],
    );
    fs::write(d.join("admin.conf"), &admin).unwrap();

    // finish while the kubelet's certificate is still signed by the old CA: refused, --force passes.
    rotate_ok(d, &["trust", "ca"]);
    rotate_ok(d, &["switch", "ca"]);
    let kpki = d.join("kubelet/pki");
    fs::create_dir_all(&kpki).unwrap();
    let old_signed = format!(
        "{}{}",
        fs::read_to_string(d.join("pki/apiserver-kubelet-client.crt")).unwrap(),
        fs::read_to_string(d.join("pki/apiserver-kubelet-client.key")).unwrap()
    );
    // Re-issued at switch: take one signed by the old CA from the rotation's backup instead.
    let b = backups(d);
    let old_cert = fs::read_to_string(b.last().unwrap().join("pki/apiserver-kubelet-client.crt"))
        .or_else(|_| fs::read_to_string(find(b.last().unwrap(), "apiserver-kubelet-client.crt")))
        .unwrap();
    let _ = old_signed;
    fs::write(kpki.join("kubelet-client-current.pem"), &old_cert).unwrap();
    // Stepping back to before the rotation while the kubelet holds a certificate of the new CA:
    // refused (it would stop being trusted), --force goes on.
    let new_signed = fs::read_to_string(d.join("pki/apiserver-kubelet-client.crt")).unwrap();
    fs::write(kpki.join("kubelet-client-current.pem"), &new_signed).unwrap();
    rotate_ok(d, &["rollback", "ca"]);
    refused(
        d,
        &mut rotate(d, &["rollback", "ca"]),
        &["kubelet-client-current.pem", "signed by the new ca"],
    );
    rotate_ok(d, &["switch", "ca"]);
    fs::write(kpki.join("kubelet-client-current.pem"), &old_cert).unwrap();
    refused(
        d,
        &mut rotate(d, &["finish", "ca"]),
        &["kubelet-client-current.pem", "still signed by the old ca"],
    );
    rotate_ok(d, &["finish", "ca", "--force"]);
    assert!(all_in(d, "none"));
    // status fails on files that disagree with the record.
    rotate_ok(d, &["trust", "ca"]);
    fs::write(
        d.join("pki/ca.crt"),
        fs::read(d.join("pki/ca.rotation.crt")).unwrap(),
    )
    .unwrap();
    let o = run_fail(&mut kubepki_in(d, &["ca", "rotate", "status"]));
    assert!(stdout(&o).contains("ERROR"), "{}", stdout(&o));
}

/// The first file named `name` below `dir`.
fn find(dir: &Path, name: &str) -> PathBuf {
    snapshot(dir)
        .into_iter()
        .map(|(p, _, _)| p)
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("no {name} below {}", dir.display()))
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Where a step killed after `k` operations and then recovered ended up.
#[derive(Debug, PartialEq, Eq)]
enum Landed {
    Before,
    After,
}

#[test]
fn sigkill_at_every_file_operation_of_every_step_then_the_rotation_completes() {
    let work = scratch();
    let base = work.path().join("base");
    init_ecdsa(&base, NODE, IP, &["--now", INIT_NOW]);
    write_file(
        &base.join("manifests/kube-controller-manager.yaml"),
        KCM_MANIFEST.as_bytes(),
    );
    let steps: &[(&str, &str, &str)] = &[
        ("trust", "none", "trust"),
        ("switch", "trust", "switch"),
        ("finish", "switch", "none"),
        ("rollback", "switch", "trust"),
    ];
    // The state before each step, made by running the steps before it.
    let start = |name: &str, from: &Path, step: Option<&str>| -> PathBuf {
        let at = work.path().join(name);
        copy_tree(from, &at);
        if let Some(step) = step {
            rotate_ok(&at, &[step, "all"]);
        }
        at
    };
    let s_trust = start("start-trust", &base, None);
    let s_switch = start("start-switch", &s_trust, Some("trust"));
    let s_finish = start("start-finish", &s_switch, Some("switch"));
    let starts: BTreeMap<&str, PathBuf> = BTreeMap::from([
        ("trust", s_trust),
        ("switch", s_switch),
        ("finish", s_finish.clone()),
        ("rollback", s_finish),
    ]);

    let mut summary = Vec::new();
    for (step, from, to) in steps {
        let start = &starts[step];
        let pristine = pki_tree(start);
        assert!(all_in(start, from), "{step} does not start from {from}");
        let (cases, total) = kill_at_every_op(3000, 8, |k| {
            let d = work.path().join(format!("{step}-{k}"));
            copy_tree(start, &d);
            let mut c = rotate(&d, &[step, "all"]);
            c.env("KUBEPKI_TEST_KILL_AFTER_OPS", k.to_string());
            let o = c.output().unwrap();
            if o.status.signal() != Some(9) {
                assert!(
                    o.status.success(),
                    "{step} not killed after {k} ops failed: {}",
                    stderr(&o)
                );
                fs::remove_dir_all(&d).unwrap();
                return None;
            }
            // Any writing command finishes or undoes the step first.
            run_ok(&mut kubepki_in(&d, &["certs", "recover"]));
            let landed = if all_in(&d, from) {
                assert!(
                    pki_tree(&d) == pristine,
                    "{step} killed after {k}: back before it, but not byte-identical"
                );
                Landed::Before
            } else {
                assert!(
                    all_in(&d, to),
                    "{step} killed after {k}: neither {from} nor {to}: {:?}",
                    phase(&d)
                );
                Landed::After
            };
            consistent(&d, false)
                .unwrap_or_else(|e| panic!("{step} killed after {k} ops, {landed:?}: {e}"));
            assert!(
                leftovers(&d).is_empty(),
                "{step} killed after {k}: left {:?}",
                leftovers(&d)
            );
            // Then the rotation completes from there.
            if landed == Landed::Before {
                rotate_ok(&d, &[step, "all"]);
            }
            // The whole rotation to its end from every 8th kill point (each step's own rerun
            // above is done for all of them).
            if *step != "rollback" && k % 8 == 1 {
                for next in ["trust", "switch", "finish"]
                    .iter()
                    .skip_while(|s| *s != step)
                    .skip(1)
                {
                    rotate_ok(&d, &[next, "all"]);
                }
                assert!(all_in(&d, "none"));
                consistent(&d, false).unwrap();
            }
            fs::remove_dir_all(&d).unwrap();
            Some(landed)
        });
        let before = cases.values().filter(|l| **l == Landed::Before).count();
        let after = cases.values().filter(|l| **l == Landed::After).count();
        assert!(
            before > 0 && after > 0,
            "{step}: only one side was ever reached ({before} before, {after} after)"
        );
        summary.push(format!(
            "{step}: {total} file operations, {before} kills rolled back, {after} rolled forward"
        ));
    }
    eprintln!("{}", summary.join("\n"));
}
