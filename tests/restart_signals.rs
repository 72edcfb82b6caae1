//! A static pod manifest that `certs renew --restart-static-pods` moved out always goes back.
//!
//! - SIGTERM, SIGINT or SIGHUP while it is out: kubepki puts it back first, then exits with
//!   128+n.
//! - SIGKILL while it is out: the next kubepki run that writes puts it back where it came from,
//!   even from another working directory, with another `--manifests-dir`, and through a
//!   non-UTF-8 path, and says so.
//! - SIGKILL after every single file operation of the hold and the put-back: the next run
//!   always leaves the manifest in place, whole.
//!
//! The manifests declare no probe, so no server is needed; no process outlives its test.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::cert_serial;
use common::pki::{RENEW_NOW, fresh};
use common::*;
use nix::sys::signal::Signal;

const MANIFEST: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n\
spec:\n  hostNetwork: true\n  containers:\n  - name: kube-apiserver\n    image: x\n";

/// `certs renew apiserver --restart-static-pods` for the node in `d`, manifests in
/// `manifests` (relative to `cwd` if relative), holding the manifest for `hold`+2 s.
fn renew_restart(d: &Path, cwd: &Path, manifests: &Path, hold: &str) -> Command {
    let mut c = kubepki();
    c.current_dir(cwd)
        .args(["certs", "renew", "apiserver", "--restart-static-pods"])
        .arg("--cert-dir")
        .arg(d.join("pki"))
        .arg("--kubeconfig-dir")
        .arg(d)
        .arg("--manifests-dir")
        .arg(manifests)
        .args(["--file-check-frequency", hold, "--now", RENEW_NOW]);
    c
}

/// A child kubepki, SIGKILLed by PID on drop if still running.
struct Running(Option<Child>);

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        // The signals this file sends act on the child whatever the test run inherited: under
        // `nohup` SIGHUP arrives ignored, and kubepki rightly keeps an inherited ignore (a
        // SIGHUPped run then waited out its hold, and the test its 10 s).
        // SAFETY: signal(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
                    nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl)
                        .map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubepki");
        Running(Some(child))
    }

    fn signal(&self, s: Signal) {
        let pid = self.0.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s).unwrap();
    }

    /// Waits (bounded) for the exit; (status, stdout, stderr). On a timeout, what the process
    /// had printed says where it was.
    fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        let mut child = self.0.take().unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > limit {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!(
                    "kubepki did not exit within {limit:?} of the signal\n--- stdout\n{}\n--- stderr\n{}",
                    stdout(&o),
                    stderr(&o)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = child.wait_with_output().unwrap();
        (o.status, stdout(&o), stderr(&o))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits (bounded: 30 s) until the manifest has left its directory.
fn wait_moved_out(manifest: &Path, run: &mut Running) {
    wait_for(
        "the manifest to be moved out",
        Duration::from_secs(30),
        600,
        || {
            if let Some(st) = run.0.as_mut().unwrap().try_wait().unwrap() {
                panic!("kubepki exited ({st}) before moving the manifest out");
            }
            (!manifest.exists()).then_some(())
        },
    );
}

#[test]
fn a_termination_signal_puts_the_manifest_back_then_exits_128_plus_n() {
    let t0 = Instant::now();
    for (sig, code) in [
        (Signal::SIGTERM, 143),
        (Signal::SIGINT, 130),
        (Signal::SIGHUP, 129),
    ] {
        let tmp = fresh();
        let d = tmp.path();
        let manifests = d.join("manifests");
        let manifest = manifests.join("kube-apiserver.yaml");
        write_file(&manifest, MANIFEST);
        let old = cert_serial(&d.join("pki/apiserver.crt"));
        let mut run = Running::spawn(renew_restart(d, d, &manifests, "60s"));
        wait_moved_out(&manifest, &mut run);
        let sent = Instant::now();
        run.signal(sig);
        eprintln!("sending {sig}");
        let (status, out, err) = run.finish(Duration::from_secs(10));
        let what = format!("{sig}: {status}\n--- stdout\n{out}\n--- stderr\n{err}");
        assert_eq!(status.code(), Some(code), "{what}");
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{sig} took {:?}",
            sent.elapsed()
        );
        assert_eq!(
            fs::read(&manifest).ok().as_deref(),
            Some(MANIFEST),
            "{what}"
        );
        assert!(!d.join("kubepki-held-manifests").exists(), "{what}");
        assert!(
            err.contains(&format!(
                "[restart] kube-apiserver: caught {sig}; its manifest is back in place"
            )),
            "{what}"
        );
        assert_eq!(
            out.lines().last(),
            Some(
                format!(
                    "[renew] the restart of kube-apiserver was interrupted by {sig}: its manifest \
                     is back in place; check that kube-apiserver runs the renewed certificates, \
                     or restart it yourself"
                )
                .as_str()
            ),
            "{what}"
        );
        // The renewal itself was done before the restart began.
        assert_ne!(cert_serial(&d.join("pki/apiserver.crt")), old, "{what}");
    }
    eprintln!("signals: {:?}", t0.elapsed());
}

/// A signal the run inherited as ignored (nohup's SIGHUP) stays ignored, during the hold too.
#[test]
fn an_ignored_signal_stays_ignored() {
    let tmp = fresh();
    let d = tmp.path();
    let manifests = d.join("manifests");
    let manifest = manifests.join("kube-apiserver.yaml");
    write_file(&manifest, MANIFEST);
    let inner = renew_restart(d, d, &manifests, "2s");
    let mut c = Command::new("sh");
    c.args(["-c", "trap '' HUP; exec \"$@\"", "sh"])
        .arg(inner.get_program())
        .args(inner.get_args());
    let mut run = Running::spawn(c);
    wait_moved_out(&manifest, &mut run);
    run.signal(Signal::SIGHUP);
    let (status, out, err) = run.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    assert_eq!(fs::read(&manifest).ok().as_deref(), Some(MANIFEST));
    assert!(!err.contains("caught"), "{err}");
}

#[test]
fn after_sigkill_the_next_run_puts_the_manifest_back_where_it_was() {
    let t0 = Instant::now();
    let tmp = fresh();
    let d = tmp.path();
    // The first run works in `a/` with a relative, non-UTF-8 --manifests-dir.
    let a = d.join("a");
    let rel = PathBuf::from(OsStr::from_bytes(b"man\xffifests"));
    let manifest = a.join(&rel).join("kube-apiserver.yaml");
    write_file(&manifest, MANIFEST);
    let mut run = Running::spawn(renew_restart(d, &a, &rel, "60s"));
    wait_moved_out(&manifest, &mut run);
    run.signal(Signal::SIGKILL);
    let (status, _, _) = run.finish(Duration::from_secs(10));
    assert_eq!(status.signal(), Some(9));
    assert!(!manifest.exists());

    // The next run that writes, from `b/`, with another --manifests-dir (where nothing is).
    let b = d.join("b");
    fs::create_dir_all(b.join("manifests")).unwrap();
    let mut next = kubepki();
    next.current_dir(&b)
        .args(["certs", "renew", "front-proxy-client", "--cert-dir"])
        .arg(d.join("pki"))
        .arg("--kubeconfig-dir")
        .arg(d)
        .args(["--manifests-dir", "manifests", "--now", RENEW_NOW]);
    let out = run_ok(&mut next);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "[recover] put back static pod manifest {} held by an interrupted run\n",
            manifest.display()
        )),
        "{text}"
    );
    assert_eq!(fs::read(&manifest).ok().as_deref(), Some(MANIFEST));
    assert!(!b.join("manifests/kube-apiserver.yaml").exists());
    assert!(!d.join("kubepki-held-manifests").exists());
    eprintln!("sigkill: {:?}", t0.elapsed());
}

/// Killed after each disk operation from the start of the run to its end: whatever the
/// point, the next writing run leaves the manifest in place, byte for byte.
#[test]
fn killed_after_any_operation_the_manifest_ends_up_in_place() {
    let t0 = Instant::now();
    let template = fresh();
    let mut held_seen = 0;
    let mut n = 1;
    loop {
        assert!(n < 400, "the run never completed");
        let tmp = scratch();
        let d = tmp.path();
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(template.path().join("."))
                .arg(d),
        );
        let manifests = d.join("manifests");
        let manifest = manifests.join("kube-apiserver.yaml");
        write_file(&manifest, MANIFEST);
        let mut c = renew_restart(d, d, &manifests, "0s");
        c.env("KUBEPKI_TEST_KILL_AFTER_OPS", n.to_string());
        let o = c.stdin(Stdio::null()).output().unwrap();
        if o.status.success() {
            assert_eq!(fs::read(&manifest).ok().as_deref(), Some(MANIFEST));
            break;
        }
        assert_eq!(o.status.signal(), Some(9), "op {n}: {}", stderr(&o));
        if !manifest.exists() {
            held_seen += 1;
        }
        let mut next = kubepki();
        next.args(["certs", "renew", "front-proxy-client", "--cert-dir"])
            .arg(d.join("pki"))
            .arg("--kubeconfig-dir")
            .arg(d)
            .args(["--now", RENEW_NOW]);
        let out = run_ok(&mut next);
        assert_eq!(
            fs::read(&manifest).ok().as_deref(),
            Some(MANIFEST),
            "killed after op {n}, then:\n{}",
            stdout(&out)
        );
        assert!(!d.join("kubepki-held-manifests").exists(), "op {n}");
        n += 1;
    }
    assert!(
        held_seen >= 3,
        "only {held_seen} kill points fell while the manifest was out"
    );
    eprintln!(
        "kill points: {n}, {held_seen} while held, {:?}",
        t0.elapsed()
    );
}
