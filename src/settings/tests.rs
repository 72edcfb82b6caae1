//! Resolution: for every setting that a flag, the config file and a default can all give, the
//! flag wins over the config, which wins over the default; an invalid config names its file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use kubepki_pki::crypto::key::KeyAlgorithm;
use kubepki_pki::model::params::{ClusterParams, KubeVersion};
use kubepki_pki::ops::renew::Selection;

use super::kubeconfig::Server;
use super::*;
use crate::cli::Cli;

/// A config that sets every field kubepki reads, each to a value no flag or default has.
const CONFIG: &str = r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: config-node
localAPIEndpoint:
  advertiseAddress: 10.0.0.2
  bindPort: 7443
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.28.3
certificatesDir: /config/pki
clusterName: config-cluster
controlPlaneEndpoint: config.example.com:8443
encryptionAlgorithm: ECDSA-P256
certificateValidityPeriod: 720h
caCertificateValidityPeriod: 43800h
networking:
  serviceSubnet: 10.128.0.0/16
  dnsDomain: config.local
apiServer:
  certSANs: [config-san.example.com]
etcd:
  local:
    serverCertSANs: [etcd-server.example.com]
    peerCertSANs: [10.0.0.6]
"#;

const HOURS: u64 = 3600;

/// A temporary directory holding `k.yaml` with `text`.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn config_file(text: &str) -> ConfigFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.yaml");
    std::fs::write(&path, text).unwrap();
    ConfigFile { _dir: dir, path }
}

fn resolve(args: &[&str]) -> anyhow::Result<Command> {
    let cli = Cli::try_parse_from(std::iter::once("kubepki").chain(args.iter().copied()))?;
    Ok(Settings::resolve(cli)?.command)
}

fn with_config<'a>(args: &[&'a str], config: &'a ConfigFile) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--config", config.path.to_str().unwrap()]);
    v
}

fn init(args: &[&str]) -> ClusterParams {
    let mut v = vec!["init"];
    v.extend(args);
    match resolve(&v).unwrap() {
        Command::Init(i) => i.params,
        _ => unreachable!(),
    }
}

fn renew(args: &[&str]) -> certs::Renew {
    let mut v = vec!["certs", "renew", "all"];
    v.extend(args);
    match resolve(&v).unwrap() {
        Command::Renew(r) => r,
        _ => unreachable!(),
    }
}

fn user(args: &[&str]) -> kubeconfig::User {
    let mut v = vec!["kubeconfig", "user", "--client-name", "alice"];
    v.extend(args);
    match resolve(&v).unwrap() {
        Command::KubeconfigUser(u) => u,
        _ => unreachable!(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every init flag that has a config field, set to a third value.
const INIT_FLAGS: &[&str] = &[
    "--cert-dir",
    "/flag/pki",
    "--node-name",
    "flag-node",
    "--apiserver-advertise-address",
    "10.0.0.1",
    "--apiserver-bind-port",
    "9443",
    "--control-plane-endpoint",
    "flag.example.com",
    "--service-cidr",
    "10.200.0.0/16",
    "--service-dns-domain",
    "flag.local",
    "--apiserver-cert-extra-sans",
    "flag-san.example.com,,203.0.113.9",
    "--encryption-algorithm",
    "ECDSA-P384",
    "--kubernetes-version",
    "v1.27.0",
    "--cert-validity",
    "100h",
    "--ca-validity",
    "1000h",
];

/// One setting of [`ClusterParams`], shown with `{:?}`.
type Get = fn(&ClusterParams) -> String;

#[test]
fn init_flags_beat_the_config_which_beats_the_defaults() {
    let cfg = config_file(CONFIG);
    let flag = init(&with_config(INIT_FLAGS, &cfg));
    let config = init(&with_config(&[], &cfg));
    // The node name and address have no fixed default (they are found: next test).
    let default = init(&[
        "--node-name",
        "n",
        "--apiserver-advertise-address",
        "10.0.0.9",
    ]);
    #[rustfmt::skip]
    let table: &[(&str, Get, &str, &str, &str)] = &[
        // setting, then its value from the flag, from the config, by default
        ("cert dir", |p| format!("{:?}", p.cert_dir), r#""/flag/pki""#, r#""/config/pki""#, r#""/etc/kubernetes/pki""#),
        ("node name", |p| format!("{:?}", p.node_name), r#""flag-node""#, r#""config-node""#, r#""n""#),
        ("advertise address", |p| format!("{:?}", p.advertise_address), "10.0.0.1", "10.0.0.2", "10.0.0.9"),
        ("bind port", |p| format!("{:?}", p.bind_port), "9443", "7443", "6443"),
        ("endpoint", |p| format!("{:?}", p.control_plane_endpoint), r#"Some("flag.example.com")"#, r#"Some("config.example.com:8443")"#, "None"),
        ("service CIDR", |p| format!("{:?}", p.service_subnet), r#""10.200.0.0/16""#, r#""10.128.0.0/16""#, r#""10.96.0.0/12""#),
        ("DNS domain", |p| format!("{:?}", p.dns_domain), r#""flag.local""#, r#""config.local""#, r#""cluster.local""#),
        ("key algorithm", |p| format!("{:?}", p.key_algorithm), "EcdsaP384", "EcdsaP256", "Rsa2048"),
        ("version", |p| format!("{:?}", p.kubernetes_version.map(|v| v.minor)), "Some(27)", "Some(28)", "None"),
        ("validity", |p| format!("{:?}", p.cert_validity), "360000s", "2592000s", "31536000s"),
        ("CA validity", |p| format!("{:?}", p.ca_validity), "3600000s", "157680000s", "315360000s"),
        // Extra SANs add up: the config's, then the flag's (empty items dropped).
        ("apiserver SANs", |p| format!("{:?}", p.apiserver_cert_sans),
            r#"["config-san.example.com", "flag-san.example.com", "203.0.113.9"]"#, r#"["config-san.example.com"]"#, "[]"),
        // No flags for these.
        ("cluster name", |p| format!("{:?}", p.cluster_name), r#""config-cluster""#, r#""config-cluster""#, r#""kubernetes""#),
        ("etcd server SANs", |p| format!("{:?}", p.etcd_server_cert_sans), r#"["etcd-server.example.com"]"#, r#"["etcd-server.example.com"]"#, "[]"),
        ("etcd peer SANs", |p| format!("{:?}", p.etcd_peer_cert_sans), r#"["10.0.0.6"]"#, r#"["10.0.0.6"]"#, "[]"),
        ("kubeconfig dir", |p| format!("{:?}", p.kubeconfig_dir), r#""/etc/kubernetes""#, r#""/etc/kubernetes""#, r#""/etc/kubernetes""#),
        ("local etcd", |p| format!("{:?}", p.local_etcd), "true", "true", "true"),
    ];
    for (setting, get, from_flag, from_config, by_default) in table {
        assert_eq!(get(&flag), *from_flag, "{setting} from the flag");
        assert_eq!(get(&config), *from_config, "{setting} from the config");
        assert_eq!(get(&default), *by_default, "{setting} by default");
    }
    // Every default is the library's.
    assert_eq!(default, ClusterParams::new("n".into(), ip("10.0.0.9")));
}

#[test]
fn node_name_and_address_default_to_this_machines() {
    // Found only when neither flag nor config gives them.
    let name = crate::detect::node_name().unwrap();
    let p = init(&["--apiserver-advertise-address", "10.0.0.9"]);
    assert_eq!(p.node_name, name);
    let v = ["init", "--node-name", "n"];
    match crate::detect::advertise_address() {
        Ok(a) => match resolve(&v).unwrap() {
            Command::Init(i) => assert_eq!(i.params.advertise_address, a),
            _ => unreachable!(),
        },
        Err(e) => assert_eq!(resolve(&v).err().unwrap().to_string(), e.to_string()),
    }
}

#[test]
fn generate_csr_resolves_as_init_does() {
    let cfg = config_file(CONFIG);
    let mut v = vec![
        "certs",
        "generate-csr",
        "apiserver",
        "--node-name",
        "flag-node",
    ];
    v.extend(["--csr-dir", "/csrs"]);
    let Command::GenerateCsr(g) = resolve(&with_config(&v, &cfg)).unwrap() else {
        unreachable!()
    };
    assert_eq!(g.params.node_name, "flag-node");
    assert_eq!(g.params.cert_dir, Path::new("/config/pki"));
    assert_eq!(g.params.cert_validity, Duration::from_secs(720 * HOURS));
    assert_eq!(g.selection, Selection::Named(vec!["apiserver".into()]));
    assert_eq!(g.csr_dir.as_deref(), Some(Path::new("/csrs")));
    let e = resolve(&[
        "certs",
        "generate-csr",
        "all",
        "apiserver",
        "--node-name",
        "n",
    ]);
    assert_eq!(
        e.err().unwrap().to_string(),
        "`all` cannot be combined with other names"
    );
}

#[test]
fn renew_flags_beat_the_config_which_beats_the_defaults() {
    let cfg = config_file(CONFIG);
    let flags = [
        "--validity",
        "200h",
        "--encryption-algorithm",
        "RSA-3072",
        "--add-sans",
        "flag-san.example.com",
        "--cert-dir",
        "/flag/pki",
    ];
    let r = renew(&with_config(&flags, &cfg));
    assert_eq!(r.layout.cert_dir, Path::new("/flag/pki"));
    assert_eq!(r.request.validity, Duration::from_secs(200 * HOURS));
    assert_eq!(r.request.key_algorithm, Some(KeyAlgorithm::Rsa3072));
    // Added SANs: the flag's, then the config's for that certificate.
    assert_eq!(
        r.request.extra_sans.apiserver,
        ["flag-san.example.com", "config-san.example.com"]
    );
    assert_eq!(
        r.request.extra_sans.etcd_server,
        ["flag-san.example.com", "etcd-server.example.com"]
    );
    assert_eq!(
        r.request.extra_sans.etcd_peer,
        ["flag-san.example.com", "10.0.0.6"]
    );

    let r = renew(&with_config(&[], &cfg));
    assert_eq!(r.layout.cert_dir, Path::new("/config/pki"));
    assert_eq!(r.request.validity, Duration::from_secs(720 * HOURS));
    assert_eq!(r.request.key_algorithm, Some(KeyAlgorithm::EcdsaP256));
    assert_eq!(r.request.extra_sans.apiserver, ["config-san.example.com"]);

    let r = renew(&[]);
    assert_eq!(r.layout.cert_dir, Path::new("/etc/kubernetes/pki"));
    assert_eq!(r.layout.kubeconfig_dir, Path::new("/etc/kubernetes"));
    assert_eq!(r.request.validity, Duration::from_secs(8760 * HOURS));
    // No algorithm: each certificate keeps its own.
    assert_eq!(r.request.key_algorithm, None);
    assert!(r.request.extra_sans.apiserver.is_empty());
    assert_eq!(r.request.selection, Selection::All);
    assert!(r.request.local_etcd);
}

#[test]
fn renew_writing_flags() {
    let r = renew(&[]);
    assert_eq!(r.backup_dir, BackupDir::Timestamped);
    assert!(!r.wait && !r.dry_run);
    assert!(r.restart.is_none());
    let r = renew(&[
        "--backup-dir",
        "/b",
        "--wait",
        "--dry-run",
        "--restart-static-pods",
        "--kubeconfig-dir",
        "/k",
        "--file-check-frequency",
        "1s",
    ]);
    assert_eq!(r.backup_dir, BackupDir::Given("/b".into()));
    assert!(r.wait && r.dry_run);
    let o = r.restart.unwrap();
    assert_eq!(o.manifests_dir, Path::new("/etc/kubernetes/manifests"));
    assert_eq!(o.hold_dir, crate::restart::hold_dir(Path::new("/k")));
    assert_eq!(o.file_check_frequency, Duration::from_secs(1));
    assert_eq!(o.timeout, Duration::from_secs(300));
}

#[test]
fn kubeconfig_user_flags_beat_the_config_which_beats_the_defaults() {
    let cfg = config_file(CONFIG);
    let flags = [
        "--server",
        "https://flag.example.com:6443",
        "--encryption-algorithm",
        "RSA-4096",
    ];
    let u = user(&with_config(&flags, &cfg));
    assert_eq!(
        u.client.server,
        Server::Url("https://flag.example.com:6443".into())
    );
    assert_eq!(u.client.key_algorithm, KeyAlgorithm::Rsa4096);
    assert_eq!(u.client.cluster_name, "config-cluster");
    assert_eq!(u.client.layout.cert_dir, Path::new("/config/pki"));

    let u = user(&with_config(&[], &cfg));
    assert_eq!(
        u.client.server,
        Server::Url("https://config.example.com:8443".into())
    );
    assert_eq!(u.client.key_algorithm, KeyAlgorithm::EcdsaP256);

    let u = user(&[]);
    assert_eq!(u.client.server, Server::FromKubeconfigs(&["admin.conf"]));
    assert_eq!(u.client.key_algorithm, KeyAlgorithm::Rsa2048);
    assert_eq!(u.client.cluster_name, "kubernetes");
    assert_eq!(u.client.validity, Duration::from_secs(8760 * HOURS));
    assert_eq!(u.name, "alice");
}

#[test]
fn a_configs_server_is_its_endpoint_else_its_advertise_address() {
    let only_address = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.0.2\n  bindPort: 7443\n";
    let cfg = config_file(only_address);
    let u = user(&with_config(&[], &cfg));
    assert_eq!(u.client.server, Server::Url("https://10.0.0.2:7443".into()));
    // An endpoint without a port takes the bind port.
    let cfg = config_file(&format!(
        "{only_address}---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: cp.example.com\n"
    ));
    let u = user(&with_config(&[], &cfg));
    assert_eq!(
        u.client.server,
        Server::Url("https://cp.example.com:7443".into())
    );
    // A config that says neither leaves it to the kubeconfigs.
    let cfg = config_file("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n");
    let u = user(&with_config(&[], &cfg));
    assert_eq!(u.client.server, Server::FromKubeconfigs(&["admin.conf"]));
}

#[test]
fn kubeconfig_kubelet() {
    let Command::KubeconfigKubelet(k) =
        resolve(&["kubeconfig", "kubelet", "--node-name", "n1"]).unwrap()
    else {
        unreachable!()
    };
    assert_eq!(
        k.client.server,
        Server::FromKubeconfigs(&["kubelet.conf", "admin.conf"])
    );
    assert_eq!(k.rotated, None);
    assert_eq!(k.write, None);
    let Command::KubeconfigKubelet(k) = resolve(&[
        "kubeconfig",
        "kubelet",
        "--node-name",
        "n1",
        "--rotated",
        "--write",
        "--backup-dir",
        "/b",
    ])
    .unwrap() else {
        unreachable!()
    };
    assert_eq!(k.rotated.as_deref(), Some(Path::new("/var/lib/kubelet")));
    assert_eq!(k.write, Some(BackupDir::Given("/b".into())));
    let e = resolve(&["kubeconfig", "kubelet", "--node-name", "N_1"]).err();
    assert!(e.unwrap().to_string().starts_with("invalid node name"));
}

#[test]
fn check_expiration_and_import_take_the_configs_cluster() {
    let external = CONFIG.replace(
        "  local:\n    serverCertSANs: [etcd-server.example.com]\n    peerCertSANs: [10.0.0.6]\n",
        "  external:\n    endpoints: [https://10.0.0.9:2379]\n",
    );
    assert_ne!(external, CONFIG);
    let cfg = config_file(&external);
    let Command::CheckExpiration(c) =
        resolve(&with_config(&["certs", "check-expiration"], &cfg)).unwrap()
    else {
        unreachable!()
    };
    assert!(!c.scope.local_etcd);
    assert_eq!(
        c.scope.kubernetes_version,
        Some(KubeVersion {
            major: 1,
            minor: 28
        })
    );
    assert_eq!(c.layout.cert_dir, Path::new("/config/pki"));
    let Command::Import(i) = resolve(&with_config(&["certs", "import"], &cfg)).unwrap() else {
        unreachable!()
    };
    assert!(!i.local_etcd);
    assert_eq!(i.backup_dir, BackupDir::Timestamped);
    let Command::CheckExpiration(c) = resolve(&["certs", "check-expiration"]).unwrap() else {
        unreachable!()
    };
    assert!(c.scope.local_etcd);
    assert_eq!(c.scope.kubernetes_version, None);
}

#[test]
fn restore_backs_up_beside_the_backup_unless_told() {
    let Command::Restore(r) = resolve(&["certs", "restore", "bk"]).unwrap() else {
        unreachable!()
    };
    assert_eq!(r.backup_dir, BackupDir::BeforeRestore("bk".into()));
    let Command::Restore(r) = resolve(&["certs", "restore", "bk", "--backup-dir", "/b"]).unwrap()
    else {
        unreachable!()
    };
    assert_eq!(r.backup_dir, BackupDir::Given("/b".into()));
}

#[test]
fn an_invalid_config_names_its_file() {
    let cfg = config_file(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: DSA\n",
    );
    let name = cfg.path.display().to_string();
    for cmd in [
        &["init", "--node-name", "n"][..],
        &["certs", "renew", "all"],
        &["certs", "check-expiration"],
        &["certs", "restore", "bk"],
        &["certs", "recover"],
        &["certs", "import"],
        &["certs", "generate-csr"],
        &["kubeconfig", "user", "--client-name", "a"],
        &["kubeconfig", "kubelet", "--node-name", "n"],
    ] {
        let e = resolve(&with_config(cmd, &cfg)).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!("{name}: document 1: encryptionAlgorithm")),
            "{cmd:?}: {e}"
        );
    }
    let missing = Path::new("/nonexistent/k.yaml");
    let e = resolve(&["certs", "recover", "--config", missing.to_str().unwrap()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("/nonexistent/k.yaml"), "{e}");
}

#[test]
fn checks_come_in_the_order_they_always_did() {
    // An empty user name is reported before the config file is read.
    let e = resolve(&[
        "kubeconfig",
        "user",
        "--client-name",
        "",
        "--config",
        "/nonexistent",
    ]);
    assert_eq!(
        e.err().unwrap().to_string(),
        "--client-name must not be empty"
    );
    // The config file before the names.
    let e = resolve(&[
        "certs",
        "renew",
        "all",
        "apiserver",
        "--config",
        "/nonexistent",
    ]);
    assert!(e.err().unwrap().to_string().starts_with("/nonexistent"));
    // A bad --kubernetes-version after everything else init resolves.
    let e = resolve(&[
        "init",
        "--node-name",
        "n",
        "--apiserver-advertise-address",
        "10.0.0.1",
        "--kubernetes-version",
        "latest",
    ]);
    assert!(
        e.err()
            .unwrap()
            .to_string()
            .starts_with("invalid Kubernetes version")
    );
}

#[test]
fn controller_flags() {
    let Command::Controller(c) = resolve(&[
        "controller",
        "--identity",
        "me",
        "--leader-elect-resource-namespace",
        "ns",
        "--metrics-bind-address",
        ":9090",
        "--health-probe-bind-address",
        "0",
    ])
    .unwrap() else {
        unreachable!()
    };
    assert_eq!(c.config.identity, "me");
    assert_eq!(c.config.leader_election.unwrap().namespace, "ns");
    assert_eq!(c.config.metrics_addr, Some("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(c.config.health_addr, None);
    let e = resolve(&["controller", "--metrics-bind-address", "x"]).err();
    assert!(
        e.unwrap()
            .to_string()
            .starts_with("--metrics-bind-address \"x\": not HOST:PORT")
    );
}

#[test]
fn now_is_the_flag_else_the_clock() {
    let before = time::OffsetDateTime::now_utc();
    let cli = Cli::try_parse_from(["kubepki", "certs", "recover"]).unwrap();
    assert!(Settings::resolve(cli).unwrap().now >= before);
    let cli = Cli::try_parse_from([
        "kubepki",
        "--now",
        "2030-01-02T03:04:05Z",
        "certs",
        "recover",
    ])
    .unwrap();
    assert_eq!(
        Settings::resolve(cli).unwrap().now,
        time::macros::datetime!(2030-01-02 03:04:05 UTC)
    );
}
