//! Crash safety of `certs renew all`: killed with SIGKILL after its Nth file operation, for
//! every N until a run completes (the `KUBEPKI_TEST_KILL_AFTER_OPS` hook), the next kubepki run
//! leaves a PKI that is wholly old (byte-identical to before) or wholly new (every renewed file
//! replaced, every key matching its certificate, a complete backup of the old files), with no
//! temp, journal or half-made backup left anywhere, and `check-expiration` shows no
//! `!MISSING!` row.
//!
//! One pristine PKI is made with `kubepki init`; each N starts from a fresh copy of it. The
//! recovering run is `certs renew all --expiring-within 1h`: it takes the lock, recovers (rolls
//! the interrupted swap forward from the journal, or removes what a run killed before its
//! journal staged) and then has nothing due, so what is on disk afterwards is exactly what the
//! recovery made. Times come from the hidden `--now` flag: nothing sleeps.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::pki::*;
use common::*;
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::key::PrivateKey;
use kubepki_pki::model::kubeconfig;

/// Leaves made at INIT_NOW expire a year later; renewed at RENEW_NOW, a year after that.
const OLD_EXPIRY: &str = "Jan 01, 2027 00:00 UTC";
const NEW_EXPIRY: &str = "Jun 01, 2027 00:00 UTC";
const MAX_OPS: u64 = 500;
/// Kill points tried side by side.
const BATCH: u64 = 4;

/// Every file below `root` (directories left out), backups included.
fn tree(root: &Path) -> Tree {
    tree_of(root, snapshot(root), |p| {
        !fs::symlink_metadata(p).unwrap().is_dir()
    })
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
            fs::set_permissions(&dst, fs::metadata(&src).unwrap().permissions()).unwrap();
        }
    }
}

fn init(dir: &Path, alg: &str) {
    init_node(
        dir,
        NODE,
        IP.parse().unwrap(),
        &["--encryption-algorithm", alg, "--now", INIT_NOW],
    );
}

/// kubepki `args` on the node in `d`, at RENEW_NOW.
fn at_renew_now(d: &Path, args: &[&str]) -> Command {
    let mut c = kubepki_in(d, args);
    c.args(["--now", RENEW_NOW]);
    c
}

/// `certs renew all`, killed after operation `n` (if it gets that far).
fn renew_killed_after(d: &Path, n: u64) -> std::process::Output {
    let mut c = at_renew_now(d, &["certs", "renew", "all"]);
    c.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
    c.output().expect("running kubepki")
}

fn check_expiration(d: &Path) -> std::process::Output {
    run_ok(&mut at_renew_now(d, &["certs", "check-expiration"]))
}

fn first_cert(bytes: &[u8], what: &str) -> Certificate {
    Certificate::from_pem_chain(bytes)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{what}: no certificate"))
}

/// The whole-PKI verdict after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Old,
    New,
}

/// Asserts `d` is wholly old or wholly new compared with `pristine`, and consistent.
fn verdict(d: &Path, pristine: &Tree, ctx: &str) -> State {
    let now = tree(d);
    let renewed = files_of_all(&cert_names());
    // Files renew never touches are byte-identical, with their modes, whatever happened.
    for (rel, (bytes, mode)) in pristine {
        let r = rel.to_string_lossy();
        if renewed.contains(&*r) {
            continue;
        }
        let got = now
            .get(rel)
            .unwrap_or_else(|| panic!("{ctx}: {r} disappeared"));
        assert!(
            got.0 == *bytes && got.1 == *mode,
            "{ctx}: {r} changed although renew all never replaces it"
        );
    }
    let mut same = Vec::new();
    let mut changed = Vec::new();
    for r in &renewed {
        let rel = PathBuf::from(r);
        let (pb, pm) = &pristine[&rel];
        let (nb, nm) = now
            .get(&rel)
            .unwrap_or_else(|| panic!("{ctx}: {r} is missing"));
        assert_eq!(nm, pm, "{ctx}: mode of {r}");
        if nb == pb {
            same.push(r);
        } else {
            changed.push(r);
        }
    }
    assert!(
        same.is_empty() || changed.is_empty(),
        "{ctx}: a MIX of old and new files\n  old: {same:?}\n  new: {changed:?}"
    );
    // Nothing else in the cert dir or beside the kubeconfigs (backups aside).
    let extra: Vec<_> = now
        .keys()
        .filter(|k| !pristine.contains_key(*k) && !k.starts_with(BACKUPS))
        .collect();
    assert!(extra.is_empty(), "{ctx}: unexpected files {extra:?}");
    let left = leftovers(d);
    assert!(
        left.is_empty(),
        "{ctx}: temp or journal files left: {left:?}"
    );

    let state = if changed.is_empty() {
        State::Old
    } else {
        State::New
    };
    if state == State::New {
        // Each new key belongs to its new certificate, signed by the unchanged CA.
        for l in LEAVES {
            let (crt, key, ca) = (&l.crt(), &l.key(), l.issuer);
            let cert = first_cert(&now[Path::new(crt)].0, crt);
            let k = PrivateKey::from_pem(&now[Path::new(key)].0)
                .unwrap_or_else(|e| panic!("{ctx}: {key}: {e}"));
            let ca_cert = first_cert(&now[Path::new(ca)].0, ca);
            assert!(
                k.matches_public_key(cert.public_key_der()),
                "{ctx}: {key} does not match {crt}"
            );
            assert!(
                cert.is_signed_by(&ca_cert),
                "{ctx}: {crt} not signed by {ca}"
            );
            // The key algorithm is kept (no --encryption-algorithm given).
            let old = PrivateKey::from_pem(&pristine[Path::new(key)].0).unwrap();
            assert!(
                k.algorithm() == old.algorithm(),
                "{ctx}: {key}: algorithm changed from {:?} to {:?}",
                old.algorithm(),
                k.algorithm()
            );
        }
        let ca = &now[Path::new("pki/ca.crt")].0;
        let ca_cert = first_cert(ca, "pki/ca.crt");
        for kc in KUBECONFIGS {
            let creds = kubeconfig::read_credentials(&d.join(kc))
                .unwrap_or_else(|e| panic!("{ctx}: {kc}: {e}"));
            let cert = first_cert(&creds.cert_pem, kc);
            let k = PrivateKey::from_pem(creds.key_pem.as_deref().expect("embedded key"))
                .unwrap_or_else(|e| panic!("{ctx}: {kc} key: {e}"));
            assert!(
                k.matches_public_key(cert.public_key_der()),
                "{ctx}: {kc}: client key does not match its certificate"
            );
            assert!(cert.is_signed_by(&ca_cert), "{ctx}: {kc} not signed by ca");
            assert_eq!(
                creds.ca_pem.as_deref(),
                Some(ca.as_slice()),
                "{ctx}: {kc}: certificate-authority-data is not ca.crt"
            );
        }
        // The old files are in exactly one complete backup, byte for byte.
        let b = backups(d);
        assert_eq!(b.len(), 1, "{ctx}: backups {b:?}");
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(b[0].join("MANIFEST.json")).unwrap_or_else(|e| {
                panic!(
                    "{ctx}: wholly new, but {} has no MANIFEST.json: {e}",
                    b[0].display()
                )
            }))
            .unwrap();
        let files = m["files"].as_array().unwrap();
        assert_eq!(files.len(), renewed.len(), "{ctx}: backup manifest");
        for f in files {
            let original = PathBuf::from(f["original"].as_str().unwrap());
            let rel = original.strip_prefix(d).unwrap();
            let stored = fs::read(b[0].join(f["stored"].as_str().unwrap())).unwrap();
            assert!(
                stored == pristine[rel].0,
                "{ctx}: backup of {} is not the old file",
                rel.display()
            );
        }
    } else {
        // Wholly old: no backup, or only complete ones (a kill after the backup, before the
        // journal, keeps it: it is a valid backup of the current files).
        for b in backups(d) {
            assert!(
                b.join("MANIFEST.json").is_file(),
                "{ctx}: incomplete backup {} left behind",
                b.display()
            );
        }
    }

    // check-expiration: every row present, every renewed one with the expected date.
    let out = stdout(&check_expiration(d));
    assert!(!out.contains("MISSING"), "{ctx}: check-expiration:\n{out}");
    let want = if state == State::New {
        NEW_EXPIRY
    } else {
        OLD_EXPIRY
    };
    for name in cert_names() {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{ctx}: no {name} row:\n{out}"));
        assert!(line.contains(want), "{ctx}: {line:?} should say {want}");
    }
    state
}

/// One kill point: how the PKI came out, and what the kill had left behind.
struct Case {
    state: State,
    /// A committed journal: the next run must roll forward.
    journal_seen: bool,
    temps_seen: bool,
}

/// Kills `renew all` after operation `n` on a copy of `pristine_dir`, recovers, and judges.
/// Returns None when the run completed without being killed.
fn crash_and_recover(pristine_dir: &Path, pristine: &Tree, n: u64, alg: &str) -> Option<Case> {
    let work = scratch();
    let d = work.path().join("node");
    copy_tree(pristine_dir, &d);
    let ctx = format!("{alg}, killed after op {n}");
    let out = renew_killed_after(&d, n);
    if out.status.success() {
        verdict(&d, pristine, &format!("{alg}, completed run (limit {n})"));
        return None;
    }
    assert_killed(&out, &ctx);
    let journal = d.join("pki/.kubepki-journal");
    let state = journal_state(&d.join("pki"));
    let journal_seen = state.as_deref() == Some("committed");
    let prepared_seen = state.as_deref() == Some("prepared");
    let temps_seen = leftovers(&d)
        .iter()
        .any(|p| !p.starts_with(d.join(BACKUPS)) && *p != journal);

    // check-expiration on the interrupted state: it reads, warns about a journal, never fails.
    let ce = check_expiration(&d);
    let warned = stderr(&ce).contains("an interrupted kubepki run left");
    assert_eq!(
        warned,
        journal.exists(),
        "{ctx}: check-expiration warning vs journal present\n{}",
        stderr(&ce)
    );

    // The recovering run: lock, recover, nothing due within 1h.
    let rec = run_ok(&mut at_renew_now(
        &d,
        &["certs", "renew", "all", "--expiring-within", "1h"],
    ));
    let rs = stdout(&rec);
    assert!(
        rs.contains("[renew] nothing to renew"),
        "{ctx}: recovery run:\n{rs}"
    );
    if journal_seen {
        assert!(
            rs.contains("[recover] completed an interrupted renew"),
            "{ctx}: a journal was left, the next run must roll forward:\n{rs}"
        );
    } else if prepared_seen && temps_seen {
        assert!(
            rs.contains("[recover] an interrupted renew stopped before changing anything"),
            "{ctx}: a prepared journal and its temp files were left, the next run must remove them:\n{rs}"
        );
    }
    assert!(
        !stderr(&rec).contains("no journal accounts for"),
        "{ctx}: every temp file is accounted for:\n{}",
        stderr(&rec)
    );
    let state = verdict(&d, pristine, &ctx);
    if journal_seen {
        assert_eq!(state, State::New, "{ctx}: rolled forward, so wholly new");
    }
    Some(Case {
        state,
        journal_seen,
        temps_seen,
    })
}

#[test]
fn renew_all_killed_after_every_file_operation_recovers_wholly_old_or_new() {
    let started = Instant::now();
    let base = scratch();
    let pristine_dir = base.path().join("pristine");
    init(&pristine_dir, "ECDSA-P256");
    let pristine = tree(&pristine_dir);
    // The pristine PKI passes check-expiration with the old dates.
    assert_eq!(verdict(&pristine_dir, &pristine, "pristine"), State::Old);

    // N = 1, 2, ... in batches run side by side (each on its own copy), until a run completes.
    let (cases, total_ops) = kill_at_every_op(MAX_OPS, BATCH, |k| {
        crash_and_recover(&pristine_dir, &pristine, k, "ECDSA-P256")
    });
    let old: Vec<u64> = cases
        .iter()
        .filter(|(_, c)| c.state == State::Old)
        .map(|(n, _)| *n)
        .collect();
    let new: Vec<u64> = cases
        .iter()
        .filter(|(_, c)| c.state == State::New)
        .map(|(n, _)| *n)
        .collect();
    eprintln!(
        "renew all: {total_ops} file operations; killed after 1..={total_ops}: {} recovered wholly old \
         (ops {:?}..={:?}), {} wholly new (ops {:?}..={:?})",
        old.len(),
        old.first(),
        old.last(),
        new.len(),
        new.first(),
        new.last()
    );
    // 18 files backed up, staged and renamed: far more than 50 operations. Anything less means
    // the hook counts too little to cover the swap.
    assert!(total_ops > 50, "only {total_ops} operations counted");
    // Both recovery paths ran: roll back (temps removed) and roll forward (journal).
    assert!(
        cases
            .values()
            .any(|c| c.temps_seen && c.state == State::Old),
        "no kill left staged temp files to roll back"
    );
    assert!(
        cases.values().any(|c| c.journal_seen),
        "no kill left a journal to roll forward"
    );
    // The switch from old to new happens once: every kill before the journal is old, after new.
    if let (Some(lo), Some(hi)) = (old.last(), new.first()) {
        assert!(lo < hi, "old after new: old {old:?}, new {new:?}");
    }

    // A rolled-forward PKI's backup restores the old files exactly.
    let n = *new.first().unwrap();
    let work = scratch();
    let d = work.path().join("node");
    copy_tree(&pristine_dir, &d);
    let out = renew_killed_after(&d, n);
    assert_eq!(out.status.signal(), Some(9));
    run_ok(&mut at_renew_now(
        &d,
        &["certs", "renew", "all", "--expiring-within", "1h"],
    ));
    let b = backups(&d);
    run_ok(&mut restore(&d, &b[0], RENEW_NOW, &[]));
    let after: Tree = tree(&d)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(BACKUPS))
        .collect();
    assert!(
        after == pristine,
        "restore of the rolled-forward renewal's backup"
    );

    // RSA keys, a few kill points: the last op of the backup, the first after the journal,
    // and the very last operation.
    let rsa_dir = base.path().join("pristine-rsa");
    init(&rsa_dir, "RSA-2048");
    let rsa = tree(&rsa_dir);
    let first_journal = cases
        .iter()
        .find(|(_, c)| c.journal_seen)
        .map(|(n, _)| *n)
        .unwrap();
    for n in [*old.last().unwrap(), first_journal, total_ops] {
        let c = crash_and_recover(&rsa_dir, &rsa, n, "RSA-2048").expect("killed");
        let want = if n < first_journal {
            State::Old
        } else {
            State::New
        };
        assert_eq!(c.state, want, "RSA-2048, killed after op {n}");
    }
    eprintln!("renew crash test: {:?}", started.elapsed());
}
