//! Crash safety of `init`: killed with SIGKILL after its Nth file operation, for every N until
//! a run completes (the test build's `KUBEPKI_TEST_KILL_AFTER_OPS` hook), the PKI directory
//! holds no inventory file at all until the run committed (only its journal and temp files),
//! and the next run (`certs recover`) leaves it wholly empty or wholly complete: every CA with
//! its key, every key matching its certificate, every certificate signed by its CA, never a
//! CA certificate without its key (which the next `init` would take for an external CA).
//! Recovery removes exactly the temp files its journal accounts for. A following `init`
//! completes an empty PKI and changes nothing in a complete one.
//!
//! A second test: after a renew killed mid-swap, `init` finishes the renewal before it reads
//! anything, and `init` and `generate-csr` wait for (or refuse) a run holding the lock.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use common::pki::{
    INIT_NOW, IP, NODE, RENEW_NOW, init_cmd, journal_state, kill_at_every_op, kubepki_in, leftovers,
};
use common::*;
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::key::{PrivateKey, public_key_from_pem};
use kubepki_pki::model::kubeconfig;

const MAX_OPS: u64 = 600;
const BATCH: u64 = 4;

/// Every file `init` writes, relative to the kubeconfig dir.
const CAS: &[&str] = &["pki/ca", "pki/front-proxy-ca", "pki/etcd/ca"];
/// (leaf, its CA), relative to the kubeconfig dir, without .crt/.key.
const LEAVES: &[(&str, &str)] = &[
    ("pki/apiserver", "pki/ca"),
    ("pki/apiserver-kubelet-client", "pki/ca"),
    ("pki/apiserver-etcd-client", "pki/etcd/ca"),
    ("pki/front-proxy-client", "pki/front-proxy-ca"),
    ("pki/etcd/server", "pki/etcd/ca"),
    ("pki/etcd/peer", "pki/etcd/ca"),
    ("pki/etcd/healthcheck-client", "pki/etcd/ca"),
];
const KUBECONFIGS: &[&str] = &[
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "kubelet.conf",
];

fn inventory() -> Vec<String> {
    let mut v: Vec<String> = CAS
        .iter()
        .chain(LEAVES.iter().map(|(l, _)| l))
        .flat_map(|b| [format!("{b}.crt"), format!("{b}.key")])
        .collect();
    v.extend(["pki/sa.key".into(), "pki/sa.pub".into()]);
    v.extend(KUBECONFIGS.iter().map(|s| s.to_string()));
    v
}

fn init_at(d: &Path) -> Command {
    init_cmd(d, &["--now", INIT_NOW])
}

fn cert(d: &Path, rel: &str) -> Certificate {
    let b = fs::read(d.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    Certificate::from_pem_chain(&b).unwrap_or_else(|e| panic!("{rel}: {e}"))[0].clone()
}

fn key(d: &Path, rel: &str) -> PrivateKey {
    let b = fs::read(d.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    PrivateKey::from_pem(&b).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every inventory file present and consistent with the others.
fn assert_complete(d: &Path, ctx: &str) {
    for b in CAS {
        let c = cert(d, &format!("{b}.crt"));
        assert!(c.is_ca, "{ctx}: {b}.crt is not a CA");
        assert!(
            key(d, &format!("{b}.key")).matches_public_key(c.public_key_der()),
            "{ctx}: {b}.key does not match {b}.crt"
        );
    }
    for (l, ca) in LEAVES {
        let c = cert(d, &format!("{l}.crt"));
        assert!(
            key(d, &format!("{l}.key")).matches_public_key(c.public_key_der()),
            "{ctx}: {l}.key does not match"
        );
        assert!(
            c.is_signed_by(&cert(d, &format!("{ca}.crt"))),
            "{ctx}: {l}.crt is not signed by {ca}.crt"
        );
    }
    let sa = key(d, "pki/sa.key");
    let public = public_key_from_pem(&fs::read(d.join("pki/sa.pub")).unwrap()).unwrap();
    assert!(
        sa.matches_public_key(&public),
        "{ctx}: sa.pub is not sa.key's"
    );
    let ca_pem = fs::read(d.join("pki/ca.crt")).unwrap();
    let ca = cert(d, "pki/ca.crt");
    for kc in KUBECONFIGS {
        let creds = kubeconfig::read_credentials(&d.join(kc))
            .unwrap_or_else(|e| panic!("{ctx}: {kc}: {e}"));
        let c = Certificate::from_pem_chain(&creds.cert_pem).unwrap()[0].clone();
        let k = PrivateKey::from_pem(creds.key_pem.as_deref().unwrap()).unwrap();
        assert!(k.matches_public_key(c.public_key_der()), "{ctx}: {kc} key");
        assert!(c.is_signed_by(&ca), "{ctx}: {kc} is not signed by ca.crt");
        assert_eq!(
            creds.ca_pem.as_deref(),
            Some(ca_pem.as_slice()),
            "{ctx}: {kc}: certificate-authority-data is not ca.crt"
        );
    }
}

fn present(d: &Path) -> Vec<String> {
    inventory()
        .into_iter()
        .filter(|f| d.join(f).exists())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Complete,
}

/// How a killed run came out after recovery, and the journal state it had left.
type Case = (State, Option<String>);

/// Kills `init` after operation `n` in a fresh directory, recovers, judges. None: the run
/// completed.
fn crash_and_recover(n: u64) -> Option<Case> {
    let work = scratch();
    let d = work.path();
    let ctx = format!("init killed after op {n}");
    let mut c = init_at(d);
    c.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
    let out = c.output().expect("running kubepki");
    if out.status.success() {
        assert_complete(d, &format!("completed run (limit {n})"));
        return None;
    }
    assert_killed(&out, &ctx);
    let journal = journal_state(&d.join("pki"));
    let there = present(d);
    // Before the commit not one inventory file may be in place: a file in place is used by
    // the next run (a ca.crt without ca.key would read as an external CA).
    match journal.as_deref() {
        Some("committed") => {}
        Some(_) => assert!(
            there.is_empty(),
            "{ctx}: journal {journal:?}, yet files are in place: {there:?}"
        ),
        // No journal: not begun, or finished (the journal is removed last).
        None => assert!(
            there.is_empty() || there.len() == inventory().len(),
            "{ctx}: no journal, and a partial PKI: {there:?}"
        ),
    }

    let rec = run_ok(&mut kubepki_in(d, &["certs", "recover"]));
    let (so, se) = (stdout(&rec), stderr(&rec));
    match journal.as_deref() {
        Some("committed") => assert!(
            so.contains("[recover] completed an interrupted init"),
            "{ctx}:\n{so}"
        ),
        Some("prepared") if !leftovers(d).is_empty() || so.contains("temporary") => assert!(
            so.contains("[recover] an interrupted init stopped before changing anything"),
            "{ctx}:\n{so}"
        ),
        _ => {}
    }
    assert!(
        !se.contains("no journal accounts for"),
        "{ctx}: every temp file is accounted for:\n{se}"
    );
    let left = leftovers(d);
    assert!(
        left.is_empty(),
        "{ctx}: left behind after recovery: {left:?}"
    );
    let there = present(d);
    let state = if there.is_empty() {
        State::Empty
    } else {
        assert_eq!(
            there.len(),
            inventory().len(),
            "{ctx}: a partial PKI after recovery: {there:?}"
        );
        assert_complete(d, &ctx);
        State::Complete
    };
    if journal.as_deref() == Some("committed") {
        assert_eq!(state, State::Complete, "{ctx}: rolled forward");
    }

    // The next init completes an empty PKI, and leaves a complete one byte-identical.
    let before = snapshot(d);
    let again = run_ok(&mut init_at(d));
    assert_complete(d, &format!("{ctx}, then init"));
    if state == State::Complete {
        assert!(
            snapshot(d) == before,
            "{ctx}: init changed a complete PKI:\n{}",
            stdout(&again)
        );
        assert!(!stdout(&again).contains("Generated"), "{}", stdout(&again));
    }
    Some((state, journal))
}

#[test]
fn init_killed_after_every_file_operation_leaves_no_half_pki() {
    let (cases, total) = kill_at_every_op(MAX_OPS, BATCH, crash_and_recover);
    let empty: Vec<u64> = cases
        .iter()
        .filter(|(_, c)| c.0 == State::Empty)
        .map(|(k, _)| *k)
        .collect();
    let complete: Vec<u64> = cases
        .iter()
        .filter(|(_, c)| c.0 == State::Complete)
        .map(|(k, _)| *k)
        .collect();
    eprintln!(
        "init: {total} file operations; killed after each: {} recovered empty, {} complete",
        empty.len(),
        complete.len()
    );
    // 31 files staged and renamed: well over 100 operations.
    assert!(total > 100, "only {total} operations counted");
    assert!(
        cases
            .values()
            .any(|c| c.1.as_deref() == Some("prepared") && c.0 == State::Empty),
        "no kill left a prepared journal to undo"
    );
    assert!(
        cases.values().any(|c| c.1.as_deref() == Some("committed")),
        "no kill left a committed journal to finish"
    );
    if let (Some(lo), Some(hi)) = (empty.last(), complete.first()) {
        assert!(lo < hi, "empty after complete: {empty:?} / {complete:?}");
    }
}

fn run_with_lock_held(d: &Path, cmd: &mut Command) -> Output {
    // A renew that holds the lock: the flock of the cert dir, as kubepki takes it.
    let lock = fs::File::open(d.join("pki")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let out = cmd.output().unwrap();
    drop(held);
    out
}

#[test]
fn init_and_generate_csr_respect_the_lock_and_finish_a_journal_first() {
    let dir = scratch();
    let d = dir.path();
    init_ecdsa(d, NODE, IP, &["--now", INIT_NOW]);
    fs::remove_file(d.join("admin.conf")).unwrap();

    // Without --wait: refused, nothing written.
    let before = snapshot(d);
    let out = run_with_lock_held(d, &mut init_at(d));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another kubepki run is working on this directory"),
        "{}",
        stderr(&out)
    );
    assert!(snapshot(d) == before);
    let mut csr = kubepki_in(
        d,
        &[
            "certs",
            "generate-csr",
            "admin.conf",
            "--node-name",
            NODE,
            "--apiserver-advertise-address",
            IP,
        ],
    );
    let out = run_with_lock_held(d, &mut csr);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("holds the lock"), "{}", stderr(&out));
    assert!(snapshot(d) == before);

    // With --wait: it waits for the holder, then runs.
    let lock = fs::File::open(d.join("pki")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut c = init_at(d);
    c.arg("--wait");
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        !d.join("admin.conf").exists(),
        "init wrote while another run held the lock"
    );
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.join("admin.conf").exists());

    // A renew killed after its journal was committed, before its swap finished: init
    // finishes it before reading (else it would find keys that do not match their
    // certificates and refuse).
    let committed_kill = (1..400)
        .find(|&n| {
            let probe = scratch();
            copy_dir(d, probe.path());
            let mut r = kubepki_in(probe.path(), &["certs", "renew", "all", "--now", RENEW_NOW]);
            r.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
            let o = r.output().unwrap();
            o.status.signal() == Some(9)
                && journal_state(&probe.path().join("pki")).as_deref() == Some("committed")
                && fs::read_dir(probe.path().join("pki"))
                    .unwrap()
                    .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".new"))
        })
        .expect("a kill point with a committed journal and files still to swap");
    let mut r = kubepki_in(d, &["certs", "renew", "all", "--now", RENEW_NOW]);
    r.env("KUBEPKI_TEST_KILL_AFTER_OPS", committed_kill.to_string());
    assert_eq!(r.output().unwrap().status.signal(), Some(9));
    let out = run_ok(&mut init_at(d));
    assert!(
        stdout(&out).contains("[recover] completed an interrupted renew"),
        "{}",
        stdout(&out)
    );
    assert!(journal_state(&d.join("pki")).is_none());
    assert_complete(d, "init after an interrupted renew");
}

fn copy_dir(from: &Path, to: &Path) {
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to),
    );
}
