//! Hostile conditions for the commands that write: another working directory, umask 000,
//! endless and special files, an edited backup manifest, a custom backup directory, and a
//! PKI directory whose name is not UTF-8. Each case names the defect it guards against.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::{INIT_NOW, IP, NODE, RENEW_NOW, backups, journal_state, kubepki_in};
use common::*;

/// `init` run again over an existing PKI, as a user would to fill in what is missing.
const INIT_AGAIN: &[&str] = &[
    "init",
    "--node-name",
    NODE,
    "--apiserver-advertise-address",
    IP,
    "--now",
    INIT_NOW,
];

/// The first N at which `cmd` (with the kill hook) dies leaving a state `want` accepts.
fn kill_point(
    mut make: impl FnMut() -> (tempfile::TempDir, Command),
    want: impl Fn(&Path) -> bool,
) -> u64 {
    for n in 1..600 {
        let (dir, mut cmd) = make();
        cmd.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
        let out = cmd.output().unwrap();
        assert!(
            out.status.signal() == Some(9),
            "no kill point found before the run completed (n = {n})"
        );
        if want(dir.path()) {
            return n;
        }
    }
    panic!("no such kill point")
}

/// Defect: the renew journal stored targets relative to the working directory, so a recovery
/// run from elsewhere renamed new keys into *that* directory.
#[test]
fn recovery_from_another_working_directory() {
    let make = || {
        let dir = scratch();
        let d = dir.path();
        run_ok(
            kubepki()
                .current_dir(d)
                .args(["init", "--cert-dir", "pki", "--kubeconfig-dir", "."])
                .args(["--node-name", NODE, "--apiserver-advertise-address", IP])
                .args(["--encryption-algorithm", "ECDSA-P256", "--now", INIT_NOW]),
        );
        let mut c = kubepki();
        c.current_dir(d)
            .args([
                "certs",
                "renew",
                "all",
                "--cert-dir",
                "pki",
                "--kubeconfig-dir",
                ".",
            ])
            .args(["--now", RENEW_NOW]);
        (dir, c)
    };
    let committed_with_work_left = |d: &Path| {
        journal_state(&d.join("pki")).as_deref() == Some("committed")
            && fs::read_dir(d.join("pki"))
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".new"))
    };
    let n = kill_point(make, committed_with_work_left);
    let (dir, mut cmd) = make();
    let d = dir.path();
    cmd.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
    let killed = cmd.output().unwrap();
    assert_eq!(killed.status.signal(), Some(9));

    // check-expiration's advice, followed from another directory, finishes the renewal.
    let elsewhere = scratch();
    let ce = kubepki()
        .current_dir(d)
        .args([
            "certs",
            "check-expiration",
            "--cert-dir",
            "pki",
            "--kubeconfig-dir",
            ".",
        ])
        .output()
        .unwrap();
    let advice = stderr(&ce);
    let cmdline = advice
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in the advice:\n{advice}"));
    let args: Vec<&str> = cmdline.split_whitespace().skip(1).collect();
    assert_eq!(&args[..2], ["certs", "recover"], "{advice}");
    let out = run_ok(kubepki().current_dir(elsewhere.path()).args(&args));
    assert!(
        stdout(&out).contains("[recover] completed an interrupted renew"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "recovery wrote into the working directory"
    );
    // Everything works again, from anywhere, with absolute directories.
    let abs = |p: &str| d.join(p).display().to_string();
    let dirs = [
        "--cert-dir".to_string(),
        abs("pki"),
        "--kubeconfig-dir".into(),
        abs("."),
    ];
    let ce = run_ok(
        kubepki()
            .current_dir(elsewhere.path())
            .args(["certs", "check-expiration"])
            .args(&dirs)
            .args(["--now", RENEW_NOW]),
    );
    assert!(!stdout(&ce).contains("MISSING"), "{}", stdout(&ce));
    assert!(stdout(&ce).contains("May 31, 2027") || stdout(&ce).contains("Jun 01, 2027"));
    run_ok(
        kubepki()
            .current_dir(elsewhere.path())
            .args(["certs", "renew", "apiserver"])
            .args(&dirs)
            .args(["--now", RENEW_NOW]),
    );
    let b = backups(d);
    assert!(b.len() >= 2, "{b:?}");
    run_ok(
        kubepki()
            .current_dir(elsewhere.path())
            .args(["certs", "restore"])
            .arg(&b[0])
            .args(&dirs),
    );
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

/// Defect: restore trusted MANIFEST.json, so an edited entry wrote outside the PKI, setuid.
#[test]
fn restore_writes_only_kubepki_files_of_the_named_pki() {
    let dir = scratch();
    let d = dir.path();
    init_ecdsa(d, NODE, IP, &["--now", INIT_NOW]);
    run_ok(&mut kubepki_in(
        d,
        &["certs", "renew", "apiserver", "--now", RENEW_NOW],
    ));
    let b = backups(d).remove(0);
    let mp = b.join("MANIFEST.json");
    let pristine = fs::read(&mp).unwrap();
    let outside = d.join("OUTSIDE-written-by-restore");
    for (field, value) in [
        ("original", outside.display().to_string()),
        ("original", d.join("pki/evil.crt").display().to_string()),
        ("original", "/etc/cron.d/kubepki".to_string()),
    ] {
        let mut m: serde_json::Value = serde_json::from_slice(&pristine).unwrap();
        m["files"][0][field] = value.clone().into();
        m["files"][0]["mode"] = 0o4755.into();
        fs::write(&mp, serde_json::to_vec(&m).unwrap()).unwrap();
        let before = snapshot(d);
        let out = run_fail(&mut common::pki::restore(d, &b, RENEW_NOW, &[]));
        assert!(
            stderr(&out).contains("not a file kubepki manages"),
            "{value}: {}",
            stderr(&out)
        );
        assert!(snapshot(d) == before, "{value}: something was written");
    }
    assert!(!outside.exists() && !Path::new("/etc/cron.d/kubepki").exists());
    // A manifest that claims another PKI: the restore names the flags to pass, writes nothing.
    let mut m: serde_json::Value = serde_json::from_slice(&pristine).unwrap();
    m["cert_dir"] = "/tmp/elsewhere/pki".into();
    fs::write(&mp, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = run_fail(&mut common::pki::restore(d, &b, RENEW_NOW, &[]));
    assert!(
        stderr(&out).contains("pass --cert-dir /tmp/elsewhere/pki"),
        "{}",
        stderr(&out)
    );
    // The genuine manifest restores, with kubepki's modes even if the file's mode changed.
    fs::write(&mp, &pristine).unwrap();
    fs::set_permissions(
        d.join("pki/apiserver.key"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    run_ok(&mut common::pki::restore(d, &b, RENEW_NOW, &[]));
    assert_eq!(
        fs::metadata(d.join("pki/apiserver.key")).unwrap().mode() & 0o7777,
        0o600
    );
}

fn umask000(cmd: &Command) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    c
}

/// Defect: under umask 000, kubepki-backups/ and its subdirectories were made 0777.
#[test]
fn umask_000_never_loosens_modes() {
    let dir = scratch();
    let d = dir.path();
    let mut init = kubepki_in(
        d,
        &[
            "init",
            "--node-name",
            NODE,
            "--apiserver-advertise-address",
            IP,
        ],
    );
    init.args(["--encryption-algorithm", "ECDSA-P256", "--now", INIT_NOW]);
    run_ok(&mut umask000(&init));
    run_ok(&mut umask000(&kubepki_in(
        d,
        &["certs", "renew", "all", "--now", RENEW_NOW],
    )));
    for (p, _, mode) in snapshot(d) {
        let rel = p.strip_prefix(d).unwrap().display().to_string();
        let m = mode & 0o7777;
        let is_dir = p.is_dir();
        let want = if rel.starts_with("kubepki-backups") {
            if is_dir { 0o700 } else { 0o600 }
        } else if is_dir {
            0o755
        } else if rel.ends_with(".crt") || rel.ends_with(".pub") {
            0o644
        } else {
            0o600
        };
        assert_eq!(m, want, "{rel}: mode {m:o}");
    }
}

/// Defect: a kubeconfig whose client-certificate is /dev/zero made init and renew read until
/// out of memory. Also a FIFO (an endless read that never starts) and a huge file.
#[test]
fn endless_and_special_files_are_refused_at_once() {
    let dir = scratch();
    let d = dir.path();
    init_ecdsa(d, NODE, IP, &["--now", INIT_NOW]);
    let admin = d.join("admin.conf");
    let original = fs::read_to_string(&admin).unwrap();
    let fifo = d.join("fifo.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let huge = d.join("huge.pem");
    fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap();
    for (target, what) in [
        (PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo.clone(), "not a regular file"),
        (huge.clone(), "larger than"),
    ] {
        let mut doc: serde_json::Value = serde_saphyr::from_str(&original).unwrap();
        let user = &mut doc["users"][0]["user"];
        user.as_object_mut()
            .unwrap()
            .remove("client-certificate-data");
        user["client-certificate"] = target.display().to_string().into();
        fs::write(&admin, serde_json::to_string(&doc).unwrap()).unwrap();
        for args in [
            vec!["certs", "renew", "admin.conf", "--now", RENEW_NOW],
            INIT_AGAIN.to_vec(),
            vec!["certs", "check-expiration", "--now", RENEW_NOW],
        ] {
            let started = Instant::now();
            let out = kubepki_in(d, &args).output().unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{args:?} on {}: took {:?}",
                target.display(),
                started.elapsed()
            );
            let err = stderr(&out);
            assert!(!err.contains("panicked"), "{err}");
            assert_eq!(
                out.status.code(),
                Some(1),
                "{args:?} on {}: {err}",
                target.display()
            );
            assert!(
                err.contains(&target.display().to_string()) && err.contains(what),
                "{args:?}: the error names {} and says {what:?}:\n{err}",
                target.display()
            );
        }
    }
}

/// Defect: an interrupted backup under a custom --backup-dir was never cleaned up and kept
/// copies of private keys.
#[test]
fn interrupted_backup_in_a_custom_directory_is_removed() {
    let custom_root = scratch();
    let make = || {
        let dir = scratch();
        init_ecdsa(dir.path(), NODE, IP, &["--now", INIT_NOW]);
        let mut c = kubepki_in(dir.path(), &["certs", "renew", "all", "--now", RENEW_NOW]);
        c.arg("--backup-dir").arg(custom_root.path().join(format!(
            "b-{}",
            dir.path().file_name().unwrap().to_string_lossy()
        )));
        (dir, c)
    };
    let staging_with_keys = |_: &Path| {
        fs::read_dir(custom_root.path()).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name()
                .to_string_lossy()
                .starts_with(".kubepki-backup-")
                && snapshot(&e.path())
                    .iter()
                    .any(|(p, _, _)| p.to_string_lossy().ends_with(".key"))
        })
    };
    let n = kill_point(make, staging_with_keys);
    for e in fs::read_dir(custom_root.path()).unwrap() {
        let _ = fs::remove_dir_all(e.unwrap().path());
    }
    let (dir, mut cmd) = make();
    cmd.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
    assert_eq!(cmd.output().unwrap().status.signal(), Some(9));
    assert!(staging_with_keys(dir.path()));
    let out = run_ok(&mut kubepki_in(dir.path(), &["certs", "recover"]));
    assert!(
        stdout(&out).contains("stopped before changing anything"),
        "{}",
        stdout(&out)
    );
    let left: Vec<_> = snapshot(custom_root.path())
        .into_iter()
        .map(|(p, _, _)| p)
        .collect();
    assert!(left.is_empty(), "left in the custom backup dir: {left:?}");
}

/// Defect: a non-UTF-8 cert dir made renew panic ("path contains invalid UTF-8") and leave a
/// .kubepki-backup-* with keys each time.
#[test]
fn a_pki_whose_path_is_not_utf8() {
    let dir = scratch();
    let d = dir.path().join(OsStr::from_bytes(b"node-\xff\xfe"));
    fs::create_dir(&d).unwrap();
    init_ecdsa(&d, NODE, IP, &["--now", INIT_NOW]);
    let out = run_ok(&mut kubepki_in(
        &d,
        &["certs", "renew", "all", "--now", RENEW_NOW],
    ));
    assert!(stdout(&out).contains("certificate apiserver renewed"));
    let b = backups(&d);
    assert_eq!(b.len(), 1);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(b[0].join("MANIFEST.json")).unwrap()).unwrap();
    assert!(
        m["cert_dir"]["bytes"].is_array(),
        "recorded byte-exact: {m}"
    );
    run_ok(&mut common::pki::restore(&d, &b[0], RENEW_NOW, &[]));
    let ce = run_ok(&mut kubepki_in(
        &d,
        &["certs", "check-expiration", "--now", RENEW_NOW],
    ));
    assert!(
        stdout(&ce).contains("Jan 01, 2027"),
        "restored: {}",
        stdout(&ce)
    );
    let left: Vec<_> = snapshot(dir.path())
        .into_iter()
        .filter(|(p, _, _)| p.to_string_lossy().contains(".kubepki"))
        .collect();
    assert!(
        left.is_empty(),
        "{:?}",
        left.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
}

/// Defect: a ca.crt with the CA's private key appended was embedded whole into every
/// kubeconfig kubepki wrote (certificate-authority-data), publishing the CA key. A certificate
/// file must hold certificates only; the kubeconfigs embed the parsed certificates.
#[test]
fn a_private_key_in_a_certificate_file_is_refused_never_copied() {
    let dir = scratch();
    let d = dir.path();
    init_ecdsa(d, NODE, IP, &["--now", INIT_NOW]);
    let ca = d.join("pki/ca.crt");
    let mut with_key = fs::read(&ca).unwrap();
    with_key.extend(fs::read(d.join("pki/ca.key")).unwrap());
    fs::write(&ca, &with_key).unwrap();
    fs::remove_file(d.join("super-admin.conf")).unwrap();
    let before = snapshot(d);
    for args in [
        vec![
            "kubeconfig",
            "user",
            "--client-name",
            "alice",
            "--now",
            RENEW_NOW,
        ],
        vec!["certs", "renew", "admin.conf", "--now", RENEW_NOW],
        INIT_AGAIN.to_vec(),
        vec!["certs", "check-expiration", "--now", RENEW_NOW],
    ] {
        let out = kubepki_in(d, &args).output().unwrap();
        let (o, e) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {o}{e}");
        assert!(
            e.contains(&ca.display().to_string()) && e.contains("must not hold a private key"),
            "{args:?}: {e}"
        );
        assert!(
            !o.contains("PRIVATE KEY") && !o.contains("LS0tLS1CRUdJTiBFQyBQUklWQVRF"),
            "{args:?}: {o}"
        );
    }
    assert!(snapshot(d) == before, "nothing written");
}

/// Defect: a PKI copied (or moved) with the journal of an interrupted renewal made recovery of
/// the copy finish the swap in the *original* directory (without its lock) and leave the copy
/// half-swapped, reporting success. The copy's recovery now refuses, names the original, and
/// touches neither.
#[test]
fn a_copied_pki_with_a_journal_is_not_recovered_into_the_original() {
    let make = || {
        let dir = scratch();
        init_ecdsa(&dir.path().join("a"), NODE, IP, &["--now", INIT_NOW]);
        let c = kubepki_in(
            &dir.path().join("a"),
            &["certs", "renew", "all", "--now", RENEW_NOW],
        );
        (dir, c)
    };
    let committed = |d: &Path| journal_state(&d.join("a/pki")).as_deref() == Some("committed");
    let n = kill_point(make, committed);
    let (dir, mut cmd) = make();
    cmd.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
    assert_eq!(cmd.output().unwrap().status.signal(), Some(9));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_ok(Command::new("cp").arg("-a").arg(&a).arg(&b));
    let (before_a, before_b) = (snapshot(&a), snapshot(&b));
    let out = run_fail(&mut kubepki_in(&b, &["certs", "recover"]));
    let e = stderr(&out);
    assert!(
        e.contains("not this one")
            && e.contains(&format!("--cert-dir {}", a.join("pki").display())),
        "{e}"
    );
    assert!(snapshot(&a) == before_a, "the original was touched");
    assert!(snapshot(&b) == before_b, "the copy was touched");
    // Where it ran, it finishes.
    let out = run_ok(&mut kubepki_in(&a, &["certs", "recover"]));
    assert!(
        stdout(&out).contains("completed an interrupted renew"),
        "{}",
        stdout(&out)
    );
}

/// Defect: `certs import --csr-dir` replaced an existing but damaged kubeconfig (its client
/// certificate unreadable, its key intact) without a backup, taking it for the partial
/// kubeconfig generate-csr writes in place.
#[test]
fn import_backs_up_a_damaged_kubeconfig_it_replaces() {
    let dir = scratch();
    let d = dir.path();
    init_ecdsa(d, NODE, IP, &["--now", INIT_NOW]);
    let csrs = d.join("csrs");
    let mut g = kubepki_in(
        d,
        &["certs", "generate-csr", "admin.conf", "--node-name", NODE],
    );
    g.args(["--apiserver-advertise-address", IP, "--csr-dir"])
        .arg(&csrs);
    run_ok(&mut g);
    // Sign the request with the cluster CA, as an external CA would (openssl, client usage).
    openssl_sign(
        &csrs.join("admin.conf.csr"),
        (&d.join("pki/ca.crt"), &d.join("pki/ca.key")),
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        30,
        "0x7a11",
        &csrs.join("admin.conf.crt"),
    );
    // Damage admin.conf's certificate, keep its key.
    let admin = d.join("admin.conf");
    let damaged: String = fs::read_to_string(&admin)
        .unwrap()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("client-certificate-data:") {
                "    client-certificate-data: not!base64".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&admin, &damaged).unwrap();
    let mut imp = kubepki_in(d, &["certs", "import", "--now", RENEW_NOW]);
    imp.arg("--csr-dir").arg(&csrs);
    let out = run_ok(&mut imp);
    assert!(stdout(&out).contains("backed up to"), "{}", stdout(&out));
    let b = backups(d);
    assert_eq!(b.len(), 1, "{b:?}");
    let kept = snapshot(&b[0])
        .into_iter()
        .find(|(p, _, _)| p.ends_with("admin.conf"))
        .expect("admin.conf in the backup");
    assert_eq!(String::from_utf8(kept.1).unwrap(), damaged);
}

/// Defect (second review): recovery compared directories as spelled, so a renewal run through
/// a symbolic link (or `a/../a`) could be finished only through the same spelling. One
/// directory is one PKI, however it is named.
#[test]
fn one_pki_whatever_its_directories_are_called() {
    let make = || {
        let dir = scratch();
        let real = dir.path().join("real");
        init_ecdsa(&real, NODE, IP, &["--now", INIT_NOW]);
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let c = kubepki_in(
            &dir.path().join("link"),
            &["certs", "renew", "all", "--now", RENEW_NOW],
        );
        (dir, c)
    };
    let committed = |d: &Path| journal_state(&d.join("real/pki")).as_deref() == Some("committed");
    let n = kill_point(make, committed);
    let (dir, mut cmd) = make();
    cmd.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
    assert_eq!(cmd.output().unwrap().status.signal(), Some(9));
    let other = dir.path().join("link/../real");
    let out = run_ok(&mut kubepki_in(&other, &["certs", "recover"]));
    assert!(
        stdout(&out).contains("completed an interrupted renew"),
        "{}",
        stdout(&out)
    );
    // And the backup it made restores through yet another spelling.
    let b = backups(&dir.path().join("real"));
    run_ok(&mut common::pki::restore(
        &dir.path().join("real"),
        &b[0],
        RENEW_NOW,
        &[],
    ));
}
