//! `certs renew` on bad input: corrupt files, keys that are not their certificate's, an expired
//! or non-CA issuer, a symbolic link pointing outside the cert dir, a read-only directory, a
//! full backup directory. Each gives a clear error naming the file and what is wrong, exit
//! status 1, and leaves the cert dir and the kubeconfig dir byte-identical (modes included, no
//! temp file, no backup of a renewal that did not happen). After each case the bad input is
//! undone and the same command succeeds and changes the files: the refusal was for that input.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::pki::*;
use common::*;

fn renew_at(d: &Path, now: &str, names: &[&str]) -> Command {
    let mut c = kubepki_in(d, &[&["certs", "renew"], names].concat());
    c.args(["--now", now]);
    c
}

fn renew(d: &Path) -> Command {
    renew_at(d, RENEW_NOW, &["all"])
}

fn p(d: &Path, rel: &str) -> String {
    d.join(rel).display().to_string()
}

/// Runs `cmd`, expects exit status 1, every `needles` in stderr with "nothing was changed",
/// no panic, and `d` (cert dir and kubeconfig dir) byte-identical, modes included.
fn refused(d: &Path, mut cmd: Command, needles: &[String]) -> Output {
    let before = snapshot(d);
    let out = run_fail(&mut cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{err}");
    assert!(!err.contains("panicked"), "a panic:\n{err}");
    assert!(
        !stdout(&out).contains(" renewed"),
        "claims a renewal that did not happen:\n{}",
        stdout(&out)
    );
    for n in needles
        .iter()
        .map(String::as_str)
        .chain(["error: nothing was changed"])
    {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    let after = snapshot(d);
    if after != before {
        let names = |s: &[(PathBuf, Vec<u8>, u32)]| -> Vec<String> {
            s.iter()
                .map(|(p, _, m)| format!("{} {m:o}", p.display()))
                .collect()
        };
        let (b, a) = (names(&before), names(&after));
        let changed: Vec<_> = before
            .iter()
            .zip(after.iter())
            .filter(|(x, y)| x != y)
            .map(|(x, _)| x.0.display().to_string())
            .collect();
        panic!(
            "files changed although renew failed\n  only before: {:?}\n  only after: {:?}\n  \
             differing: {changed:?}\n{err}",
            b.iter().filter(|x| !a.contains(x)).collect::<Vec<_>>(),
            a.iter().filter(|x| !b.contains(x)).collect::<Vec<_>>(),
        );
    }
    out
}

/// The same renewal, once the bad input is gone, works and replaces files.
fn now_renews(d: &Path, mut cmd: Command, file: &str) {
    let before = fs::read(d.join(file)).unwrap();
    let out = run_ok(&mut cmd);
    assert!(
        stdout(&out).contains("renewed"),
        "renew after undoing the bad input:\n{}",
        stdout(&out)
    );
    assert_ne!(
        fs::read(d.join(file)).unwrap(),
        before,
        "{file} was not renewed"
    );
}

/// Keeps a copy of `rel` to put back later.
fn saved(d: &Path, rel: &str) -> Vec<u8> {
    fs::read(d.join(rel)).unwrap()
}

fn put_back(d: &Path, rel: &str, bytes: &[u8]) {
    fs::write(d.join(rel), bytes).unwrap();
}

/// With `bad` in `rel`, `cmd` is `refused` with `needles`; then `rel` is put back.
fn refused_with(d: &Path, rel: &str, bad: &[u8], cmd: Command, needles: &[String]) {
    let good = saved(d, rel);
    fs::write(d.join(rel), bad).unwrap();
    refused(d, cmd, needles);
    put_back(d, rel, &good);
}

#[test]
fn corrupt_files() {
    let dir = fresh();
    let d = dir.path();

    // `renew all` refused naming `rel` and what is wrong with it.
    let refused_all = |rel: &str, bad: &[u8], what: &str| {
        refused_with(d, rel, bad, renew(d), &[format!("{}: {what}", p(d, rel))]);
    };
    refused_all(
        "pki/apiserver.crt",
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        "invalid certificate",
    );
    // Truncated to its first half.
    let good = saved(d, "pki/apiserver.crt");
    refused_all(
        "pki/apiserver.crt",
        &good[..good.len() / 2],
        "invalid certificate",
    );
    refused_all(
        "pki/etcd/peer.key",
        b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        "invalid private key",
    );
    refused_all("admin.conf", b"garbage\n", "not a valid kubeconfig");
    refused_all("pki/ca.key", b"just text\n", "invalid private key");

    now_renews(d, renew(d), "pki/etcd/peer.key");
}

#[test]
fn keys_that_do_not_match_their_certificates() {
    let dir = fresh();
    let d = dir.path();

    // `key` holding the key in `donor` (all keys are mode 0600: only the bytes differ).
    let refused_with_key_of = |key: &str, donor: &str, cmd: Command| {
        let crt = key.replace(".key", ".crt");
        refused_with(
            d,
            key,
            &saved(d, donor),
            cmd,
            &[format!(
                "{}: private key does not match the certificate in {}",
                p(d, key),
                p(d, &crt)
            )],
        );
    };
    // A leaf key from another pair.
    refused_with_key_of("pki/apiserver.key", "pki/front-proxy-client.key", renew(d));
    // The signing CA's key is another CA's.
    refused_with_key_of(
        "pki/ca.key",
        "pki/front-proxy-ca.key",
        renew_at(d, RENEW_NOW, &["admin.conf"]),
    );

    // A kubeconfig whose embedded client key is not its certificate's.
    let good = saved(d, "super-admin.conf");
    let other = fs::read_to_string(d.join("admin.conf")).unwrap();
    let other_key = other
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-key-data: "))
        .unwrap()
        .to_string();
    let text = String::from_utf8(good.clone()).unwrap();
    let bad: String = text
        .lines()
        .map(|l| match l.trim().strip_prefix("client-key-data: ") {
            Some(_) => format!("    client-key-data: {other_key}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(bad.as_bytes(), good.as_slice());
    refused_with(
        d,
        "super-admin.conf",
        bad.as_bytes(),
        renew(d),
        &[format!(
            "{}: client key does not match the client certificate",
            p(d, "super-admin.conf")
        )],
    );

    now_renews(d, renew(d), "pki/apiserver.key");
}

#[test]
fn expired_issuer() {
    let dir = fresh();
    let d = dir.path();
    // The CAs live 87600h from INIT_NOW: expired on Dec 30, 2035. The leaves long before.
    refused(
        d,
        renew_at(d, "2036-06-01T00:00:00Z", &["all"]),
        &[
            format!("{}: expired on Dec 30, 2035 00:00 UTC", p(d, "pki/ca.crt")),
            format!(
                "{}: expired on Dec 30, 2035 00:00 UTC",
                p(d, "pki/etcd/ca.crt")
            ),
            format!(
                "{}: expired on Dec 30, 2035 00:00 UTC",
                p(d, "pki/front-proxy-ca.crt")
            ),
        ],
    );
    // Only etcd's CA is needed for etcd-server, and only it is named.
    let out = refused(
        d,
        renew_at(d, "2036-06-01T00:00:00Z", &["etcd-server"]),
        &[format!(
            "{}: expired on Dec 30, 2035 00:00 UTC",
            p(d, "pki/etcd/ca.crt")
        )],
    );
    assert!(!stderr(&out).contains(&p(d, "pki/ca.crt")));
    // Expired leaves under valid CAs are what renew is for.
    now_renews(
        d,
        renew_at(d, "2027-06-01T00:00:00Z", &["all"]),
        "pki/apiserver.crt",
    );
}

#[test]
fn issuer_that_is_not_a_ca() {
    let dir = fresh();
    let d = dir.path();
    let (crt, key) = (saved(d, "pki/ca.crt"), saved(d, "pki/ca.key"));
    // A leaf and its own key where the cluster CA should be.
    fs::copy(d.join("pki/apiserver.crt"), d.join("pki/ca.crt")).unwrap();
    fs::copy(d.join("pki/apiserver.key"), d.join("pki/ca.key")).unwrap();
    refused(
        d,
        renew(d),
        &[format!("{}: not a CA certificate", p(d, "pki/ca.crt"))],
    );
    put_back(d, "pki/ca.crt", &crt);
    put_back(d, "pki/ca.key", &key);
    now_renews(d, renew(d), "admin.conf");
}

#[test]
fn symlink_pointing_outside_the_cert_dir() {
    let dir = fresh();
    let d = dir.path();
    let outside = scratch();
    for (rel, name) in [
        ("pki/apiserver.crt", "apiserver.crt"),
        ("admin.conf", "admin.conf"),
    ] {
        let target = outside.path().join(name);
        fs::rename(d.join(rel), &target).unwrap();
        std::os::unix::fs::symlink(&target, d.join(rel)).unwrap();
    }
    let outside_before = snapshot(outside.path());
    refused(
        d,
        renew(d),
        &[
            format!(
                "{}: is a symbolic link to {}, outside the certificate directories",
                p(d, "pki/apiserver.crt"),
                outside.path().join("apiserver.crt").display()
            ),
            format!(
                "{}: is a symbolic link to {}, outside the certificate directories",
                p(d, "admin.conf"),
                outside.path().join("admin.conf").display()
            ),
        ],
    );
    assert!(
        snapshot(outside.path()) == outside_before,
        "the files the links point at changed"
    );
    // Naming only a certificate that is not a link works; the linked ones stay as they are.
    now_renews(
        d,
        renew_at(d, RENEW_NOW, &["front-proxy-client"]),
        "pki/front-proxy-client.crt",
    );
    assert!(snapshot(outside.path()) == outside_before);
    assert!(
        fs::symlink_metadata(d.join("pki/apiserver.crt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn read_only_directories() {
    let dir = fresh();
    let d = dir.path();
    give_to_nobody(d);
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();

    // The cert dir read-only: the journal cannot be written there, so nothing is staged; the
    // error names the first file renew wanted to write and why it could not.
    mode(&d.join("pki"), 0o555);
    refused(
        d,
        as_nobody(&renew(d)),
        &[
            ": cannot be written".into(),
            format!("{}: Permission denied", p(d, "pki/.kubepki-journal")),
        ],
    );
    mode(&d.join("pki"), 0o755);

    // etcd's directory read-only: files staged in pki before the failure are removed.
    mode(&d.join("pki/etcd"), 0o555);
    refused(
        d,
        as_nobody(&renew(d)),
        &[
            format!("error: {}/", p(d, "pki/etcd")),
            ".crt: Permission denied".into(),
        ],
    );
    mode(&d.join("pki/etcd"), 0o755);

    // The kubeconfig dir read-only: no kubeconfig staged, no backup directory made there.
    mode(d, 0o555);
    refused(
        d,
        as_nobody(&renew(d)),
        &[format!("{}: Permission denied", p(d, "admin.conf"))],
    );
    mode(d, 0o755);

    now_renews(d, as_nobody(&renew(d)), "pki/etcd/server.crt");
}

/// A tmpfs mounted for the test, unmounted (lazily if busy) when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        fs::create_dir_all(at).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
                .arg("kubepki-test")
                .arg(at),
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn full_backup_directory() {
    let dir = fresh();
    let d = dir.path();
    // The default backup location, <kubeconfig-dir>/kubepki-backups, on a 256 KiB tmpfs with
    // 240 KiB taken: the 18 files of a renewal (a page each at least) do not fit.
    let backups = d.join(BACKUPS);
    let m = Mount::tmpfs(&backups, "256k");
    write_file(&backups.join("filler"), &vec![0u8; 240 * 1024]);
    let out = refused(d, renew(d), &["No space left on device".into()]);
    // The error names the backup file that did not fit.
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap();
    assert!(
        line.starts_with(&format!(
            "error: {}/",
            backups.join("20260601T000000Z").display()
        )),
        "{line}"
    );
    // An explicit --backup-dir on the same full filesystem: the same.
    let mut c = renew(d);
    c.arg("--backup-dir").arg(backups.join("mine"));
    refused(
        d,
        c,
        &[
            format!("error: {}/", backups.join("mine").display()),
            "No space left on device".into(),
        ],
    );
    // With room again, the renewal goes through and its backup is complete.
    fs::remove_file(backups.join("filler")).unwrap();
    now_renews(d, renew(d), "pki/apiserver.crt");
    assert!(backups.join("20260601T000000Z/MANIFEST.json").is_file());
    drop(m);
}
