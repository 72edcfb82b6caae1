//! A real kube-apiserver v1.20.2, backed by a real etcd, runs on a PKI made only by
//! `kubepki init`, and every kubeconfig kubepki writes authenticates as the identity kubeadm gives it
//! gives it (CN = user, O = groups), as the API server's own authorizers (RBAC, Node) see it.
//!
//! The servers start once (that is the slow part) and the checks run in sequence against them.
//! A kube-controller-manager v1.20.2 (only its token and ClusterRole-aggregation controllers)
//! joins once the API server is ready: v1.20's `view` role is empty without it, and it proves
//! controller-manager.conf and the sa.key/sa.pub pair in real use.
//! Everything listens on 127.0.0.20 only; every process is stopped by PID when the test ends
//! (also on panic), and the tails of their logs are part of any failure message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// 127.0.0.20: clear of the 127.0.0.1-3 the etcd cluster tests use.
const LOOPBACK: u8 = 20;
const NODE: &str = "cp-20";

/// `kubectl auth can-i ARGS` as `conf`: true for "yes", false for "no", a panic for anything
/// else (an authentication error is neither).
fn can_i(conf: &Path, args: &[&str]) -> bool {
    let mut a = vec!["auth", "can-i"];
    a.extend_from_slice(args);
    let o = kc(conf, &a);
    // "no" may come with a reason from the authorizer: "no - No Object name found".
    let out = stdout(&o);
    let answer = out.split_whitespace().next().unwrap_or("");
    match (answer, o.status.success()) {
        ("yes", true) => true,
        ("no", false) => false,
        _ => panic!(
            "kubectl --kubeconfig {} {a:?}: neither yes nor no\n{}",
            conf.display(),
            show(&o)
        ),
    }
}

fn assert_can(conf: &Path, args: &[&str], expected: bool) {
    let got = can_i(conf, args);
    assert_eq!(
        got,
        expected,
        "kubectl --kubeconfig {} auth can-i {}: expected {}, got {}",
        conf.display(),
        args.join(" "),
        if expected { "yes" } else { "no" },
        if got { "yes" } else { "no" }
    );
}

/// Waits (bounded) until `can-i ARGS` says yes: RBAC sees new bindings through an informer.
fn wait_can(conf: &Path, args: &[&str]) {
    wait_for(
        &format!("{}: auth can-i {} = yes", conf.display(), args.join(" ")),
        Duration::from_secs(20),
        80,
        || can_i(conf, args).then_some(()),
    );
}

/// Runs kubectl ARGS as `conf`, expects it to be forbidden, and the message to name `user`.
fn assert_forbidden_as(conf: &Path, args: &[&str], user: &str) {
    let o = kc(conf, args);
    let err = stderr(&o);
    let want = format!("User \"{user}\" cannot");
    assert!(
        !o.status.success() && err.contains("Error from server (Forbidden)") && err.contains(&want),
        "kubectl --kubeconfig {} {args:?}: expected Forbidden naming {want:?}\n{}",
        conf.display(),
        show(&o)
    );
}

/// A GET with curl and a client certificate, with extra headers; returns the response body.
fn curl_get(c: &Cluster, cert: &str, key: &str, headers: &[&str], path: &str) -> String {
    let mut cmd = curl_with_cert(&c.pki("ca.crt"), &c.pki(cert), &c.pki(key));
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!("{}{path}", c.server()));
    stdout(&run_ok(&mut cmd))
}

/// `kubepki kubeconfig user ARGS`, written to `dir/<file>`.
fn user_kubeconfig(c: &Cluster, file: &str, args: &[&str]) -> PathBuf {
    let out = run_ok(
        kubepki()
            .args(["kubeconfig", "user", "--cert-dir"])
            .arg(c.dir.join("pki"))
            .arg("--kubeconfig-dir")
            .arg(&c.dir)
            .args(args),
    );
    let p = c.dir.join(file);
    write_file(&p, &out.stdout);
    p
}

#[test]
fn kube_apiserver_v1_20_runs_on_kubepki_init_pki() {
    let started = Instant::now();
    let bin = ensure_control_plane_tools();

    let tmp = scratch();
    let mut cluster = Cluster::start(bin, tmp.path(), NODE, loopback(LOOPBACK));

    run_checks(&mut cluster, checks, Cluster::log_tails);
    eprintln!(
        "apiserver test: all checks passed in {:?}",
        started.elapsed()
    );
    // `cluster` drops here (before `tmp`): controller manager, kube-apiserver, then etcd,
    // each stopped by PID.
}

fn checks(c: &mut Cluster) {
    let super_admin = c.conf("super-admin.conf");
    let admin = c.conf("admin.conf");
    let scheduler = c.conf("scheduler.conf");
    let cm = c.conf("controller-manager.conf");
    let kubelet = c.conf("kubelet.conf");

    // etcd serves TLS with kubepki's etcd-server cert and trusts kubepki's healthcheck client.
    c.wait_etcd_healthy();

    // 1. kube-apiserver comes up on the kubepki PKI; super-admin.conf reads /readyz.
    c.wait_apiserver_ready();
    let o = run_ok(kctl(&super_admin).args(["get", "--raw", "/readyz"]));
    assert_eq!(stdout(&o).trim(), "ok", "/readyz as super-admin.conf");
    // The controller manager starts now, in the background of the next checks.
    c.kcm = Some(start_kcm(
        &c.bin,
        &c.dir,
        c.ip,
        "serviceaccount-token,clusterrole-aggregation",
    ));
    // super-admin.conf is system:masters: allowed everything without any binding.
    assert_can(&super_admin, &["*", "*"], true);

    // The front-proxy client (front-proxy-ca, CN front-proxy-client) may assert users by
    // header; a client cert of the cluster CA may not (the header is ignored, its CN counts).
    let path = "/api/v1/namespaces/default/secrets";
    let hdrs = ["X-Remote-User: proxied-bob", "X-Remote-Group: qa"];
    let body = curl_get(
        c,
        "front-proxy-client.crt",
        "front-proxy-client.key",
        &hdrs,
        path,
    );
    assert!(
        body.contains(r#"User \"proxied-bob\" cannot list resource \"secrets\""#),
        "front-proxy-client with X-Remote-User: proxied-bob should be proxied-bob:\n{body}"
    );
    let body = curl_get(
        c,
        "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.key",
        &hdrs,
        path,
    );
    assert!(
        body.contains(r#"User \"kube-apiserver-kubelet-client\" cannot list"#),
        "apiserver-kubelet-client should be itself, whatever the headers:\n{body}"
    );

    // 2. admin.conf is in group kubeadm:cluster-admins, unknown to v1.20: forbidden until the
    //    binding kubeadm creates exists; then cluster-admin.
    assert_can(&admin, &["list", "namespaces"], false);
    assert_forbidden_as(&admin, &["get", "namespaces"], "kubernetes-admin");
    create_cluster_admins_binding(&super_admin);
    wait_can(&admin, &["list", "namespaces"]);
    wait_lists_namespaces(
        "admin.conf: get namespaces lists default and kube-system",
        &admin,
        &["default", "kube-system"],
    );
    // apiserver-kubelet-client is in kubeadm:cluster-admins too: now it may list secrets.
    let body = curl_get(
        c,
        "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.key",
        &[],
        path,
    );
    assert!(
        body.contains(r#""kind": "SecretList""#),
        "apiserver-kubelet-client (O=kubeadm:cluster-admins) should list secrets now:\n{body}"
    );

    // 3. scheduler.conf and controller-manager.conf, each exactly its bootstrap role's rights:
    //    both are asked the same questions (each may take its own Lease, not the other's).
    let bind_pods: &[&str] = &["create", "pods", "--subresource=binding"];
    let sa_token: &[&str] = &[
        "create",
        "serviceaccounts",
        "--subresource=token",
        "-n",
        "kube-system",
    ];
    let sched_lease: &[&str] = &[
        "update",
        "leases.coordination.k8s.io/kube-scheduler",
        "-n",
        "kube-system",
    ];
    let cm_lease: &[&str] = &[
        "update",
        "leases.coordination.k8s.io/kube-controller-manager",
        "-n",
        "kube-system",
    ];
    let delete_nodes: &[&str] = &["delete", "nodes"];

    //    scheduler.conf is system:kube-scheduler.
    for (args, expected) in [
        (bind_pods, true),
        (sched_lease, true),
        (cm_lease, false),
        (delete_nodes, false),
        (sa_token, false),
    ] {
        assert_can(&scheduler, args, expected);
    }
    assert_forbidden_as(
        &scheduler,
        &["get", "secrets", "-n", "default"],
        "system:kube-scheduler",
    );

    //    controller-manager.conf is system:kube-controller-manager.
    for (args, expected) in [
        (sa_token, true),
        (cm_lease, true),
        (sched_lease, false),
        (bind_pods, false),
        (delete_nodes, false),
    ] {
        assert_can(&cm, args, expected);
    }
    assert_forbidden_as(
        &cm,
        &["get", "node", NODE],
        "system:kube-controller-manager",
    );

    //    kubelet.conf is system:node:<node> in group system:nodes: the Node authorizer (which
    //    needs both) lets it list nodes, and nothing in RBAC does.
    assert_can(&kubelet, &["list", "nodes"], true);
    assert_can(&kubelet, &["list", "secrets", "-n", "default"], false);
    assert_forbidden_as(
        &kubelet,
        &["get", "secrets", "-n", "default"],
        &format!("system:node:{NODE}"),
    );

    // 4. `kubeconfig user`: CN alice, groups devs and qa, each of which counts.
    let server = c.server();
    let alice = user_kubeconfig(
        c,
        "alice.conf",
        &[
            "--client-name",
            "alice",
            "--org",
            "devs",
            "--org",
            "qa",
            "--server",
            &server,
        ],
    );
    assert_can(&alice, &["get", "pods", "-n", "kube-system"], false);
    assert_can(&alice, &["list", "nodes"], false);
    assert_forbidden_as(&alice, &["get", "pods", "-n", "kube-system"], "alice");
    // In v1.20 `view` is an aggregated ClusterRole: empty until the controller manager's
    // aggregation controller fills it. That controller runs under its own service account, so
    // its writes prove the controller manager authenticates with controller-manager.conf and
    // that tokens it signs with sa.key are accepted by kube-apiserver with sa.pub.
    {
        let kcm = c.kcm.as_mut().unwrap();
        wait_for(
            "kube-controller-manager to aggregate ClusterRole view",
            Duration::from_secs(60),
            120,
            || {
                assert_running(kcm);
                let o = kc(
                    &super_admin,
                    &[
                        "get",
                        "clusterrole",
                        "view",
                        "-o",
                        "jsonpath={.rules[*].resources}",
                    ],
                );
                (o.status.success() && stdout(&o).contains("\"pods\"")).then_some(())
            },
        );
    }
    let o = run_ok(kctl(&super_admin).args([
        "get",
        "serviceaccount",
        "clusterrole-aggregation-controller",
        "-n",
        "kube-system",
        "-o",
        "name",
    ]));
    assert_eq!(
        stdout(&o).trim(),
        "serviceaccount/clusterrole-aggregation-controller"
    );
    // A binding for a group alice is not in, created first: it must never apply to her.
    run_ok(kctl(&super_admin).args([
        "create",
        "clusterrolebinding",
        "ops-edit",
        "--clusterrole=edit",
        "--group=ops",
    ]));
    // `view` for the SECOND org.
    run_ok(kctl(&super_admin).args([
        "create",
        "clusterrolebinding",
        "qa-view",
        "--clusterrole=view",
        "--group=qa",
    ]));
    wait_can(&alice, &["get", "pods", "-n", "kube-system"]);
    let o = kc(&alice, &["get", "pods", "-n", "kube-system"]);
    assert!(
        o.status.success(),
        "alice (group qa, bound to view) should list pods in kube-system\n{}",
        show(&o)
    );
    assert_can(&alice, &["create", "configmaps", "-n", "default"], false);
    assert_forbidden_as(&alice, &["get", "secrets", "-n", "kube-system"], "alice");
    // ... and the FIRST org.
    run_ok(kctl(&super_admin).args([
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get,list,watch",
        "--resource=nodes",
    ]));
    run_ok(kctl(&super_admin).args([
        "create",
        "clusterrolebinding",
        "devs-node-reader",
        "--clusterrole=node-reader",
        "--group=devs",
    ]));
    wait_can(&alice, &["list", "nodes"]);
    let o = kc(&alice, &["get", "nodes"]);
    assert!(
        o.status.success(),
        "alice (group devs, bound to node-reader) should list nodes\n{}",
        show(&o)
    );

    // 5. A 1-hour user kubeconfig, its server taken from admin.conf: valid about one hour,
    //    subject CN=bob alone, and it authenticates as bob.
    let bob = user_kubeconfig(
        c,
        "bob.conf",
        &["--client-name", "bob", "--validity-period", "1h"],
    );
    let o = run_ok(kctl(&bob).args([
        "config",
        "view",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]));
    assert_eq!(
        stdout(&o).trim(),
        server,
        "bob.conf server (from admin.conf)"
    );
    let o = run_ok(kctl(&bob).args([
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.users[0].user.client-certificate-data}",
    ]));
    let b64 = c.dir.join("bob.crt.b64");
    let pem = c.dir.join("bob.crt");
    write_file(&b64, stdout(&o).trim().as_bytes());
    run_ok(
        Command::new("openssl")
            .args(["base64", "-d", "-A", "-in"])
            .arg(&b64)
            .arg("-out")
            .arg(&pem),
    );
    let o = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&pem),
    );
    assert_eq!(
        stdout(&o).trim(),
        "subject=CN=bob",
        "bob's certificate subject"
    );
    // Still valid in 55 minutes, expired in 65.
    run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-checkend", "3300", "-in"])
            .arg(&pem),
    );
    run_fail(
        Command::new("openssl")
            .args(["x509", "-noout", "-checkend", "3900", "-in"])
            .arg(&pem),
    );
    assert_can(&bob, &["get", "pods", "-n", "default"], false);
    assert_forbidden_as(&bob, &["get", "pods", "-n", "default"], "bob");
    run_ok(kctl(&super_admin).args([
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "default",
    ]));
    wait_can(&bob, &["get", "pods", "-n", "default"]);
    let o = kc(&bob, &["get", "pods", "-n", "default"]);
    assert!(o.status.success(), "bob should list pods now\n{}", show(&o));
    assert_can(&bob, &["get", "pods", "-n", "kube-system"], false);

    // Both servers are still up at the end.
    assert_running(&mut c.apiserver);
    assert_running(&mut c.etcd);
    assert_running(c.kcm.as_mut().unwrap());
}
