//! A closed or broken stdout or stderr never interrupts work and never panics.
//!
//! Every command that writes runs with stdout closed (`>&-`), stdout a pipe whose reader has
//! exited (as after `| head -n 1`: each write fails with EPIPE), stderr closed, and stderr
//! broken. It must not panic, must exit with the status of what it did, and must leave the PKI
//! as that status says: renewed, restored, installed, or unchanged. Commands whose product is
//! their output (check-expiration, kubeconfig user) exit 1 when that output was lost, and say
//! so on stderr.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Sink::{Broken, Captured, Closed};
use common::cluster::cert_serial;
use common::pki::{IP, NODE, RENEW_NOW, backups, fresh, kubepki_in, restore};
use common::*;

/// stdout and stderr of each run: every way one of them can fail, and both at once.
const SINKS: [(Sink, Sink); 5] = [
    (Broken, Captured),
    (Closed, Captured),
    (Captured, Broken),
    (Captured, Closed),
    (Broken, Broken),
];

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `cmd` with `sinks`; asserts no panic and the exit status `code`.
fn expect(cmd: &Command, sinks: (Sink, Sink), code: i32, what: &str) -> Output {
    let o = run_sinks(cmd, sinks.0, sinks.1, LIMIT);
    let what = format!("{what} with stdout {:?}, stderr {:?}", sinks.0, sinks.1);
    assert_no_panic(&o, &what);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: exit status\n--- stdout\n{}\n--- stderr\n{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// `cmd` exits 1 with every failing sink and changes nothing below `d`.
fn refuses(d: &Path, cmd: &Command, what: &str) {
    let before = snapshot(d);
    for sinks in SINKS {
        expect(cmd, sinks, 1, what);
        assert_eq!(
            snapshot(d),
            before,
            "{what}, refused ({sinks:?}), changed files"
        );
    }
}

fn init_cmd(d: &Path) -> Command {
    let mut c = kubepki_in(d, &["init", "--encryption-algorithm", "ECDSA-P256"]);
    c.args(["--node-name", NODE, "--apiserver-advertise-address", IP]);
    c
}

/// Every file `init` writes for a control-plane node.
const INIT_FILES: [&str; 27] = [
    "pki/ca.crt",
    "pki/ca.key",
    "pki/front-proxy-ca.crt",
    "pki/front-proxy-ca.key",
    "pki/etcd/ca.crt",
    "pki/etcd/ca.key",
    "pki/apiserver.crt",
    "pki/apiserver.key",
    "pki/apiserver-kubelet-client.crt",
    "pki/apiserver-kubelet-client.key",
    "pki/apiserver-etcd-client.crt",
    "pki/apiserver-etcd-client.key",
    "pki/front-proxy-client.crt",
    "pki/front-proxy-client.key",
    "pki/etcd/server.crt",
    "pki/etcd/server.key",
    "pki/etcd/peer.crt",
    "pki/etcd/peer.key",
    "pki/etcd/healthcheck-client.crt",
    "pki/etcd/healthcheck-client.key",
    "pki/sa.key",
    "pki/sa.pub",
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "kubelet.conf",
];

#[test]
fn init_completes_whatever_happens_to_its_output() {
    let t0 = Instant::now();
    for sinks in SINKS {
        let tmp = scratch();
        let d = tmp.path();
        expect(&init_cmd(d), sinks, 0, "init");
        for f in INIT_FILES {
            assert!(d.join(f).is_file(), "init {sinks:?} did not write {f}");
        }
        // What it wrote is whole: the report lists every certificate, none missing.
        let o = run_ok(&mut kubepki_in(d, &["certs", "check-expiration"]));
        assert!(
            !stdout(&o).contains("MISSING"),
            "after init {sinks:?}:\n{}",
            stdout(&o)
        );
    }
    // A refusal (an existing file that does not fit) reports through a failing stderr too, and
    // writes nothing.
    let tmp = scratch();
    let d = tmp.path();
    write_file(&d.join("pki/apiserver.crt"), b"not a certificate\n");
    refuses(d, &init_cmd(d), "init over a corrupt apiserver.crt");
    eprintln!("init: {:?}", t0.elapsed());
}

/// The leaf certificates `renew all` replaces (one per CA is enough to see the swap happened).
const SAMPLE: [&str; 3] = [
    "pki/apiserver.crt",
    "pki/front-proxy-client.crt",
    "pki/etcd/server.crt",
];

#[test]
fn renew_and_restore_complete_whatever_happens_to_their_output() {
    let t0 = Instant::now();
    for sinks in SINKS {
        let tmp = fresh();
        let d = tmp.path();
        let old: Vec<String> = SAMPLE.iter().map(|f| cert_serial(&d.join(f))).collect();
        let before = snapshot(d);
        let mut renew = kubepki_in(d, &["certs", "renew", "all", "--now", RENEW_NOW]);
        expect(&renew, sinks, 0, "renew all");
        for (f, s) in SAMPLE.iter().zip(&old) {
            assert_ne!(
                &cert_serial(&d.join(f)),
                s,
                "renew all {sinks:?}: {f} not renewed"
            );
        }
        assert!(!d.join("pki/.kubepki-journal").exists());
        let b = backups(d);
        assert_eq!(b.len(), 1, "renew all {sinks:?}: one backup");

        // restore puts the old files back, byte for byte.
        let rest = restore(d, &b[0], RENEW_NOW, &[]);
        expect(&rest, sinks, 0, "restore");
        for (f, s) in SAMPLE.iter().zip(&old) {
            assert_eq!(
                &cert_serial(&d.join(f)),
                s,
                "restore {sinks:?}: {f} not restored"
            );
        }
        let now: Vec<_> = snapshot(d)
            .into_iter()
            .filter(|(p, _, _)| !p.starts_with(d.join("kubepki-backups")))
            .collect();
        let was: Vec<_> = before
            .into_iter()
            .filter(|(p, _, _)| !p.starts_with(d.join("kubepki-backups")))
            .collect();
        assert_eq!(now, was, "restore {sinks:?}: the tree is not what it was");
        renew.arg("--dry-run");
        expect(&renew, sinks, 0, "renew all --dry-run");
    }
    // A renewal that must refuse (a certificate that is not one) reports through a failing
    // stderr and changes nothing.
    let tmp = fresh();
    let d = tmp.path();
    write_file(&d.join("pki/apiserver.crt"), b"not a certificate\n");
    let renew = kubepki_in(d, &["certs", "renew", "apiserver", "--now", RENEW_NOW]);
    refuses(d, &renew, "renew over a corrupt apiserver.crt");
    eprintln!("renew and restore: {:?}", t0.elapsed());
}

/// `renew --restart-static-pods` (a manifest without a probe, so no server is needed): the
/// renewal happens and the manifest is back in place, whatever happens to the output.
#[test]
fn restart_puts_the_manifest_back_whatever_happens_to_the_output() {
    let t0 = Instant::now();
    let manifest_text = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n\
spec:\n  hostNetwork: true\n  containers:\n  - name: kube-apiserver\n    image: x\n";
    let renew = |d: &Path| {
        let mut c = kubepki_in(d, &["certs", "renew", "apiserver", "--restart-static-pods"]);
        c.arg("--manifests-dir").arg(d.join("manifests")).args([
            "--file-check-frequency",
            "0s",
            "--now",
            RENEW_NOW,
        ]);
        c
    };
    let check = |d: &Path, old: &str, what: &str| {
        assert_ne!(
            cert_serial(&d.join("pki/apiserver.crt")),
            old,
            "{what}: not renewed"
        );
        assert_eq!(
            fs::read(d.join("manifests/kube-apiserver.yaml"))
                .ok()
                .as_deref(),
            Some(&manifest_text[..]),
            "{what}: the manifest is not back"
        );
        assert!(!d.join("kubepki-held-manifests").exists(), "{what}");
    };
    for sinks in SINKS {
        let tmp = fresh();
        let d = tmp.path();
        write_file(&d.join("manifests/kube-apiserver.yaml"), manifest_text);
        let old = cert_serial(&d.join("pki/apiserver.crt"));
        expect(&renew(d), sinks, 0, "renew apiserver --restart-static-pods");
        check(d, &old, &format!("{sinks:?}"));
    }
    // The reported case, literally: `| head -n 2`, so stdout breaks part-way through, around
    // the time the manifest is moved out.
    for lines in [1, 2, 3, 4] {
        let tmp = fresh();
        let d = tmp.path();
        write_file(&d.join("manifests/kube-apiserver.yaml"), manifest_text);
        let old = cert_serial(&d.join("pki/apiserver.crt"));
        let cmd = renew(d);
        let mut line = vec![cmd.get_program().to_os_string()];
        line.extend(cmd.get_args().map(|a| a.to_os_string()));
        let o = run_ok(
            Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "\"$@\" | head -n {lines} >/dev/null; echo \"status ${{PIPESTATUS[0]}}\""
                ))
                .arg("bash")
                .args(line),
        );
        assert_no_panic(&o, &format!("| head -n {lines}"));
        assert_eq!(
            stdout(&o).trim(),
            "status 0",
            "| head -n {lines}\n{}",
            stderr(&o)
        );
        check(d, &old, &format!("| head -n {lines}"));
    }
    eprintln!("restart: {:?}", t0.elapsed());
}

#[test]
fn generate_csr_and_import_complete_whatever_happens_to_their_output() {
    let t0 = Instant::now();
    for sinks in SINKS {
        let tmp = fresh();
        let d = tmp.path();
        let csrs = d.join("csrs");
        let mut csr_cmd = kubepki_in(d, &["certs", "generate-csr", "front-proxy-client"]);
        csr_cmd
            .args(["--node-name", NODE, "--apiserver-advertise-address", IP])
            .arg("--csr-dir")
            .arg(&csrs);
        expect(&csr_cmd, sinks, 0, "generate-csr");
        let csr = csrs.join("front-proxy-client.csr");
        assert!(csr.is_file() && csrs.join("front-proxy-client.key").is_file());

        // The CA signs it (the front-proxy CA is local here; import checks the same things).
        let crt = csrs.join("front-proxy-client.crt");
        openssl_sign(
            &csr,
            (
                &d.join("pki/front-proxy-ca.crt"),
                &d.join("pki/front-proxy-ca.key"),
            ),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = clientAuth\n",
            200,
            "0x5eed1234",
            &crt,
        );
        let mut imp = kubepki_in(d, &["certs", "import"]);
        imp.arg("--csr-dir").arg(&csrs);
        expect(&imp, sinks, 0, "import");
        assert_eq!(
            fs::read(d.join("pki/front-proxy-client.crt")).unwrap(),
            fs::read(&crt).unwrap(),
            "import {sinks:?} did not install the signed certificate"
        );
        assert_eq!(
            fs::read(d.join("pki/front-proxy-client.key")).unwrap(),
            fs::read(csrs.join("front-proxy-client.key")).unwrap(),
        );
    }
    eprintln!("generate-csr and import: {:?}", t0.elapsed());
}

#[test]
fn kubeconfigs_and_reports() {
    let t0 = Instant::now();
    let tmp = fresh();
    let d = tmp.path();
    // kubeconfig kubelet --write installs (its product is the file), whatever the output.
    for sinks in SINKS {
        let conf = d.join("kubelet.conf");
        let before = fs::read(&conf).unwrap();
        let n = backups(d).len();
        let mut c = kubepki_in(
            d,
            &["kubeconfig", "kubelet", "--node-name", NODE, "--write"],
        );
        c.args(["--encryption-algorithm", "ECDSA-P256"]);
        expect(&c, sinks, 0, "kubeconfig kubelet --write");
        assert_ne!(fs::read(&conf).unwrap(), before, "{sinks:?}: not rewritten");
        assert_eq!(backups(d).len(), n + 1, "{sinks:?}: no backup");
    }
    let snap = snapshot(d);
    // Commands whose product is stdout: losing it is a failure, said on stderr.
    let printing: [(&str, Vec<&str>); 3] = [
        (
            "kubeconfig user",
            vec!["kubeconfig", "user", "--client-name", "eve"],
        ),
        (
            "kubeconfig kubelet",
            vec!["kubeconfig", "kubelet", "--node-name", NODE],
        ),
        ("check-expiration", vec!["certs", "check-expiration"]),
    ];
    for (what, args) in &printing {
        let mut c = kubepki_in(d, args);
        if what.starts_with("kubeconfig") {
            c.args(["--encryption-algorithm", "ECDSA-P256"]);
        }
        let o = expect(&c, (Broken, Captured), 1, what);
        assert_eq!(
            stderr(&o).trim(),
            "error: cannot write the output to standard output: Broken pipe (os error 32)",
            "{what}"
        );
        expect(&c, (Broken, Broken), 1, what);
        expect(&c, (Closed, Captured), 0, what);
        let o = expect(&c, (Captured, Broken), 0, what);
        assert!(!o.stdout.is_empty(), "{what}");
        expect(&c, (Captured, Closed), 0, what);
    }
    // The JSON and YAML reports too.
    for fmt in ["json", "yaml"] {
        let c = kubepki_in(d, &["certs", "check-expiration", "-o", fmt]);
        expect(&c, (Broken, Captured), 1, fmt);
    }
    assert_eq!(snapshot(d), snap, "printing commands changed files");
    // clap's own output (help, version, usage errors) swallows a broken pipe.
    for (args, code) in [
        (vec!["--help"], 0),
        (vec!["--version"], 0),
        (vec!["certs", "renew", "--help"], 0),
        (vec!["no-such-command"], 2),
    ] {
        let mut c = kubepki();
        c.args(&args);
        for sinks in SINKS {
            expect(&c, sinks, code, &format!("{args:?}"));
        }
    }
    eprintln!("kubeconfigs and reports: {:?}", t0.elapsed());
}

/// Commands that talk to a cluster (none reachable here), through failing output.
#[test]
fn cluster_commands_fail_cleanly_through_a_broken_stderr() {
    let t0 = Instant::now();
    let tmp = scratch();
    let conf = tmp.path().join("nowhere.conf");
    let port = free_port(loopback(31));
    write_file(
        &conf,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: \
             https://127.0.0.31:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  \
             context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    \
             token: t\n"
        )
        .as_bytes(),
    );
    let kubeconfig: PathBuf = conf;
    for args in [
        vec!["csr", "list"],
        vec!["csr", "approve", "csr-x"],
        vec!["kubeconfig", "user", "--client-name", "x"],
    ] {
        let mut c = kubepki();
        c.args(&args);
        if args[0] == "csr" {
            c.arg("--kubeconfig").arg(&kubeconfig);
        } else {
            c.arg("--cert-dir").arg(tmp.path().join("none"));
        }
        for sinks in SINKS {
            expect(&c, sinks, 1, &format!("{args:?}"));
        }
    }
    // The controller logs (here: its failures to reach the API server) to stderr; with stderr
    // broken it keeps running, and stops with 0 on SIGTERM.
    let mut c = kubepki();
    c.arg("controller")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--leader-elect=false", "--health-probe-bind-address", "0"])
        .arg("--metrics-bind-address")
        .arg(format!("127.0.0.31:{}", free_port(loopback(31))))
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut ctl = Proc::adopt("kubepki controller", c.stderr(writer).spawn().unwrap());
    for _ in 0..30 {
        if let Some(st) = ctl.try_wait() {
            panic!("the controller exited ({st}) with its stderr broken");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = nix::unistd::Pid::from_raw(ctl.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = wait_for(
        "the controller to stop",
        Duration::from_secs(10),
        100,
        || ctl.try_wait(),
    );
    assert_eq!(st.code(), Some(0), "the controller after SIGTERM");
    eprintln!("cluster commands: {:?}", t0.elapsed());
}
