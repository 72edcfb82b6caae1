use super::*;
use std::os::unix::fs::PermissionsExt;

use kubepki_pki::crypto::issuer::Issuer;
use kubepki_pki::crypto::key::PrivateKey;
use kubepki_pki::model::kubeconfig;
use kubepki_pki::model::params::ClusterParams;
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

    /// Replaces apiserver.crt and .key with a certificate the CA signs for a new `alg` key.
    fn reissue_apiserver(&self, alg: KeyAlgorithm) {
        let item = slot::kubeadm_items(true)
            .into_iter()
            .find(|i| i.name() == "apiserver")
            .unwrap();
        let key = PrivateKey::generate(alg).unwrap();
        let t = item.template(&self.params).unwrap();
        let cert = self
            .ca()
            .sign(&t, key.public_key_der(), NOW, 365 * DAY)
            .unwrap()
            .cert;
        std::fs::write(self.path("apiserver.crt"), cert.to_pem()).unwrap();
        std::fs::write(self.path("apiserver.key"), key.to_pem().unwrap()).unwrap();
    }
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
    let key = files::read_key(&pki.layout.ca_key(spec)).unwrap().unwrap();
    let short = Issuer::new_root(
        &ClusterParams::ca_template(spec),
        key,
        NOW,
        20 * DAY,
        &pki.layout.ca_cert(spec),
        &pki.layout.ca_key(spec),
    )
    .unwrap();
    std::fs::write(pki.layout.ca_cert(spec), short.cert().to_pem()).unwrap();
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
    let found = check(&layout, datetime!(2026-11-22 18:00 UTC), &policy);
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
