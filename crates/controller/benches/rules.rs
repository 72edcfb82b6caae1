//! The decision rules alone, single-threaded: how many kubelet-serving requests a second
//! `rules::decide` / `decide_group` judge (PEM parsing and the self-signature check included),
//! and what the reconcile pays around them to find a requester's pending siblings with thousands
//! of CSRs cached (the pending index, against the full scan it replaced).
//!
//! Not a test: `cargo bench -p kubepki-controller` (harness = false, a self-timed loop; each
//! row runs for about BENCH_SECS seconds, default 2). Results: BENCHMARKS.md.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::reflector;
use kube::runtime::watcher;
use kubepki_controller::facts;
use kubepki_controller::rules::{self, NodeAddress, NodeInfo, Policy, Request, Verdict};
use kubepki_pki::crypto::csr;
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};

const USAGES: [&str; 2] = ["digital signature", "server auth"];
const USAGES_RSA: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// One request as the API server hands it over, and the Node it names.
struct Case {
    name: String,
    username: String,
    groups: Vec<String>,
    usages: Vec<String>,
    pem: Vec<u8>,
    node: Option<NodeInfo>,
    expect_approve: bool,
}

impl Case {
    fn request(&self) -> Request<'_> {
        Request {
            name: &self.name,
            signer_name: rules::KUBELET_SERVING,
            username: &self.username,
            groups: &self.groups,
            usages: &self.usages,
            pem: &self.pem,
            expiration_seconds: None,
        }
    }
}

fn node_ip(i: usize) -> IpAddr {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255 | 1)
        .parse()
        .unwrap()
}

fn node_info(i: usize) -> NodeInfo {
    NodeInfo {
        name: format!("node-{i}"),
        addresses: vec![
            NodeAddress {
                kind: "InternalIP".into(),
                address: node_ip(i).to_string(),
            },
            NodeAddress {
                kind: "Hostname".into(),
                address: format!("node-{i}"),
            },
        ],
        being_deleted: false,
    }
}

/// What kind of request case `i` is. `mix`: 80% valid, 20% spread over the usual refusals.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Valid,
    ForeignIp,
    ForeignDns,
    CnMismatch,
    BadUsages,
    NoNode,
}

fn kind_of(i: usize, mix: bool) -> Kind {
    if !mix {
        return Kind::Valid;
    }
    match i % 20 {
        0 => Kind::ForeignIp,
        1 => Kind::ForeignDns,
        2 => Kind::CnMismatch,
        3 => Kind::BadUsages,
        // One in 40 requests names a Node that does not exist.
        4 if i % 40 == 4 => Kind::NoNode,
        _ => Kind::Valid,
    }
}

fn make_case(i: usize, alg: KeyAlgorithm, mix: bool) -> Case {
    let kind = kind_of(i, mix);
    let node = format!("node-{i}");
    let username = format!("system:node:{node}");
    let key = PrivateKey::generate(alg).unwrap();
    let t = CertTemplate {
        common_name: if kind == Kind::CnMismatch {
            format!("system:node:node-{}", i + 1)
        } else {
            username.clone()
        },
        organizations: vec![rules::NODES_GROUP.into()],
        is_ca: false,
        server_auth: true,
        client_auth: false,
        dns_names: vec![if kind == Kind::ForeignDns {
            "kubernetes.default.svc".into()
        } else {
            node.clone()
        }],
        ip_addresses: vec![if kind == Kind::ForeignIp {
            "10.96.0.1".parse().unwrap()
        } else {
            node_ip(i)
        }],
    };
    let pem = csr::build(&t, &key).unwrap().into_bytes();
    let usages: &[&str] = match (kind, alg) {
        (Kind::BadUsages, _) => &["digital signature", "server auth", "client auth"],
        (_, KeyAlgorithm::EcdsaP256) => &USAGES,
        _ => &USAGES_RSA,
    };
    Case {
        name: format!("csr-{i}"),
        username,
        groups: vec![rules::NODES_GROUP.into(), "system:authenticated".into()],
        usages: usages.iter().map(|s| s.to_string()).collect(),
        pem,
        node: (kind != Kind::NoNode).then(|| node_info(i)),
        expect_approve: kind == Kind::Valid,
    }
}

fn bench_secs() -> f64 {
    std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

/// Runs `f` (which does `per_call` operations) repeatedly for about BENCH_SECS after a short
/// warm-up; prints and returns operations per second.
fn run(label: &str, per_call: usize, mut f: impl FnMut()) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        f();
    }
    let target = Duration::from_secs_f64(bench_secs());
    let start = Instant::now();
    let mut calls = 0usize;
    while start.elapsed() < target {
        f();
        calls += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let ops = (calls * per_call) as f64;
    let rate = ops / secs;
    println!(
        "{label:<78} {rate:>12.0} /s {:>10.2} µs/op  ({} ops in {secs:.2} s)",
        1e6 / rate,
        ops as u64
    );
    rate
}

fn k8s_csr(i: usize, user: &str, pem: &[u8], decided: bool) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(format!("csr-{i}")),
            resource_version: Some(i.to_string()),
            creation_timestamp: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + (i / 100) as i64)
                    .unwrap(),
            )),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            signer_name: rules::KUBELET_SERVING.into(),
            username: Some(user.into()),
            groups: Some(vec![rules::NODES_GROUP.into()]),
            usages: Some(USAGES.iter().map(|s| s.to_string()).collect()),
            request: ByteString(pem.to_vec()),
            ..Default::default()
        },
        status: decided.then(|| CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn main() {
    // `cargo bench -- <filter>` passes extra arguments; `cargo test --benches` passes --bench.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let policy = Policy::default();
    println!(
        "kubepki-controller rules benchmark: single thread unless a row says otherwise, {} s per row",
        bench_secs()
    );

    let distinct = 2000;
    let t = Instant::now();
    let mix: Vec<Case> = (0..distinct)
        .map(|i| make_case(i, KeyAlgorithm::EcdsaP256, true))
        .collect();
    let valid: Vec<Case> = (0..distinct)
        .map(|i| make_case(i, KeyAlgorithm::EcdsaP256, false))
        .collect();
    let rsa: Vec<Case> = (0..64)
        .map(|i| make_case(i, KeyAlgorithm::Rsa2048, false))
        .collect();
    println!(
        "(made {} ECDSA P-256 and {} RSA-2048 requests in {:.1} s; each row cycles through its set)",
        2 * distinct,
        rsa.len(),
        t.elapsed().as_secs_f64()
    );
    // The verdicts are what they should be (a benchmark of wrong answers is worthless).
    for c in mix.iter().chain(&valid).chain(&rsa) {
        let v = rules::decide(&c.request(), c.node.as_ref(), &policy);
        assert_eq!(v == Verdict::Approve, c.expect_approve, "{}: {v:?}", c.name);
    }
    let approvals = mix.iter().filter(|c| c.expect_approve).count();
    println!(
        "mix: {approvals} of {} approvable; the rest: foreign IP, foreign DNS, CN mismatch, bad usages, no Node",
        mix.len()
    );

    let decide_all = |set: &[Case]| {
        for c in set {
            black_box(rules::decide(
                black_box(&c.request()),
                c.node.as_ref(),
                &policy,
            ));
        }
    };
    if want("decide") {
        run(
            "rules::decide, ECDSA P-256, 80% valid / 20% refused (the mix)",
            mix.len(),
            || decide_all(&mix),
        );
        run("rules::decide, ECDSA P-256, all valid", valid.len(), || {
            decide_all(&valid)
        });
        run("rules::decide, RSA-2048, all valid", rsa.len(), || {
            decide_all(&rsa)
        });
        // The controller's tokio runtime runs reconciles on every core; so does this row.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        run(
            &format!("rules::decide, the mix, {threads} threads (every core, as the controller)"),
            mix.len(),
            || {
                std::thread::scope(|s| {
                    for part in mix.chunks(mix.len().div_ceil(threads)) {
                        s.spawn(|| decide_all(part));
                    }
                })
            },
        );
    }
    if want("decide_group") {
        // As a rotation looks: one pending request per node (a group of one).
        run(
            "rules::decide_group, one request per node, the mix",
            mix.len(),
            || {
                for c in &mix {
                    black_box(rules::decide_group(
                        black_box(&[c.request()]),
                        c.node.as_ref(),
                        &policy,
                    ));
                }
            },
        );
        // A node that asked twice: two requests judged, the second a duplicate.
        run(
            "rules::decide_group, two pending requests per node (decisions)",
            2 * valid.len(),
            || {
                for c in &valid {
                    let r = c.request();
                    black_box(rules::decide_group(
                        black_box(&[r.clone(), r]),
                        c.node.as_ref(),
                        &policy,
                    ));
                }
            },
        );
    }
    if want("parts") {
        run(
            "  part: csr::parse_pem_unverified (PEM + DER + SANs)",
            valid.len(),
            || {
                for c in &valid {
                    black_box(csr::parse_pem_unverified(black_box(&c.pem)).unwrap());
                }
            },
        );
        let parsed: Vec<_> = valid
            .iter()
            .map(|c| csr::parse_pem_unverified(&c.pem).unwrap())
            .collect();
        run(
            "  part: Unverified::verify (self-signature, ECDSA P-256)",
            parsed.len(),
            || {
                for p in &parsed {
                    black_box(p).verify().unwrap();
                }
            },
        );
    }

    // The reconcile's cost around the rules with n kubelet-serving CSRs cached: finding the
    // requester's pending siblings and the queue depth. Before: a scan of the whole cache per
    // reconcile (quadratic over a mass rotation). Now: the pending index fed by the watch.
    if want("pending_group") {
        let pem = &valid[0].pem;
        for n in [1000usize, 5000, 10000] {
            let (store, mut writer) = reflector::store::<CertificateSigningRequest>();
            let mut index = facts::PendingIndex::default();
            for i in 0..n {
                // Half decided already, half pending: a rotation under way.
                let user = format!("system:node:node-{}", i % 5000);
                let ev = watcher::Event::Apply(k8s_csr(i, &user, pem, i % 2 == 0));
                index.observe(&ev);
                writer.apply_watcher_event(&ev);
            }
            let probe = k8s_csr(n + 1, "system:node:node-7", pem, false);
            let user = "system:node:node-7";
            let scan = run(
                &format!("reconcile lookup, {n} CSRs cached, full scan (before)"),
                1,
                || {
                    let all = store.state();
                    let depth = all
                        .iter()
                        .filter(|c| {
                            facts::is_pending(c) && c.spec.signer_name == rules::KUBELET_SERVING
                        })
                        .count();
                    let group = facts::pending_group(&probe, all.iter().map(|c| c.as_ref()));
                    black_box((depth, group.len()));
                },
            );
            let index = std::sync::Mutex::new(index);
            let mut group_len = 0;
            let indexed = run(
                &format!("reconcile lookup, {n} CSRs cached, pending index (now)"),
                1,
                || {
                    let names = {
                        let ix = index.lock().unwrap();
                        black_box(ix.len());
                        ix.names_of(user)
                    };
                    let siblings: Vec<_> = names
                        .iter()
                        .filter_map(|n| store.get(&reflector::ObjectRef::new(n)))
                        .collect();
                    let group = facts::pending_group(&probe, siblings.iter().map(|c| c.as_ref()));
                    group_len = group.len();
                    black_box(group_len);
                },
            );
            println!(
                "    (group of {group_len}; {n} reconciles spend {:.2} s on this with the scan, {:.4} s with the index)",
                n as f64 / scan,
                n as f64 / indexed
            );
        }
    }
}
