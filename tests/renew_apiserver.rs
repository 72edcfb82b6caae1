//! `certs renew all` on a live control plane: a real etcd and kube-apiserver v1.20.2 on a PKI
//! made by `kubepki init`. After the renewal and a restart of kube-apiserver (stopped by PID,
//! started again with the same flags), kubectl works with the renewed admin.conf and
//! super-admin.conf, kube-apiserver serves the renewed serving certificate, and credentials made
//! before the renewal by the same CA (a `kubepki kubeconfig user` kubeconfig and the old
//! admin.conf) still work.
//!
//! Then `certs renew apiserver --restart-static-pods` with a mini kubelet inside the test: a
//! thread that watches a manifests directory and keeps kube-apiserver running exactly while
//! its static pod manifest is there. kubepki moves the manifest out for longer than the
//! file-check frequency, back, and waits for the manifest's liveness probe: kube-apiserver is
//! stopped and started once, and serves the certificate of this second renewal.
//!
//! Everything listens on 127.0.0.21 only; every process is stopped by PID when the test ends
//! (also on panic), and the tails of their logs are part of any failure message.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

const LOOPBACK: u8 = 21;
const NODE: &str = "cp-21";

/// The servers and where their files are.
struct Plane {
    bin: PathBuf,
    dir: PathBuf,
    ip: IpAddr,
    port: u16,
    etcd_url: String,
    /// kube-apiserver, shared with the mini kubelet once it runs. Declared before etcd: dropped
    /// (stopped) first.
    apiserver: Arc<Mutex<Option<Proc>>>,
    etcd: Proc,
}

impl Plane {
    fn conf(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
    fn pki(&self, f: &str) -> PathBuf {
        self.dir.join("pki").join(f)
    }
    fn start_apiserver(&self) -> Proc {
        start_apiserver(&self.bin, &self.dir, self.ip, self.port, &self.etcd_url)
    }
    fn apiserver_pid(&self) -> Option<u32> {
        lock(&self.apiserver).as_ref().map(|p| p.pid())
    }
    fn log_tails(&self) -> String {
        let mut s = format!(
            "\n--- etcd log, last 30 lines:\n{}",
            tail(&self.etcd.log_text(), 30)
        );
        let api = self.dir.join("kube-apiserver.log");
        s.push_str(&format!(
            "\n--- kube-apiserver log {} (all runs), last 60 lines:\n{}",
            api.display(),
            tail(&std::fs::read_to_string(&api).unwrap_or_default(), 60)
        ));
        s
    }
}

/// The serial of the certificate kube-apiserver serves right now (None if no TLS answer).
fn served_serial(p: &Plane) -> Option<String> {
    let o = Command::new("timeout")
        .args(["-k", "2", "10", "sh", "-c"])
        .arg(format!(
            "openssl s_client -connect {}:{} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            p.ip, p.port
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = stdout(&o).trim().to_string();
    (o.status.success() && s.starts_with("serial=")).then_some(s)
}

/// Waits (bounded) until kube-apiserver answers /readyz = ok to `conf`.
fn wait_ready(p: &Plane, conf: &Path, timeout: Duration) {
    wait_readyz(conf, timeout, || {
        if let Some(api) = lock(&p.apiserver).as_mut() {
            assert_running(api);
        }
    });
}

/// `kubectl get namespaces` as `conf` lists default and kube-system (bounded retries: RBAC
/// sees a new binding through an informer).
fn assert_lists_namespaces(conf: &Path, what: &str) {
    let mut last = None;
    let ok = wait_for_opt(Duration::from_secs(20), 40, || {
        let o = kc(conf, &["get", "namespaces", "-o", "name"]);
        let s = stdout(&o);
        let good = o.status.success()
            && s.lines().any(|l| l == "namespace/default")
            && s.lines().any(|l| l == "namespace/kube-system");
        last = Some(show(&o));
        good.then_some(())
    });
    assert!(
        ok.is_some(),
        "{what} ({}): get namespaces\n{}",
        conf.display(),
        last.unwrap_or_default()
    );
    let o = kc(conf, &["get", "--raw", "/readyz"]);
    assert!(
        o.status.success() && stdout(&o).trim() == "ok",
        "{what} ({}): get --raw /readyz\n{}",
        conf.display(),
        show(&o)
    );
}

/// As `wait_for`, but None on timeout instead of a panic.
fn wait_for_opt<T>(
    timeout: Duration,
    attempts: u32,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    for _ in 0..attempts {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(timeout / attempts);
    }
    None
}

/// `kubepki ARGS --cert-dir .. --kubeconfig-dir ..` for this node.
fn kubepki_dirs(p: &Plane, args: &[&str]) -> Command {
    let mut c = kubepki();
    c.args(args)
        .arg("--cert-dir")
        .arg(p.dir.join("pki"))
        .arg("--kubeconfig-dir")
        .arg(&p.dir);
    c
}

#[test]
fn renewed_pki_works_on_kube_apiserver_v1_20_after_restart() {
    let started = Instant::now();
    let bin = ensure_control_plane_tools();
    let tmp = scratch();
    let dir = tmp.path().to_path_buf();
    let ip = loopback(LOOPBACK);
    let port = init_control_plane(&dir, NODE, ip, &["--encryption-algorithm", "ECDSA-P256"]);
    let (etcd, etcd_url) = start_etcd(&dir, NODE, ip);
    let mut plane = Plane {
        bin,
        dir,
        ip,
        port,
        etcd_url,
        apiserver: Arc::new(Mutex::new(None)),
        etcd,
    };
    let first = plane.start_apiserver();
    *lock(&plane.apiserver) = Some(first);

    run_checks(&mut plane, checks, Plane::log_tails);
    eprintln!("renew apiserver test: passed in {:?}", started.elapsed());
    // `plane` drops before `tmp`: kube-apiserver, then etcd, each stopped by PID.
}

fn checks(p: &mut Plane) {
    let admin = p.conf("admin.conf");
    let super_admin = p.conf("super-admin.conf");
    wait_ready(p, &super_admin, Duration::from_secs(90));

    // kubeadm's binding for admin.conf's group, made with super-admin.conf (system:masters).
    create_cluster_admins_binding(&super_admin);
    assert_lists_namespaces(&admin, "admin.conf before renewal");

    // Credentials made before the renewal: a user kubeconfig, and copies of the kubeconfigs.
    let out = run_ok(kubepki_dirs(p, &["kubeconfig", "user"]).args([
        "--client-name",
        "carol",
        "--org",
        "kubeadm:cluster-admins",
    ]));
    let carol = p.conf("carol.conf");
    write_file(&carol, &out.stdout);
    assert_lists_namespaces(&carol, "user kubeconfig made before renewal");
    let old_admin = p.conf("old-admin.conf");
    let old_super = p.conf("old-super-admin.conf");
    std::fs::copy(&admin, &old_admin).unwrap();
    std::fs::copy(&super_admin, &old_super).unwrap();
    let files = [
        "pki/apiserver.crt",
        "pki/apiserver.key",
        "pki/apiserver-etcd-client.crt",
        "pki/front-proxy-client.crt",
        "admin.conf",
        "super-admin.conf",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(p.dir.join(f)).unwrap())
        .collect();
    let old_serial = cert_serial(&p.pki("apiserver.crt"));
    assert_eq!(
        served_serial(p).as_deref(),
        Some(old_serial.as_str()),
        "kube-apiserver serves apiserver.crt before the renewal"
    );

    // 1. renew all (real time), then restart kube-apiserver by PID.
    let out = run_ok(&mut kubepki_dirs(p, &["certs", "renew", "all"]));
    let text = stdout(&out);
    assert!(
        text.contains("[renew] certificate apiserver renewed")
            && text.contains("[renew] certificate super-admin.conf renewed")
            && text
                .contains("kube-apiserver, kube-controller-manager, kube-scheduler must restart"),
        "renew all output:\n{text}"
    );
    for (f, old) in files.iter().zip(&before) {
        assert_ne!(
            &std::fs::read(p.dir.join(f)).unwrap(),
            old,
            "{f} did not change on disk"
        );
    }
    let new_serial = cert_serial(&p.pki("apiserver.crt"));
    assert_ne!(new_serial, old_serial, "apiserver.crt serial after renew");

    let old_pid = p.apiserver_pid().unwrap();
    let old_proc = lock(&p.apiserver).take();
    if let Some(mut a) = old_proc {
        a.stop(Duration::from_secs(20));
    }
    let second = p.start_apiserver();
    let new_pid = second.pid();
    assert_ne!(new_pid, old_pid);
    *lock(&p.apiserver) = Some(second);
    wait_ready(p, &super_admin, Duration::from_secs(90));

    assert_lists_namespaces(&super_admin, "renewed super-admin.conf");
    assert_lists_namespaces(&admin, "renewed admin.conf");
    assert_lists_namespaces(&carol, "user kubeconfig made before renewal (same CA)");
    assert_lists_namespaces(&old_admin, "admin.conf from before renewal (same CA)");
    assert_lists_namespaces(&old_super, "super-admin.conf from before renewal (same CA)");
    assert_eq!(
        served_serial(p).as_deref(),
        Some(new_serial.as_str()),
        "kube-apiserver should serve the renewed apiserver.crt after its restart"
    );
    // The renewed client certificates kube-apiserver itself uses: etcd (every request above
    // reads it) and the front-proxy client, accepted as the header-asserting proxy.
    let o = run_ok(
        curl_with_cert(
            &p.pki("ca.crt"),
            &p.pki("front-proxy-client.crt"),
            &p.pki("front-proxy-client.key"),
        )
        .args(["-H", "X-Remote-User: proxied-dave"])
        .arg(format!(
            "https://{}:{}/api/v1/namespaces/default/secrets",
            p.ip, p.port
        )),
    );
    assert!(
        stdout(&o).contains(r#"User \"proxied-dave\" cannot list resource \"secrets\""#),
        "renewed front-proxy-client asserting X-Remote-User:\n{}",
        stdout(&o)
    );

    // 2. --restart-static-pods with a mini kubelet keeping kube-apiserver up while its
    //    manifest is in the manifests directory.
    let manifests = p.dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = manifests.join("kube-apiserver.yaml");
    write_file(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\n\
             spec:\n  containers:\n  - name: kube-apiserver\n    image: k8s.gcr.io/kube-apiserver:v1.20.2\n\
             \x20   livenessProbe:\n      httpGet:\n        host: {}\n        path: /livez\n        \
             port: {}\n        scheme: HTTPS\n",
            p.ip, p.port
        )
        .as_bytes(),
    );
    let kubelet = {
        let (bin, dir, ip, port, url) = (
            p.bin.clone(),
            p.dir.clone(),
            p.ip,
            p.port,
            p.etcd_url.clone(),
        );
        MiniKubelet::start(
            vec![StaticPod {
                manifest: manifest.clone(),
                slot: p.apiserver.clone(),
                spawn: Box::new(move || start_apiserver(&bin, &dir, ip, port, &url)),
            }],
            Duration::from_secs(180),
        )
    };
    let before_pid = p.apiserver_pid().unwrap();
    let t0 = Instant::now();
    let out = run_ok(
        kubepki_dirs(p, &["certs", "renew", "apiserver", "--restart-static-pods"])
            .arg("--manifests-dir")
            .arg(&manifests)
            .args(["--file-check-frequency", "1s", "--restart-timeout", "90s"]),
    );
    let text = stdout(&out);
    assert!(
        text.contains("[restart] kube-apiserver is healthy again"),
        "renew --restart-static-pods output:\n{text}"
    );
    let events = kubelet.finish();
    assert_eq!(
        events,
        vec!["kube-apiserver stop", "kube-apiserver start"],
        "the mini kubelet should have stopped and started kube-apiserver once ({:?})",
        t0.elapsed()
    );
    assert!(manifest.is_file(), "the manifest is back in place");
    assert!(!p.dir.join("kubepki-held-manifests").exists());
    let after_pid = p.apiserver_pid().expect("kube-apiserver runs");
    assert_ne!(after_pid, before_pid, "kube-apiserver was restarted");
    let third_serial = cert_serial(&p.pki("apiserver.crt"));
    assert_ne!(third_serial, new_serial);
    assert_eq!(
        served_serial(p).as_deref(),
        Some(third_serial.as_str()),
        "after --restart-static-pods kube-apiserver serves the second renewal's certificate"
    );
    assert_lists_namespaces(&admin, "admin.conf after the restart by manifest");
    assert_lists_namespaces(&carol, "user kubeconfig after the restart by manifest");
    assert_running(&mut p.etcd);
}
