//! `--sign`'s decision without a cluster: what the rules refuse is never signed, whoever
//! approved it; the validity window stays inside the CA's; an expired CA signs nothing.

mod common;

use std::time::Duration;

use common::*;
use kubepki_controller::rules::{Policy, Reason};
use kubepki_controller::sign::{Refusal, SigningCa, plan};
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::issuer::Issuer;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn refused(r: Result<kubepki_controller::sign::Plan, Refusal>) -> Refusal {
    match r {
        Ok(p) => panic!("expected a refusal, got a plan until {}", p.not_after),
        Err(e) => e,
    }
}

/// The refusal for `c` from n1, with a CA valid for ten more years.
fn refusal(c: &Case) -> Refusal {
    let far = NOW + time::Duration::days(3650);
    refused(plan(
        &c.request(),
        Some(&node()),
        &Policy::default(),
        far,
        YEAR,
        NOW,
    ))
}

#[test]
fn what_the_rules_refuse_is_not_signed() {
    let far = NOW + time::Duration::days(3650);
    // An approved request for the API server's identity in system:masters (an admin approved
    // it with kubectl): the built-in signer would refuse it for its organization; so do we,
    // whoever asked.
    let masters = pem(
        "kube-apiserver",
        &["system:masters"],
        &["kubernetes.default.svc"],
        &[],
        KeyAlgorithm::EcdsaP256,
    );
    for (username, groups, first) in [
        ("system:node:n1", &["system:nodes"][..], "cn_mismatch"),
        (
            "kubernetes-admin",
            &["system:masters"][..],
            "requester_not_node",
        ),
    ] {
        let c = Case {
            username: username.into(),
            groups: s(groups),
            ..Case::valid().with_pem(masters.clone())
        };
        let r = refusal(&c);
        assert_eq!(r.code(), first, "{username}: {r}");
        assert!(r.is_permanent());
    }
    // The built-in signer's own checks, each on an otherwise valid request from n1.
    let cases: Vec<(Case, &str)> = vec![
        (
            Case::valid().with_pem(pem(
                "system:node:n1",
                &["system:masters"],
                &["n1"],
                &[],
                KeyAlgorithm::EcdsaP256,
            )),
            "organization",
        ),
        (
            Case {
                usages: s(&["digital signature", "key encipherment", "client auth"]),
                ..Case::valid()
            },
            "usages",
        ),
        (
            Case::valid().with_pem(pem(
                "system:node:n1",
                &["system:nodes"],
                &[],
                &[],
                KeyAlgorithm::EcdsaP256,
            )),
            "no_sans",
        ),
        (Case::valid().with_pem(data("email.csr")), "email_san"),
        (Case::valid().with_pem(data("uri.csr")), "uri_san"),
        // And the node binding.
        (
            Case::valid().with_pem(pem(
                "system:node:n1",
                &["system:nodes"],
                &["n1", "kubernetes.default.svc"],
                &[],
                KeyAlgorithm::EcdsaP256,
            )),
            "dns_not_node_name",
        ),
        (
            Case::valid().with_pem(pem(
                "system:node:n1",
                &["system:nodes"],
                &["n1"],
                &["10.0.0.6"],
                KeyAlgorithm::EcdsaP256,
            )),
            "ip_not_node_address",
        ),
    ];
    for (c, code) in &cases {
        let r = refusal(c);
        assert_eq!(r.code(), *code, "{r}");
        assert_eq!(r.to_string(), {
            let Refusal::Rules(reason) = &r else {
                panic!("{r:?}")
            };
            reason.to_string()
        });
    }
    // No Node, or one being deleted.
    let c = Case::valid();
    assert_eq!(
        refused(plan(&c.request(), None, &Policy::default(), far, YEAR, NOW)),
        Refusal::Rules(Reason::NodeNotFound { node: "n1".into() })
    );
    let mut going = node();
    going.being_deleted = true;
    assert_eq!(
        refused(plan(
            &c.request(),
            Some(&going),
            &Policy::default(),
            far,
            YEAR,
            NOW
        )),
        Refusal::Rules(Reason::NodeBeingDeleted { node: "n1".into() })
    );
}

#[test]
fn validity_stays_inside_the_ca() {
    let c = Case::valid();
    let req = c.request();
    let p = Policy::default();
    let far = NOW + time::Duration::days(3650);
    let five_min = time::Duration::minutes(5);
    let ok = plan(&req, Some(&node()), &p, far, YEAR, NOW).unwrap();
    assert_eq!(ok.not_before, NOW - five_min);
    assert_eq!(ok.not_after, NOW + time::Duration::days(365));
    assert_eq!(ok.info.common_name, "system:node:n1");
    // A shorter requested lifetime wins.
    let short = Case {
        expiration: Some(3600),
        ..Case::valid()
    };
    let p1 = plan(&short.request(), Some(&node()), &p, far, YEAR, NOW).unwrap();
    assert_eq!(p1.not_after, NOW + time::Duration::hours(1));
    // A CA that ends sooner ends the certificate too.
    let ca_end = NOW + time::Duration::seconds(30);
    let p2 = plan(&req, Some(&node()), &p, ca_end, YEAR, NOW).unwrap();
    assert_eq!(p2.not_after, ca_end);
    assert!(p2.not_after > p2.not_before);
    // An expired CA (or one expiring this very instant) signs nothing: the certificate would be
    // dead on arrival, its notAfter at or before now.
    for ca_end in [
        NOW,
        NOW - time::Duration::seconds(1),
        NOW - time::Duration::days(400),
    ] {
        let r = refused(plan(&req, Some(&node()), &p, ca_end, YEAR, NOW));
        assert_eq!(
            r,
            Refusal::CaExpired {
                ca_not_after: ca_end
            }
        );
        assert_eq!(r.code(), "ca_expired");
        assert!(!r.is_permanent(), "a new CA fixes it");
        assert!(r.to_string().contains("expired"), "{r}");
    }
    // A lifetime of nothing.
    for secs in [0, -5] {
        let c = Case {
            expiration: Some(secs),
            ..Case::valid()
        };
        let r = refused(plan(&c.request(), Some(&node()), &p, far, YEAR, NOW));
        assert_eq!(r.code(), "no_validity");
        assert!(r.is_permanent());
    }
    // The rules come first: a refused request is refused for itself even with an expired CA.
    let bad = Case {
        usages: s(&["server auth"]),
        ..Case::valid()
    };
    assert_eq!(
        refused(plan(&bad.request(), Some(&node()), &p, NOW, YEAR, NOW)).code(),
        "usages"
    );
}

#[test]
fn an_issued_certificate_is_what_the_plan_says() {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let ca_end = NOW + time::Duration::hours(2);
    let issuer = Issuer::new_root(
        &CertTemplate {
            common_name: "kubernetes".into(),
            is_ca: true,
            ..Default::default()
        },
        key,
        NOW - time::Duration::hours(1),
        Duration::from_secs(3 * 3600),
        std::path::Path::new("ca.crt"),
        std::path::Path::new("ca.key"),
    )
    .unwrap();
    let ca = SigningCa {
        issuer,
        duration: YEAR,
    };
    let c = Case::valid();
    let p = ca
        .plan(&c.request(), Some(&node()), &Policy::default(), NOW)
        .unwrap();
    assert_eq!(p.not_after, ca_end, "clamped to the CA");
    let pem = ca.issue(&p).unwrap();
    let issued = Certificate::from_pem_chain(pem.as_bytes())
        .unwrap()
        .remove(0);
    assert_eq!(issued.not_before, p.not_before);
    assert_eq!(issued.not_after, ca_end);
    // Past the CA's end: refused, not a certificate whose notAfter precedes its notBefore.
    assert_eq!(
        ca.plan(&c.request(), Some(&node()), &Policy::default(), ca_end)
            .unwrap_err()
            .code(),
        "ca_expired"
    );
}
