//! The decision rules, case by case, without a cluster. Requests are built with kubepki's own
//! CSR builder; key types it cannot make (RSA-1024, P-224, secp256k1, P-521, Ed25519) and SAN
//! kinds it never writes (email, URI) come from openssl-made files in tests/data.

mod common;

use common::*;
use kubepki_controller::rules::{self, Policy, Reason, Verdict, decide, decide_group};
use kubepki_pki::crypto::key::KeyAlgorithm;

#[test]
fn valid_requests_are_approved() {
    assert_eq!(Case::valid().verdict(), Verdict::Approve);
    // Every address kind that names the node, IPv6 included, and both usage sets, RSA too.
    let c = Case::valid().with_pem(pem(
        "system:node:n1",
        &["system:nodes"],
        &["n1", "n1.lan", "n1.internal.example"],
        &["10.0.0.1", "203.0.113.7", "fd00::1"],
        KeyAlgorithm::Rsa2048,
    ));
    assert_eq!(c.verdict(), Verdict::Approve);
    let mut c = Case::valid();
    c.usages = s(&["server auth", "digital signature"]);
    assert_eq!(c.verdict(), Verdict::Approve);
    let c = Case::valid().with_pem(pem(
        "system:node:n1",
        &["system:nodes"],
        &[],
        &["10.0.0.1"],
        KeyAlgorithm::EcdsaP384,
    ));
    assert_eq!(c.verdict(), Verdict::Approve);
    let mut c = Case::valid();
    c.expiration = Some(3600);
    assert_eq!(c.verdict(), Verdict::Approve);
    // Ed25519, as kubelet-csr-approver's tests use (the built-in signer issues for it).
    assert_eq!(
        Case::valid().with_pem(data("ed25519.csr")).verdict(),
        Verdict::Approve
    );
}

#[test]
fn other_signers_are_not_judged() {
    let mut c = Case::valid();
    c.signer = "kubernetes.io/kube-apiserver-client-kubelet".into();
    assert_eq!(c.verdict(), Verdict::NotOurs);
    c.signer = "example.com/custom".into();
    assert_eq!(c.verdict(), Verdict::NotOurs);
}

#[test]
fn identity_rules() {
    // Requester not a node at all.
    let mut c = Case::valid();
    c.username = "alice".into();
    assert_eq!(denied(c.verdict()).code(), "requester_not_node");
    // Node-like username without the system:nodes group.
    let mut c = Case::valid();
    c.groups = s(&["system:authenticated"]);
    assert_eq!(denied(c.verdict()).code(), "requester_not_node");
    // A service account.
    let mut c = Case::valid();
    c.username = "system:serviceaccount:kube-system:default".into();
    c.groups = s(&["system:serviceaccounts", "system:nodes"]);
    assert_eq!(denied(c.verdict()).code(), "requester_not_node");
    // "system:node:" with an empty name.
    let mut c = Case::valid();
    c.username = "system:node:".into();
    assert_eq!(denied(c.verdict()).code(), "requester_not_node");
    // Another node asking for n1's certificate: CN != username.
    let mut c = Case::valid();
    c.username = "system:node:n2".into();
    assert_eq!(denied(c.verdict()).code(), "cn_mismatch");
    // CN without the prefix, CN differing in case.
    for cn in ["n1", "system:node:N1", "system:node:n1 "] {
        let c = Case::valid().with_pem(pem(
            cn,
            &["system:nodes"],
            &["n1"],
            &[],
            KeyAlgorithm::EcdsaP256,
        ));
        assert_eq!(denied(c.verdict()).code(), "cn_mismatch", "CN {cn:?}");
    }
}

#[test]
fn organization_must_be_exactly_system_nodes() {
    for orgs in [
        &[][..],
        &["system:masters"][..],
        &["system:nodes", "system:masters"][..],
        &["system:nodes", "system:nodes"][..],
        &["System:Nodes"][..],
    ] {
        let c = Case::valid().with_pem(pem(
            "system:node:n1",
            orgs,
            &["n1"],
            &[],
            KeyAlgorithm::EcdsaP256,
        ));
        assert_eq!(denied(c.verdict()).code(), "organization", "O {orgs:?}");
    }
}

#[test]
fn usages_must_match_the_signer() {
    for usages in [
        &["digital signature", "key encipherment", "client auth"][..],
        &[
            "digital signature",
            "key encipherment",
            "server auth",
            "client auth",
        ][..],
        &["key encipherment", "server auth"][..],
        &["server auth"][..],
        &["digital signature"][..],
        &[][..],
        &["digital signature", "server auth", "code signing"][..],
        &["digital signature", "server auth", "cert sign"][..],
    ] {
        let mut c = Case::valid();
        c.usages = s(usages);
        assert_eq!(denied(c.verdict()).code(), "usages", "usages {usages:?}");
    }
    // Repetition and order do not matter (the signer compares sets).
    let mut c = Case::valid();
    c.usages = s(&["server auth", "server auth", "digital signature"]);
    assert_eq!(c.verdict(), Verdict::Approve);
}

#[test]
fn subject_alternative_names() {
    let no_sans = Case::valid().with_pem(pem(
        "system:node:n1",
        &["system:nodes"],
        &[],
        &[],
        KeyAlgorithm::EcdsaP256,
    ));
    assert_eq!(denied(no_sans.verdict()), Reason::NoSubjectAltNames);
    assert_eq!(
        denied(Case::valid().with_pem(data("email.csr")).verdict()).code(),
        "email_san"
    );
    assert_eq!(
        denied(Case::valid().with_pem(data("uri.csr")).verdict()).code(),
        "uri_san"
    );
    let dns_cases = [
        "n1.evil.example", // shares the node name as a prefix
        "n1x",
        "n",
        "*.n1.lan", // wildcard
        "N1",       // case differs: exact match only
        "localhost",
        "n2", // another node
        "kubernetes.default.svc",
        "10.0.0.1", // an IP written as a DNS name
    ];
    for dns in dns_cases {
        let c = Case::valid().with_pem(pem(
            "system:node:n1",
            &["system:nodes"],
            &["n1", dns],
            &[],
            KeyAlgorithm::EcdsaP256,
        ));
        assert_eq!(
            denied(c.verdict()),
            Reason::DnsNotNodeName {
                dns: dns.into(),
                node: "n1".into()
            },
            "DNS {dns:?}"
        );
    }
    for ip in [
        "10.0.0.2",
        "127.0.0.1",
        "0.0.0.0",
        "fd00::2",
        "::1",
        "10.96.0.1",
    ] {
        let c = Case::valid().with_pem(pem(
            "system:node:n1",
            &["system:nodes"],
            &["n1"],
            &[ip],
            KeyAlgorithm::EcdsaP256,
        ));
        assert_eq!(denied(c.verdict()).code(), "ip_not_node_address", "IP {ip}");
    }
    // An IPv4-mapped IPv6 address is the IPv4 address.
    let c = Case::valid().with_pem(pem(
        "system:node:n1",
        &["system:nodes"],
        &[],
        &["::ffff:10.0.0.1"],
        KeyAlgorithm::EcdsaP256,
    ));
    assert_eq!(c.verdict(), Verdict::Approve);
}

#[test]
fn node_must_exist() {
    let c = Case::valid();
    assert_eq!(
        denied(decide(&c.request(), None, &Policy::default())),
        Reason::NodeNotFound { node: "n1".into() }
    );
}

#[test]
fn node_being_deleted_gets_nothing() {
    let mut n = node();
    n.being_deleted = true;
    let c = Case::valid();
    assert_eq!(
        denied(decide(&c.request(), Some(&n), &Policy::default())),
        Reason::NodeBeingDeleted { node: "n1".into() }
    );
    let r = Reason::NodeBeingDeleted { node: "n1".into() };
    assert_eq!(
        (r.code(), r.condition_reason()),
        ("node_being_deleted", "KubepkiNodeBeingDeleted")
    );
    assert_eq!(
        r.to_string(),
        "Node \"n1\" is being deleted (metadata.deletionTimestamp is set)"
    );
    // The request's own faults still come first: they do not depend on the Node.
    let bad = Case {
        usages: s(&["server auth"]),
        ..Case::valid()
    };
    assert_eq!(
        denied(decide(&bad.request(), Some(&n), &Policy::default())).code(),
        "usages"
    );
    // What check_bound says is what decide says, for the signer too.
    assert_eq!(
        rules::check_bound(&c.request(), Some(&n), &Policy::default()).unwrap_err(),
        Reason::NodeBeingDeleted { node: "n1".into() }
    );
    assert!(rules::check_bound(&c.request(), Some(&node()), &Policy::default()).is_ok());
}

#[test]
fn keys() {
    let r = denied(Case::valid().with_pem(data("rsa1024.csr")).verdict());
    assert_eq!(
        r,
        Reason::KeyTooWeak {
            key: "RSA-1024".into(),
            min_bits: 2048
        }
    );
    // P-521: the built-in signer takes it, but the signature library here cannot verify it.
    for f in ["p224.csr", "secp256k1.csr", "p521.csr"] {
        let r = denied(Case::valid().with_pem(data(f)).verdict());
        assert_eq!(r.code(), "key_type", "{f}: {r}");
    }
}

#[test]
fn malformed_requests() {
    for (what, bytes) in [
        ("tampered signature", data("tampered.csr")),
        (
            "garbage DER",
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_vec(),
        ),
    ] {
        let r = denied(Case::valid().with_pem(bytes).verdict());
        assert_eq!(r.code(), "malformed_request", "{what}: {r}");
    }
}

/// The signer decodes `spec.request` with Go's `pem.Decode`, which skips a block whose BEGIN
/// line does not start a line and takes the first block it finds. Anything but exactly one
/// request block with only whitespace around it could make us judge another block than the
/// one the signer issues for: each is denied, whichever block the rules would have liked.
#[test]
fn pem_envelope_must_be_one_plain_block() {
    let honest = Case::valid().pem;
    let other = pem(
        "system:node:n2",
        &["system:nodes"],
        &["n2", "kubernetes.default.svc"],
        &["10.0.0.6"],
        KeyAlgorithm::EcdsaP256,
    );
    let join = |parts: &[&[u8]]| parts.concat();
    for (what, bytes) in [
        ("not PEM", b"hello".to_vec()),
        ("empty", Vec::new()),
        (
            "a certificate, not a request",
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        ("space, honest, other", join(&[b" ", &honest, &other])),
        ("text, honest, other", join(&[b"note: ", &honest, &other])),
        ("honest, other", join(&[&honest, &other])),
        ("honest, honest", join(&[&honest, &honest])),
        ("honest, trailing junk", join(&[&honest, b"junk\n"])),
        ("leading text line", join(&[b"hello\n", &honest])),
        (
            "headers",
            String::from_utf8(honest.clone())
                .unwrap()
                .replacen("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)
                .into_bytes(),
        ),
        (
            "NEW CERTIFICATE REQUEST label",
            String::from_utf8(honest.clone())
                .unwrap()
                .replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
                .into_bytes(),
        ),
    ] {
        let r = denied(Case::valid().with_pem(bytes).verdict());
        assert_eq!(r.code(), "pem_envelope", "{what}: {r}");
        assert_eq!(r.condition_reason(), "KubepkiPemEnvelope");
    }
    // Whitespace around the one block, and CRLF line endings, are fine.
    let crlf = String::from_utf8(honest.clone())
        .unwrap()
        .replace('\n', "\r\n");
    for bytes in [join(&[b"\n \t\n", &honest, b"\n\n"]), crlf.into_bytes()] {
        assert_eq!(Case::valid().with_pem(bytes).verdict(), Verdict::Approve);
    }
}

#[test]
fn expiration_is_bounded() {
    let mut c = Case::valid();
    c.expiration = Some(365 * 24 * 3600 + 1);
    assert_eq!(denied(c.verdict()).code(), "expiration_too_long");
    let strict = Policy {
        max_expiration_seconds: 3600,
        ..Policy::default()
    };
    c.expiration = Some(7200);
    assert_eq!(
        denied(decide(&c.request(), Some(&node()), &strict)),
        Reason::ExpirationTooLong {
            requested: 7200,
            max: 3600
        }
    );
}

#[test]
fn extra_dns_patterns() {
    let policy = Policy {
        extra_dns_patterns: vec![r"{node}\.nodes\.example\.com".into()],
        ..Policy::default()
    };
    policy.validate().unwrap();
    let with = |dns: &str| {
        let c = Case::valid().with_pem(pem(
            "system:node:n1",
            &["system:nodes"],
            &[dns],
            &[],
            KeyAlgorithm::EcdsaP256,
        ));
        decide(&c.request(), Some(&node()), &policy)
    };
    assert_eq!(with("n1.nodes.example.com"), Verdict::Approve);
    // Anchored, and {node} is this node only.
    assert_eq!(with("n2.nodes.example.com").label(), "deny");
    assert_eq!(with("n1.nodes.example.com.evil").label(), "deny");
    assert_eq!(with("xn1.nodes.example.com").label(), "deny");
    let bad = Policy {
        extra_dns_patterns: vec!["(".into()],
        ..Policy::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .contains("--allowed-dns-pattern")
    );
}

#[test]
fn one_pending_request_per_node() {
    let a = Case::valid();
    let b = Case::valid();
    let bad = Case::valid().with_pem(data("rsa1024.csr"));
    let mut reqs = vec![bad.request(), a.request(), b.request()];
    reqs[0].name = "old-bad";
    reqs[1].name = "first";
    reqs[2].name = "second";
    let v = decide_group(&reqs, Some(&node()), &Policy::default());
    assert_eq!(v[0].label(), "deny");
    assert_eq!(v[1], Verdict::Approve);
    assert_eq!(
        v[2],
        Verdict::Deny(Reason::Duplicate { of: "first".into() })
    );
}

#[test]
fn every_reason_reads_as_a_sentence() {
    let r = denied(Case::valid().with_pem(data("rsa1024.csr")).verdict());
    assert_eq!(
        r.to_string(),
        "the request's key is RSA-1024; RSA keys need at least 2048 bits"
    );
    let r = Reason::IpNotNodeAddress {
        ip: "10.0.0.9".parse().unwrap(),
        node: "n1".into(),
    };
    assert_eq!(
        r.to_string(),
        "IP address 10.0.0.9 is not one of Node \"n1\"'s status.addresses"
    );
}
