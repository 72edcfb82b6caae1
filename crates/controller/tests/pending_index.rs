//! The pending index follows the watch: applies, decisions, deletions and relists.

use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use kubepki_controller::facts::PendingIndex;
use kubepki_controller::rules::KUBELET_SERVING;

fn csr(name: &str, user: &str, signer: &str, decided: Option<&str>) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            signer_name: signer.into(),
            username: Some(user.into()),
            ..Default::default()
        },
        status: decided.map(|t| CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: t.into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

const A: &str = "system:node:a";
const B: &str = "system:node:b";

#[test]
fn follows_applies_decisions_and_deletions() {
    let mut ix = PendingIndex::default();
    ix.observe(&Event::Apply(csr("a1", A, KUBELET_SERVING, None)));
    ix.observe(&Event::Apply(csr("a2", A, KUBELET_SERVING, None)));
    ix.observe(&Event::Apply(csr("b1", B, KUBELET_SERVING, None)));
    // Other signers are not ours; decided requests are not pending.
    ix.observe(&Event::Apply(csr(
        "a3",
        A,
        "kubernetes.io/kube-apiserver-client-kubelet",
        None,
    )));
    ix.observe(&Event::Apply(csr("a4", A, KUBELET_SERVING, Some("Denied"))));
    assert_eq!(ix.names_of(A), ["a1", "a2"]);
    assert_eq!(ix.names_of(B), ["b1"]);
    assert_eq!(ix.len(), 3);

    ix.observe(&Event::Apply(csr(
        "a1",
        A,
        KUBELET_SERVING,
        Some("Approved"),
    )));
    assert_eq!(ix.names_of(A), ["a2"]);
    ix.observe(&Event::Delete(csr("a2", A, KUBELET_SERVING, None)));
    assert!(ix.names_of(A).is_empty());
    // Applying the same pending object twice counts it once.
    ix.observe(&Event::Apply(csr("b1", B, KUBELET_SERVING, None)));
    assert_eq!(ix.len(), 1);
    assert!(ix.names_of("system:node:nobody").is_empty());
}

#[test]
fn a_relist_replaces_the_index_only_when_complete() {
    let mut ix = PendingIndex::default();
    ix.observe(&Event::Apply(csr("gone", A, KUBELET_SERVING, None)));
    ix.observe(&Event::Init);
    ix.observe(&Event::InitApply(csr("b1", B, KUBELET_SERVING, None)));
    // Until InitDone the old view stands (as in the reflector's store).
    assert_eq!(ix.names_of(A), ["gone"]);
    assert!(ix.names_of(B).is_empty());
    ix.observe(&Event::InitDone);
    assert!(
        ix.names_of(A).is_empty(),
        "deleted while the watch was down"
    );
    assert_eq!(ix.names_of(B), ["b1"]);
    assert_eq!(ix.len(), 1);
}

fn with_uid(mut c: CertificateSigningRequest, uid: &str) -> CertificateSigningRequest {
    c.metadata.uid = Some(uid.into());
    c
}

#[test]
fn a_request_keeps_when_it_was_first_seen_while_pending() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let a1 = || with_uid(csr("a1", A, KUBELET_SERVING, None), "u1");
    let mut ix = PendingIndex::default();
    ix.observe_at(&Event::Apply(a1()), at(0));
    assert_eq!(ix.first_seen("a1"), Some(at(0)));
    // Updated (a label, say), and relisted: still pending since then.
    ix.observe_at(&Event::Apply(a1()), at(5));
    ix.observe_at(&Event::Init, at(6));
    ix.observe_at(&Event::InitApply(a1()), at(7));
    ix.observe_at(
        &Event::InitApply(with_uid(csr("b1", B, KUBELET_SERVING, None), "u2")),
        at(7),
    );
    ix.observe_at(&Event::InitDone, at(8));
    assert_eq!(ix.first_seen("a1"), Some(at(0)));
    assert_eq!(ix.first_seen("b1"), Some(at(7)), "new in the relist");
    // Deleted and made again under the same name while the watch was down: a new request.
    ix.observe_at(&Event::Init, at(9));
    ix.observe_at(
        &Event::InitApply(with_uid(csr("a1", A, KUBELET_SERVING, None), "u3")),
        at(10),
    );
    ix.observe_at(&Event::InitDone, at(10));
    assert_eq!(ix.first_seen("a1"), Some(at(10)));
    assert_eq!(ix.first_seen("b1"), None, "gone in the relist");
    // Decided: no longer pending.
    ix.observe_at(
        &Event::Apply(with_uid(
            csr("a1", A, KUBELET_SERVING, Some("Approved")),
            "u3",
        )),
        at(11),
    );
    assert_eq!(ix.first_seen("a1"), None);
    assert!(ix.is_empty());
    // Not ours: never tracked.
    ix.observe_at(
        &Event::Apply(csr("c1", A, "kubernetes.io/kube-apiserver-client", None)),
        at(12),
    );
    assert_eq!(ix.first_seen("c1"), None);
}
