//! Bad input: a clear error naming the file, a non-zero exit, and nothing changed on disk.
//! External CA mode: what the CA must sign and is missing is an error; the rest proceeds.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::pki::{IP, NODE, init_cmd, kubepki_in};
use common::*;

fn fresh() -> tempfile::TempDir {
    fresh_pki(NODE, IP, &[])
}

/// Runs `cmd`, expects exit status 1, an stderr mentioning every `needles`, and `d` unchanged.
fn refused(d: &Path, mut cmd: Command, needles: &[String]) -> Output {
    let before = snapshot(d);
    let out = run_fail(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status; stderr: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    for n in needles {
        assert!(err.contains(n.as_str()), "stderr lacks {n:?}:\n{err}");
    }
    assert!(
        snapshot(d) == before,
        "files changed although the command failed:\n{err}"
    );
    out
}

fn p(d: &Path, rel: &str) -> String {
    d.join(rel).display().to_string()
}

#[test]
fn corrupt_pem_is_named_and_nothing_is_written() {
    let dir = fresh();
    let d = dir.path();
    fs::write(
        d.join("pki/apiserver.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fs::remove_file(d.join("admin.conf")).unwrap(); // init would have something to write
    refused(
        d,
        init_cmd(d, &[]),
        &[
            format!("{}: invalid certificate", p(d, "pki/apiserver.crt")),
            "Nothing was written".into(),
        ],
    );
    assert!(!d.join("admin.conf").exists());

    fs::write(d.join("pki/apiserver.crt"), "just text\n").unwrap();
    refused(
        d,
        init_cmd(d, &[]),
        &[format!(
            "{}: invalid certificate: no CERTIFICATE PEM block found",
            p(d, "pki/apiserver.crt")
        )],
    );
    fs::write(
        d.join("pki/etcd/peer.key"),
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    refused(
        d,
        init_cmd(d, &[]),
        &[format!(
            "{}: invalid private key",
            p(d, "pki/etcd/peer.key")
        )],
    );
}

#[test]
fn key_that_does_not_match_its_cert() {
    let dir = fresh();
    let d = dir.path();
    fs::copy(
        d.join("pki/front-proxy-client.key"),
        d.join("pki/apiserver.key"),
    )
    .unwrap();
    fs::remove_file(d.join("scheduler.conf")).unwrap();
    refused(
        d,
        init_cmd(d, &[]),
        &[format!(
            "{}: private key does not match the certificate in {}",
            p(d, "pki/apiserver.key"),
            p(d, "pki/apiserver.crt")
        )],
    );
}

#[test]
fn non_ca_certificate_in_ca_crt() {
    let donor = fresh();
    let dir = scratch();
    let d = dir.path();
    // A leaf and its own key where the cluster CA should be.
    write_file(
        &d.join("pki/ca.crt"),
        &fs::read(donor.path().join("pki/apiserver.crt")).unwrap(),
    );
    write_file(
        &d.join("pki/ca.key"),
        &fs::read(donor.path().join("pki/apiserver.key")).unwrap(),
    );
    refused(
        d,
        init_cmd(d, &[]),
        &[format!("{}: not a CA certificate", p(d, "pki/ca.crt"))],
    );
}

#[test]
fn certificate_from_another_ca_and_expired_certificates() {
    let other = fresh();
    let dir = fresh();
    let d = dir.path();
    for f in ["pki/apiserver.crt", "pki/apiserver.key"] {
        fs::copy(other.path().join(f), d.join(f)).unwrap();
    }
    fs::remove_file(d.join("admin.conf")).unwrap();
    refused(
        d,
        init_cmd(d, &[]),
        &[format!(
            "{}: not signed by the CA in {}",
            p(d, "pki/apiserver.crt"),
            p(d, "pki/ca.crt")
        )],
    );

    // Made two years ago with one-year leaves: the leaves have expired, the CAs have not.
    let old = scratch();
    let o = old.path();
    let mut c = init_cmd(o, &[]);
    c.args(["--now", "2024-10-01T00:00:00Z"]);
    run_ok(&mut c);
    fs::remove_file(o.join("pki/sa.pub")).unwrap();
    refused(
        o,
        init_cmd(o, &[]),
        &[format!(
            "{}: expired on Oct 01, 2025 00:00 UTC",
            p(o, "pki/apiserver.crt")
        )],
    );
}

#[test]
fn half_pairs_dangling_links_and_bad_settings() {
    let dir = fresh();
    let d = dir.path();
    fs::remove_file(d.join("pki/front-proxy-client.key")).unwrap();
    refused(
        d,
        init_cmd(d, &[]),
        &[format!(
            "{}: exists without {}",
            p(d, "pki/front-proxy-client.crt"),
            p(d, "pki/front-proxy-client.key")
        )],
    );

    let dir = fresh();
    let d = dir.path();
    fs::remove_file(d.join("pki/apiserver.crt")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/apiserver.crt", d.join("pki/apiserver.crt")).unwrap();
    refused(
        d,
        init_cmd(d, &[]),
        &[format!(
            "{}: dangling symbolic link",
            p(d, "pki/apiserver.crt")
        )],
    );

    let empty = scratch();
    let e = empty.path();
    let mut c = init_cmd(e, &[]);
    c.args(["--service-cidr", "10.96.0.0/99"]);
    refused(e, c, &["invalid service CIDR \"10.96.0.0/99\"".into()]);
    let mut c = kubepki();
    c.args([
        "init",
        "--node-name",
        "Bad_Name",
        "--apiserver-advertise-address",
        IP,
        "--cert-dir",
    ])
    .arg(e.join("pki"));
    refused(e, c, &["invalid node name \"Bad_Name\"".into()]);
    let mut c = init_cmd(e, &[]);
    c.args(["--apiserver-cert-extra-sans", "ok.example,not a name"]);
    refused(
        e,
        c,
        &["\"not a name\" is neither an IP address nor a valid DNS name".into()],
    );
    let cfg = e.join("kubeadm.yaml");
    write_file(
        &cfg,
        b"apiVersion: kubeadm.k8s.io/v1alpha9\nkind: ClusterConfiguration\n",
    );
    let mut c = init_cmd(e, &[]);
    c.arg("--config").arg(&cfg);
    refused(
        e,
        c,
        &[format!(
            "{}: document 1: unsupported apiVersion",
            cfg.display()
        )],
    );
    assert_eq!(snapshot(e).len(), 1, "only the config file exists");
}

#[test]
fn unreadable_file() {
    let dir = fresh();
    let d = dir.path();
    give_to_nobody(d);
    fs::set_permissions(
        d.join("pki/apiserver.key"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::remove_file(d.join("admin.conf")).unwrap();
    refused(
        d,
        as_nobody(&init_cmd(d, &[])),
        &[format!("{}: Permission denied", p(d, "pki/apiserver.key"))],
    );
    let c = kubepki_in(d, &["certs", "check-expiration"]);
    fs::set_permissions(d.join("pki/ca.crt"), fs::Permissions::from_mode(0o000)).unwrap();
    refused(
        d,
        as_nobody(&c),
        &[format!("{}: Permission denied", p(d, "pki/ca.crt"))],
    );
}

#[test]
fn read_only_directory() {
    let dir = fresh();
    let d = dir.path();
    give_to_nobody(d);
    for f in [
        "pki/apiserver.crt",
        "pki/apiserver.key",
        "pki/etcd/peer.crt",
        "pki/etcd/peer.key",
    ] {
        fs::remove_file(d.join(f)).unwrap();
    }
    fs::remove_file(d.join("kubelet.conf")).unwrap();
    fs::set_permissions(d.join("pki"), fs::Permissions::from_mode(0o555)).unwrap();
    let out = refused(
        d,
        as_nobody(&init_cmd(d, &[])),
        &[
            format!("{}: cannot be written", p(d, "pki/apiserver.crt")),
            "Permission denied".into(),
        ],
    );
    // Files staged in writable directories before the failure are gone too.
    assert!(!stderr(&out).is_empty());
    assert!(!d.join("kubelet.conf").exists());
    let leftovers: Vec<_> = fs::read_dir(d.join("pki/etcd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".kubepki"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn external_ca_reports_what_it_must_sign_and_the_rest_proceeds() {
    let dir = fresh();
    let d = dir.path();
    fs::remove_file(d.join("pki/ca.key")).unwrap();
    for f in [
        "pki/apiserver.crt",
        "pki/apiserver.key",
        "admin.conf",
        "pki/front-proxy-client.crt",
        "pki/front-proxy-client.key",
    ] {
        fs::remove_file(d.join(f)).unwrap();
    }
    let out = run_fail(&mut init_cmd(d, &[]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "external CA ca: {} is absent, so kubepki cannot sign {}, {}, {}",
            p(d, "pki/ca.key"),
            p(d, "pki/apiserver.crt"),
            p(d, "pki/apiserver.key"),
            p(d, "admin.conf")
        )),
        "{err}"
    );
    // front-proxy-ca still has its key: its leaf was re-created and verifies.
    let v = run_ok(
        Command::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(d.join("pki/front-proxy-ca.crt"))
            .arg(d.join("pki/front-proxy-client.crt")),
    );
    assert!(stdout(&v).contains(": OK"));
    assert!(!d.join("pki/apiserver.crt").exists() && !d.join("admin.conf").exists());
    assert!(stdout(&out).contains("Using the external \"ca\" certificate authority"));
}

#[test]
fn kubeconfig_user_needs_the_ca_key_and_a_sound_ca() {
    let dir = fresh();
    let d = dir.path();
    let user = |d: &Path| {
        let mut c = kubepki();
        c.args([
            "kubeconfig",
            "user",
            "--client-name",
            "alice",
            "--server",
            "https://10.0.0.1:6443",
            "--cert-dir",
        ])
        .arg(d.join("pki"));
        c
    };
    let out = run_ok(&mut user(d));
    assert!(stdout(&out).contains("name: alice@kubernetes"));
    fs::rename(d.join("pki/ca.key"), d.join("ca.key.away")).unwrap();
    refused(
        d,
        user(d),
        &[format!(
            "{}: no such file; the cluster CA is external",
            p(d, "pki/ca.key")
        )],
    );
    fs::rename(d.join("ca.key.away"), d.join("pki/ca.key")).unwrap();
    fs::write(d.join("pki/ca.crt"), "garbage").unwrap();
    refused(
        d,
        user(d),
        &[format!("{}: invalid certificate", p(d, "pki/ca.crt"))],
    );
}
