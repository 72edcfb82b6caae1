use super::*;
use kubepki_pki::crypto::key::KeyAlgorithm;
use std::os::unix::fs::PermissionsExt;

use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::issuer::Issuer;
use kubepki_pki::crypto::key::PrivateKey;
use kubepki_pki::model::kubeconfig;
use kubepki_pki::model::params::{ClusterParams, KubeVersion};
use kubepki_pki::ops::init;
use kubepki_pki::storage::session::Session;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
const DAY: Duration = Duration::from_secs(86400);

/// A scratch PKI as `kubepki init` makes it (ECDSA P-256, for speed), with the layout and the
/// params that made it.
struct Pki {
    dir: tempfile::TempDir,
    layout: Layout,
    params: ClusterParams,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = ClusterParams::new("n1".into(), [10, 0, 0, 5].into());
        params.cert_dir = dir.path().join("pki");
        params.kubeconfig_dir = dir.path().to_path_buf();
        params.key_algorithm = KeyAlgorithm::EcdsaP256;
        let layout = Layout::new(&params.cert_dir, &params.kubeconfig_dir);
        let session = Session::create(&layout, false).unwrap();
        let plan = init::plan(&params, NOW).unwrap();
        init::execute(&session, &plan, &params, NOW, &mut |_| {}).unwrap();
        let layout = session.layout().clone();
        Pki {
            dir,
            layout,
            params,
        }
    }

    /// The default policy, with key files owned by whoever runs the test.
    fn policy(&self) -> Policy {
        Policy {
            key_owner_uid: std::fs::metadata(self.dir.path()).unwrap().uid(),
            ..Policy::default()
        }
    }

    fn check(&self, now: OffsetDateTime, policy: &Policy) -> Vec<Finding> {
        check(&self.layout, now, policy)
    }

    fn path(&self, cert_dir_file: &str) -> String {
        self.layout
            .cert_dir
            .join(cert_dir_file)
            .display()
            .to_string()
    }

    fn ca(&self) -> Issuer {
        let spec = inventory::ca(CaId::Ca);
        Issuer::read(&self.layout.ca_cert(spec), &self.layout.ca_key(spec))
            .unwrap()
            .unwrap()
    }

    /// Replaces the CA `id`'s certificate with one for the same key from `t`, valid for
    /// `validity`: what the CA signed still verifies with it.
    fn replace_ca(&self, id: CaId, t: &CertTemplate, validity: Duration) {
        let spec = inventory::ca(id);
        let (cert, key) = (self.layout.ca_cert(spec), self.layout.ca_key(spec));
        let ca_key = files::read_key(&key).unwrap().unwrap();
        let new = Issuer::new_root(t, ca_key, NOW, validity, &cert, &key).unwrap();
        std::fs::write(&cert, new.cert().to_pem()).unwrap();
    }

    /// The default policy and this node's parameters.
    fn node_policy(&self) -> Policy {
        Policy {
            node: Some(self.params.clone()),
            ..self.policy()
        }
    }

    /// Replaces apiserver.crt and .key with a certificate the CA signs for a new `alg` key.
    fn reissue_apiserver(&self, alg: KeyAlgorithm) {
        self.reissue("apiserver", alg, |_| {});
    }

    /// Replaces the leaf `name`'s .crt and .key with a certificate its CA signs for a new
    /// `alg` key, from the inventory's template as `edit` changes it.
    fn reissue(&self, name: &str, alg: KeyAlgorithm, edit: impl FnOnce(&mut CertTemplate)) {
        let spec = inventory::leaf(name).unwrap();
        let item: Item = spec;
        let key = PrivateKey::generate(alg).unwrap();
        let mut t = item.template(&self.params).unwrap();
        edit(&mut t);
        let ca = inventory::ca(spec.issuer);
        let issuer = Issuer::read(&self.layout.ca_cert(ca), &self.layout.ca_key(ca))
            .unwrap()
            .unwrap();
        let cert = issuer
            .sign(&t, key.public_key_der(), NOW, 365 * DAY)
            .unwrap()
            .cert;
        std::fs::write(self.layout.leaf_cert(spec), cert.to_pem()).unwrap();
        std::fs::write(self.layout.leaf_key(spec), key.to_pem().unwrap()).unwrap();
    }

    /// A serving certificate for the kubelet of node n1 that `issuer` signs, with its key, as
    /// the kubelet writes kubelet-server-current.pem.
    fn kubelet_pem(&self, issuer: &Issuer, server_auth: bool) -> String {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let t = CertTemplate {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            server_auth,
            client_auth: !server_auth,
            dns_names: vec!["n1".into()],
            ip_addresses: vec![[10, 0, 0, 5].into()],
            ..Default::default()
        };
        let cert = issuer
            .sign(&t, key.public_key_der(), NOW, 365 * DAY)
            .unwrap()
            .cert;
        cert.to_pem() + &key.to_pem().unwrap()
    }

    fn cluster_ca(&self) -> Certificate {
        files::read_cert(&self.layout.ca_cert(inventory::ca(CaId::Ca)))
            .unwrap()
            .unwrap()
    }
}

/// Writes a private file (mode 0600) as the kubelet does.
fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// (id, severity, object) of each finding, sorted.
fn summary(findings: &[Finding]) -> Vec<(&'static str, Severity, String)> {
    for f in findings {
        assert!(f.page.starts_with("PKI certificates") || f.page.starts_with("Certificate"));
        assert!(!f.message.is_empty() && !f.fix.is_empty(), "{f:?}");
    }
    let mut v: Vec<_> = findings
        .iter()
        .map(|f| (f.id, f.severity, f.object.clone()))
        .collect();
    v.sort();
    v
}

/// The ids found, each once, sorted.
fn ids(findings: &[Finding]) -> Vec<&'static str> {
    let mut v: Vec<&str> = findings.iter().map(|f| f.id).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn a_clean_pki_has_no_findings() {
    let pki = Pki::new();
    assert_eq!(summary(&pki.check(NOW, &pki.policy())), []);
    // Nor 31 days before the leaves expire, just outside the 30-day horizon.
    let later = NOW + time::Duration::days(365 - 31);
    assert_eq!(summary(&pki.check(later, &pki.policy())), []);
    // With the node's parameters: every SAN kubeadm would give is there.
    assert_eq!(summary(&pki.check(NOW, &pki.node_policy())), []);
    // Another node's, with extra SANs and an endpoint: what this PKI lacks for that node.
    let mut other = pki.node_policy();
    let node = other.node.as_mut().unwrap();
    node.node_name = "n2".into();
    node.control_plane_endpoint = Some("cp.example.com:6443".into());
    node.etcd_peer_cert_sans = vec!["10.0.0.9".into()];
    let found = pki.check(NOW, &other);
    assert_eq!(
        summary(&found),
        [
            ("PKI-SANS", Severity::Error, pki.path("apiserver.crt")),
            ("PKI-SANS", Severity::Error, pki.path("etcd/peer.crt")),
            ("PKI-SANS", Severity::Error, pki.path("etcd/server.crt")),
        ]
    );
    assert_eq!(
        found[0].message,
        "apiserver lacks DNS:cp.example.com, DNS:n2 (kubeadm gives it on node n2)"
    );
    assert_eq!(
        found[0].fix,
        "renew it with them: `kubepki certs renew apiserver --add-sans cp.example.com,n2`"
    );
    let peer = found.iter().find(|f| f.object == pki.path("etcd/peer.crt"));
    assert_eq!(
        peer.unwrap().message,
        "etcd-peer lacks DNS:n2, IP:10.0.0.9 (kubeadm gives it on node n2)"
    );
}

#[test]
fn a_leaf_without_the_usages_kubeadm_gives_is_reported() {
    let pki = Pki::new();
    // The API server's certificate for clients only.
    pki.reissue("apiserver", KeyAlgorithm::EcdsaP256, |t| {
        t.server_auth = false;
        t.client_auth = true;
    });
    // A client certificate for servers only.
    pki.reissue("apiserver-kubelet-client", KeyAlgorithm::EcdsaP256, |t| {
        t.server_auth = true;
        t.client_auth = false;
    });
    let found = pki.check(NOW, &pki.node_policy());
    assert_eq!(
        summary(&found),
        [
            (
                "PKI-USAGE",
                Severity::Error,
                pki.path("apiserver-kubelet-client.crt")
            ),
            ("PKI-USAGE", Severity::Error, pki.path("apiserver.crt")),
        ]
    );
    let api = found
        .iter()
        .find(|f| f.object == pki.path("apiserver.crt"))
        .unwrap();
    assert_eq!(
        api.message,
        "apiserver lacks the serverAuth extended key usage; also has clientAuth, which kubeadm does not give it"
    );
    // etcd's server certificate with serverAuth only: etcd's gateway needs clientAuth too.
    let pki = Pki::new();
    pki.reissue("etcd-server", KeyAlgorithm::EcdsaP256, |t| {
        t.client_auth = false
    });
    let found = pki.check(NOW, &pki.policy());
    assert_eq!(
        summary(&found),
        [("PKI-USAGE", Severity::Error, pki.path("etcd/server.crt"))]
    );
    assert_eq!(
        found[0].message,
        "etcd-server lacks the clientAuth extended key usage"
    );
    // A leaf that is a CA.
    let pki = Pki::new();
    pki.reissue("front-proxy-client", KeyAlgorithm::EcdsaP256, |t| {
        t.is_ca = true
    });
    let found = pki.check(NOW, &pki.policy());
    assert_eq!(
        summary(&found),
        [(
            "PKI-USAGE",
            Severity::Error,
            pki.path("front-proxy-client.crt")
        )]
    );
}

#[test]
fn a_ca_that_is_no_ca_is_reported() {
    let pki = Pki::new();
    // The same key and name in a certificate without CA:TRUE and keyCertSign: the leaves still
    // verify with it.
    let spec = inventory::ca(CaId::FrontProxyCa);
    let t = CertTemplate {
        common_name: spec.common_name.into(),
        ..Default::default()
    };
    pki.replace_ca(CaId::FrontProxyCa, &t, 3650 * DAY);
    let found = pki.check(NOW, &pki.policy());
    assert_eq!(
        summary(&found),
        [("PKI-USAGE", Severity::Error, pki.path("front-proxy-ca.crt"))]
    );
    assert_eq!(
        found[0].message,
        "front-proxy-ca is not a CA (no basicConstraints CA:TRUE); its key usage lacks certificate signing (keyCertSign)"
    );
}

#[test]
fn serving_certificates_lacking_sans_are_reported() {
    let pki = Pki::new();
    // The node's own name gone: only known with the node's parameters.
    pki.reissue("apiserver", KeyAlgorithm::EcdsaP256, |t| {
        t.dns_names.retain(|d| d != "n1")
    });
    assert_eq!(summary(&pki.check(NOW, &pki.policy())), []);
    let found = pki.check(NOW, &pki.node_policy());
    assert_eq!(
        summary(&found),
        [("PKI-SANS", Severity::Error, pki.path("apiserver.crt"))]
    );
    assert_eq!(
        found[0].message,
        "apiserver lacks DNS:n1 (kubeadm gives it on node n1)"
    );
    // A Service name and etcd's ::1 are every node's: found without the node's parameters.
    pki.reissue("apiserver", KeyAlgorithm::EcdsaP256, |t| {
        t.dns_names.retain(|d| d != "kubernetes.default")
    });
    pki.reissue("etcd-peer", KeyAlgorithm::EcdsaP256, |t| {
        t.ip_addresses.retain(|ip| !ip.is_ipv6())
    });
    let found = pki.check(NOW, &pki.policy());
    assert_eq!(
        summary(&found),
        [
            ("PKI-SANS", Severity::Error, pki.path("apiserver.crt")),
            ("PKI-SANS", Severity::Error, pki.path("etcd/peer.crt")),
        ]
    );
    assert_eq!(
        found[0].message,
        "apiserver lacks DNS:kubernetes.default (kubeadm gives it on every node)"
    );
    assert_eq!(
        found[1].message,
        "etcd-peer lacks IP:::1 (kubeadm gives it on every node)"
    );
}

#[test]
fn without_the_node_the_dns_domain_is_the_certificates() {
    let pki = Pki::new();
    let mut params = pki.params.clone();
    params.dns_domain = "prod.example".into();
    // Issued for another domain: its own kubernetes.default.svc.<domain> counts.
    let spec = inventory::leaf("apiserver").unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let t = params.leaf_template(spec).unwrap();
    let cert = pki
        .ca()
        .sign(&t, key.public_key_der(), NOW, 365 * DAY)
        .unwrap()
        .cert;
    std::fs::write(pki.layout.leaf_cert(spec), cert.to_pem()).unwrap();
    std::fs::write(pki.layout.leaf_key(spec), key.to_pem().unwrap()).unwrap();
    assert_eq!(summary(&pki.check(NOW, &pki.policy())), []);
    // The node's parameters say cluster.local: that one is missing.
    let found = pki.check(NOW, &pki.node_policy());
    assert_eq!(
        found[0].message,
        "apiserver lacks DNS:kubernetes.default.svc.cluster.local (kubeadm gives it on node n1)"
    );
}

#[test]
fn kubelet_serving_certificates() {
    let pki = Pki::new();
    let policy = pki.policy();
    let ca = pki.cluster_ca();
    let kubelet = pki.dir.path().join("kubelet-pki");
    let run = |ca: Option<&Certificate>| kubelet_serving(&kubelet, ca, NOW, &policy);
    // No dir, or no file: not a node.
    assert_eq!(run(Some(&ca)), []);
    std::fs::create_dir(&kubelet).unwrap();
    assert_eq!(run(Some(&ca)), []);

    // serverTLSBootstrap off: kubelet.crt, a leaf and the throwaway CA that signed it.
    let own_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let own_ca = Issuer::new_root(
        &CertTemplate {
            common_name: "n1-ca@1700000000".into(),
            is_ca: true,
            ..Default::default()
        },
        own_key,
        NOW,
        365 * DAY,
        &kubelet.join("unused.crt"),
        &kubelet.join("unused.key"),
    )
    .unwrap();
    let leaf_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let leaf = own_ca
        .sign(
            &CertTemplate {
                common_name: "n1@1700000000".into(),
                server_auth: true,
                dns_names: vec!["n1".into()],
                ..Default::default()
            },
            leaf_key.public_key_der(),
            NOW,
            365 * DAY,
        )
        .unwrap()
        .cert;
    let crt = kubelet.join("kubelet.crt");
    std::fs::write(&crt, leaf.to_pem() + &own_ca.cert().to_pem()).unwrap();
    write_private(&kubelet.join("kubelet.key"), &leaf_key.to_pem().unwrap());
    let found = run(Some(&ca));
    let object = crt.display().to_string();
    assert_eq!(
        summary(&found),
        [(
            "PKI-KUBELET-SERVING-SELF-SIGNED",
            Severity::Warning,
            object.clone()
        )]
    );
    assert!(
        found[0].fix.contains("serverTLSBootstrap: true"),
        "{:?}",
        found[0]
    );
    // A single self-signed certificate (older kubelets) is the kubelet's own too.
    std::fs::write(&crt, own_ca.cert().to_pem()).unwrap();
    assert_eq!(ids(&run(Some(&ca))), ["PKI-KUBELET-SERVING-SELF-SIGNED"]);
    // And it expires like any other.
    let late = kubelet_serving(
        &kubelet,
        Some(&ca),
        NOW + time::Duration::days(400),
        &policy,
    );
    assert_eq!(
        ids(&late),
        ["PKI-EXPIRING", "PKI-KUBELET-SERVING-SELF-SIGNED"]
    );

    // serverTLSBootstrap on: kubelet-server-current.pem, a symlink to the current pair.
    let current = kubelet.join("kubelet-server-current.pem");
    let pair = kubelet.join("kubelet-server-2026-12-01-12-00-00.pem");
    write_private(&pair, &pki.kubelet_pem(&pki.ca(), true));
    std::os::unix::fs::symlink(&pair, &current).unwrap();
    assert_eq!(run(Some(&ca)), []);
    let object = current.display().to_string();
    // Issued by another CA.
    let front_proxy = inventory::ca(CaId::FrontProxyCa);
    let other = Issuer::read(
        &pki.layout.ca_cert(front_proxy),
        &pki.layout.ca_key(front_proxy),
    )
    .unwrap()
    .unwrap();
    write_private(&pair, &pki.kubelet_pem(&other, true));
    let found = run(Some(&ca));
    assert_eq!(
        summary(&found),
        [(
            "PKI-KUBELET-SERVING-ISSUER",
            Severity::Error,
            object.clone()
        )]
    );
    assert!(
        found[0].message.contains("\"front-proxy-ca\""),
        "{}",
        found[0].message
    );
    // Without the cluster CA the issuer is not judged.
    assert_eq!(run(None), []);
    // Issued by the cluster CA, for clients only.
    write_private(&pair, &pki.kubelet_pem(&pki.ca(), false));
    let found = run(Some(&ca));
    assert_eq!(
        summary(&found),
        [("PKI-USAGE", Severity::Error, object.clone())]
    );
    // Readable by others.
    write_private(&pair, &pki.kubelet_pem(&pki.ca(), true));
    std::fs::set_permissions(&pair, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        summary(&run(Some(&ca))),
        [("PKI-KEY-MODE", Severity::Error, object.clone())]
    );
}

#[test]
fn hostile_kubelet_files_are_unreadable_findings() {
    let pki = Pki::new();
    let policy = pki.policy();
    let kubelet = pki.dir.path().join("kubelet-pki");
    std::fs::create_dir(&kubelet).unwrap();
    let current = kubelet.join("kubelet-server-current.pem");
    let object = current.display().to_string();
    let run = || kubelet_serving(&kubelet, None, NOW, &policy);
    // A dangling symlink.
    std::os::unix::fs::symlink(kubelet.join("gone.pem"), &current).unwrap();
    assert_eq!(
        summary(&run()),
        [("PKI-UNREADABLE", Severity::Error, object.clone())]
    );
    std::fs::remove_file(&current).unwrap();
    // A FIFO: refused, not waited on.
    let status = std::process::Command::new("mkfifo")
        .arg(&current)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        summary(&run()),
        [("PKI-UNREADABLE", Severity::Error, object.clone())]
    );
    std::fs::remove_file(&current).unwrap();
    // Huge.
    let f = std::fs::File::create(&current).unwrap();
    f.set_len(1 << 30).unwrap();
    assert_eq!(
        summary(&run()),
        [("PKI-UNREADABLE", Severity::Error, object.clone())]
    );
    std::fs::remove_file(&current).unwrap();
    // Not PEM, or a kubelet.crt that holds a key (a certificate file must not).
    std::fs::write(&current, "\0\u{1}garbage").unwrap();
    assert_eq!(ids(&run()), ["PKI-UNREADABLE"]);
    std::fs::remove_file(&current).unwrap();
    let crt = kubelet.join("kubelet.crt");
    write_private(&crt, &pki.kubelet_pem(&pki.ca(), true));
    assert_eq!(
        summary(&run()),
        [("PKI-UNREADABLE", Severity::Error, crt.display().to_string())]
    );
}

/// A kubeconfig that is a FIFO is reported once, not waited on.
#[test]
fn a_fifo_kubeconfig_is_unreadable_once() {
    let pki = Pki::new();
    let admin = pki.layout.kubeconfig_dir.join("admin.conf");
    std::fs::remove_file(&admin).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&admin)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        summary(&pki.check(NOW, &pki.policy())),
        [(
            "PKI-UNREADABLE",
            Severity::Error,
            admin.display().to_string()
        )]
    );
}

#[test]
fn a_key_readable_by_others_is_reported() {
    let pki = Pki::new();
    let key = pki.path("apiserver.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let found = pki.check(NOW, &pki.policy());
    assert_eq!(
        summary(&found),
        [("PKI-KEY-MODE", Severity::Error, key.clone())]
    );
    assert_eq!(found[0].message, "mode 0644, not 0600");
    assert_eq!(found[0].fix, format!("chmod 0600 {key}"));
}

#[test]
fn keys_not_owned_by_the_expected_user_are_reported() {
    let pki = Pki::new();
    let mut policy = pki.policy();
    policy.key_owner_uid += 1;
    let found = pki.check(NOW, &policy);
    assert_eq!(ids(&found), ["PKI-KEY-OWNER"]);
    // Every key init wrote: 3 CAs, 7 leaves (with local etcd) and sa.key.
    assert_eq!(found.len(), 11, "{:#?}", summary(&found));
    assert!(found.iter().any(|f| f.object == pki.path("ca.key")));
}

#[test]
fn a_missing_certificate_is_reported() {
    let pki = Pki::new();
    std::fs::remove_file(pki.path("front-proxy-client.crt")).unwrap();
    std::fs::remove_file(pki.path("etcd/ca.crt")).unwrap();
    let found = pki.check(NOW, &pki.policy());
    assert_eq!(
        summary(&found),
        [
            ("PKI-MISSING", Severity::Error, pki.path("etcd/ca.crt")),
            (
                "PKI-MISSING",
                Severity::Error,
                pki.path("front-proxy-client.crt")
            ),
        ]
    );
    // Without local etcd its CA is not required.
    let mut policy = pki.policy();
    policy.local_etcd = false;
    assert_eq!(pki.check(NOW, &policy).len(), 1);
}

#[test]
fn an_unreadable_certificate_is_reported_and_the_rest_checked() {
    let pki = Pki::new();
    std::fs::write(pki.path("apiserver.crt"), "not a certificate").unwrap();
    std::fs::set_permissions(pki.path("sa.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        summary(&pki.check(NOW, &pki.policy())),
        [
            ("PKI-KEY-MODE", Severity::Error, pki.path("sa.key")),
            ("PKI-UNREADABLE", Severity::Error, pki.path("apiserver.crt")),
        ]
    );
}

#[test]
fn leaves_outliving_a_short_ca_are_reported() {
    let pki = Pki::new();
    // The same key in a CA certificate valid for 20 days: every leaf it signed outlives it.
    let spec = inventory::ca(CaId::Ca);
    pki.replace_ca(CaId::Ca, &ClusterParams::ca_template(spec), 20 * DAY);
    let found = pki.check(NOW, &pki.policy());
    // Also: the CA expires within 30 days, and the kubeconfigs still embed the old ca.crt.
    assert_eq!(
        ids(&found),
        ["PKI-EXPIRING", "PKI-KUBECONFIG-CA", "PKI-LEAF-OUTLIVES-CA"]
    );
    let outliving: Vec<&str> = found
        .iter()
        .filter(|f| f.id == "PKI-LEAF-OUTLIVES-CA")
        .map(|f| f.object.as_str())
        .collect();
    assert!(outliving.contains(&pki.path("apiserver.crt").as_str()));
    assert!(outliving.contains(&pki.path("apiserver-kubelet-client.crt").as_str()));
    // Signed by the front-proxy and etcd CAs: not concerned.
    assert!(!outliving.contains(&pki.path("front-proxy-client.crt").as_str()));
    assert!(!outliving.contains(&pki.path("etcd/server.crt").as_str()));
    let expiring: Vec<_> = found.iter().filter(|f| f.id == "PKI-EXPIRING").collect();
    assert_eq!(expiring.len(), 1);
    assert_eq!(expiring[0].object, pki.path("ca.crt"));
    assert_eq!(expiring[0].severity, Severity::Warning);
}

#[test]
fn leaves_valid_longer_than_the_policy_are_reported() {
    let pki = Pki::new();
    let mut policy = pki.policy();
    policy.max_leaf_validity = 90 * DAY;
    let found = pki.check(NOW, &policy);
    assert_eq!(ids(&found), ["PKI-LEAF-VALIDITY"]);
    // 7 leaves with local etcd and 4 kubeconfigs (super-admin.conf included).
    let leaves = slot::kubeadm_items(true).len();
    assert_eq!(found.len(), leaves, "{:#?}", summary(&found));
    assert!(
        found[0].message.contains("365 days"),
        "{}",
        found[0].message
    );
    // One year and kubeadm's five minutes of backdating are within a one-year policy.
    policy.max_leaf_validity = 365 * DAY;
    assert_eq!(summary(&pki.check(NOW, &policy)), []);
}

#[test]
fn certificates_within_the_horizon_or_expired_are_reported() {
    let pki = Pki::new();
    let policy = pki.policy();
    let soon = pki.check(NOW + time::Duration::days(350), &policy);
    assert_eq!(ids(&soon), ["PKI-EXPIRING"]);
    assert!(soon.iter().all(|f| f.severity == Severity::Warning));
    assert_eq!(soon.len(), slot::kubeadm_items(true).len());
    let late = pki.check(NOW + time::Duration::days(400), &policy);
    assert_eq!(ids(&late), ["PKI-EXPIRING"]);
    assert!(late.iter().all(|f| f.severity == Severity::Critical));
    assert!(
        late[0].message.starts_with("expired on"),
        "{}",
        late[0].message
    );
    // A longer horizon reports them now already.
    let mut long = policy.clone();
    long.expiry_horizon = 400 * DAY;
    assert_eq!(pki.check(NOW, &long).len(), slot::kubeadm_items(true).len());
}

#[test]
fn rsa_keys_below_the_minimum_are_reported() {
    let pki = Pki::new();
    pki.reissue_apiserver(KeyAlgorithm::Rsa2048);
    let mut policy = pki.policy();
    assert_eq!(summary(&pki.check(NOW, &policy)), []);
    policy.min_rsa_bits = 3072;
    let found = pki.check(NOW, &policy);
    assert_eq!(
        summary(&found),
        [("PKI-KEY-SIZE", Severity::Error, pki.path("apiserver.crt"))]
    );
    assert_eq!(
        found[0].message,
        "an RSA key of 2048 bits, fewer than the policy's 3072"
    );
}

#[test]
fn kubeconfigs_trusting_another_ca_are_reported() {
    let pki = Pki::new();
    let admin = pki.layout.kubeconfig_dir.join("admin.conf");
    let text = std::fs::read_to_string(&admin).unwrap();
    let other_spec = inventory::ca(CaId::FrontProxyCa);
    let other = std::fs::read_to_string(pki.layout.ca_cert(other_spec)).unwrap();
    std::fs::write(
        &admin,
        kubeconfig::replace_ca(&text, &admin, &other).unwrap(),
    )
    .unwrap();
    let found = pki.check(NOW, &pki.policy());
    let object = admin.display().to_string();
    assert_eq!(
        summary(&found),
        [("PKI-KUBECONFIG-CA", Severity::Error, object.clone())]
    );
    assert!(
        found[0]
            .message
            .contains("\"front-proxy-ca\" instead of ca.crt"),
        "{}",
        found[0].message
    );
    // ca.crt and another: a warning.
    let ca = std::fs::read_to_string(pki.layout.ca_cert(inventory::ca(CaId::Ca))).unwrap();
    let both = format!("{ca}{other}");
    std::fs::write(
        &admin,
        kubeconfig::replace_ca(&text, &admin, &both).unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary(&pki.check(NOW, &pki.policy())),
        [("PKI-KUBECONFIG-CA", Severity::Warning, object.clone())]
    );
    // Not a kubeconfig at all: unreadable.
    std::fs::write(&admin, "{").unwrap();
    assert!(
        pki.check(NOW, &pki.policy())
            .iter()
            .any(|f| f.id == "PKI-UNREADABLE" && f.object == object)
    );
}

/// kubeadm v1.20.2's own PKI, a few days after it was made: nothing to report but the modes of
/// its key files, which the fixture's checkout decides (read-only here).
#[test]
fn kubeadms_pki_is_clean_but_for_the_fixtures_file_modes() {
    let base =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/kubeadm-v1.20.2");
    let layout = Layout::new(base.join("pki"), &base);
    let policy = Policy {
        key_owner_uid: std::fs::metadata(layout.ca_key(inventory::ca(CaId::Ca)))
            .unwrap()
            .uid(),
        ..Policy::default()
    };
    // The node kubeadm.yaml describes (advertise address from apiserver.crt's SANs).
    let mut node = ClusterParams::new("vm".into(), [192, 0, 2, 2].into());
    node.control_plane_endpoint = Some("127.0.0.1:6443".into());
    node.kubernetes_version = Some(KubeVersion::parse("v1.20.2").unwrap());
    let with_node = Policy {
        node: Some(node),
        ..policy.clone()
    };
    let at = datetime!(2026-11-22 18:00 UTC);
    assert_eq!(
        summary(&check(&layout, at, &policy)),
        summary(&check(&layout, at, &with_node))
    );
    // Another advertise address: what kubeadm would give there is missing.
    let mut moved = with_node.clone();
    moved.node.as_mut().unwrap().advertise_address = [192, 0, 2, 3].into();
    let sans: Vec<String> = check(&layout, at, &moved)
        .into_iter()
        .filter(|f| f.id == "PKI-SANS")
        .map(|f| f.message)
        .collect();
    assert_eq!(
        sans,
        [
            "apiserver lacks IP:192.0.2.3 (kubeadm gives it on node vm)",
            "etcd-peer lacks IP:192.0.2.3 (kubeadm gives it on node vm)",
            "etcd-server lacks IP:192.0.2.3 (kubeadm gives it on node vm)",
        ]
    );
    let found = check(&layout, at, &with_node);
    let (modes, rest): (Vec<_>, Vec<_>) = found.iter().partition(|f| f.id == "PKI-KEY-MODE");
    assert_eq!(rest, Vec::<&Finding>::new());
    let wrong_modes = layout
        .managed_files()
        .into_iter()
        .filter(|(p, k)| {
            *k == FileKind::PrivateKey
                && std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o7777 != 0o600)
        })
        .count();
    assert_eq!(modes.len(), wrong_modes);
}
