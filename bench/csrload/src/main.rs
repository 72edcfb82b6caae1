//! Load generator for `bench/controller.sh` (a benchmark, not a test).
//!
//!   csrload KUBECONFIG setup NODES CONC
//!       the RBAC the built-in approver needs for node client CSRs, and NODES Node objects
//!       node-0.. with status.addresses (one InternalIP, one Hostname)
//!   csrload KUBECONFIG csrs PREFIX NODES CONC [--no-wait] [--timeout SECS]
//!       for each node, one kube-apiserver-client-kubelet and one kubelet-serving CSR created
//!       AS that node (Impersonate-User/-Group on the super-admin client), CONC at a time; a
//!       watch records when each is decided and issued. Prints one JSON object.
//!   csrload KUBECONFIG wait PREFIX NODES [--timeout SECS]
//!       only the watch, from now (CSRs made earlier with --no-wait)
//!   csrload KUBECONFIG baseline PREFIX COUNT CONC
//!       COUNT CSRs of a signer nothing handles (bench.kubepki.io/noop), then COUNT approval
//!       updates (PUT .../approval adding Approved, with the resourceVersion from the create),
//!       CONC at a time: the API server's own write rate for approvals, no rules.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};
use serde_json::json;

const SERVING: &str = "kubernetes.io/kubelet-serving";
const CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const NOOP: &str = "bench.kubepki.io/noop";

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200 + (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: csrload KUBECONFIG setup|csrs|wait|baseline ...");
    }
    let kc = Kubeconfig::read_from(&args[0]).context("kubeconfig")?;
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.read_timeout = Some(Duration::from_secs(120));
    let client = Client::try_from(cfg)?;
    let num = |i: usize| -> Result<usize> {
        args.get(i)
            .with_context(|| format!("argument {i} missing"))?
            .parse()
            .context("not a number")
    };
    let flag = |f: &str| args.iter().any(|a| a == f);
    let timeout = args
        .iter()
        .position(|a| a == "--timeout")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<u64>())
        .transpose()?
        .unwrap_or(900);
    let out = match args[1].as_str() {
        "setup" => setup(&client, num(2)?, num(3)?).await?,
        "csrs" => {
            csrs(
                &client,
                &args[2],
                num(3)?,
                num(4)?,
                !flag("--no-wait"),
                timeout,
            )
            .await?
        }
        "wait" => {
            let t0 = Instant::now();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let w = tokio::spawn(track(
                client.clone(),
                args[2].clone(),
                num(3)?,
                t0,
                timeout,
                rx,
            ));
            let _ = tx.send(t0);
            let mut v = w.await??;
            v["start_epoch_ms"] = json!(epoch_ms() - t0.elapsed().as_millis());
            v
        }
        "baseline" => baseline(&client, &args[2], num(3)?, num(4)?).await?,
        c => bail!("unknown command {c}"),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn setup(client: &Client, nodes: usize, conc: usize) -> Result<serde_json::Value> {
    // The built-in approver approves a node's own client CSR only if the node may create
    // certificatesigningrequests/selfnodeclient (kubeadm binds this role the same way).
    let crb: Api<ClusterRoleBinding> = Api::all(client.clone());
    let b = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("bench-nodes-selfnodeclient".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: "system:nodes".into(),
            ..Default::default()
        }]),
    };
    match crb.create(&PostParams::default(), &b).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let api: Api<Node> = Api::all(client.clone());
    let t0 = Instant::now();
    let errors = stream::iter(0..nodes)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("node-{i}");
                let n = Node {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &n).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(anyhow::Error::from(e).context(name)),
                }
                let status = Node {
                    status: Some(NodeStatus {
                        addresses: Some(vec![
                            NodeAddress {
                                type_: "InternalIP".into(),
                                address: node_ip(i).to_string(),
                            },
                            NodeAddress {
                                type_: "Hostname".into(),
                                address: name.clone(),
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .map(|_| ())
                    .map_err(|e| anyhow::Error::from(e).context(name))
            }
        })
        .buffer_unordered(conc)
        .filter_map(|r| async move { r.err() })
        .collect::<Vec<_>>()
        .await;
    if let Some(e) = errors.first() {
        bail!("{} node errors, first: {e:#}", errors.len());
    }
    Ok(
        json!({"nodes": nodes, "seconds": t0.elapsed().as_secs_f64(),
              "writes_per_second": (2 * nodes) as f64 / t0.elapsed().as_secs_f64()}),
    )
}

/// The two requests of node `i`: (name, signer, usages, PEM).
fn requests(prefix: &str, i: usize) -> Vec<(String, &'static str, Vec<String>, String)> {
    let node = format!("node-{i}");
    let cn = format!("system:node:{node}");
    let mk = |dns: Vec<String>, ips| {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let t = CertTemplate {
            common_name: cn.clone(),
            organizations: vec!["system:nodes".into()],
            is_ca: false,
            server_auth: false,
            client_auth: false,
            dns_names: dns,
            ip_addresses: ips,
        };
        kubepki_pki::crypto::csr::build(&t, &key).unwrap()
    };
    let u = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            format!("{prefix}-client-{i}"),
            CLIENT,
            u(&["digital signature", "key encipherment", "client auth"]),
            mk(vec![], vec![]),
        ),
        (
            format!("{prefix}-serving-{i}"),
            SERVING,
            u(&["digital signature", "key encipherment", "server auth"]),
            mk(vec![node.clone()], vec![node_ip(i).into()]),
        ),
    ]
}

fn csr_object(
    name: &str,
    signer: &str,
    usages: Vec<String>,
    pem: String,
) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            signer_name: signer.into(),
            usages: Some(usages),
            request: ByteString(pem.into_bytes()),
            ..Default::default()
        },
        status: None,
    }
}

/// POST a CSR as `system:node:<node>` in group system:nodes.
async fn create_as_node(
    client: &Client,
    node: &str,
    csr: &CertificateSigningRequest,
) -> Result<CertificateSigningRequest, kube::Error> {
    let req = http::Request::post("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        .header("Impersonate-User", format!("system:node:{node}"))
        .header("Impersonate-Group", "system:nodes")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(csr).unwrap())
        .unwrap();
    client.request(req).await
}

fn has_cond(c: &CertificateSigningRequest, t: &str) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|x| x.type_ == t && x.status == "True"))
}

fn decision(c: &CertificateSigningRequest) -> Option<(&'static str, String)> {
    let conds = c.status.as_ref()?.conditions.as_ref()?;
    conds.iter().find_map(|x| match x.type_.as_str() {
        "Approved" => Some(("approved", x.reason.clone().unwrap_or_default())),
        "Denied" => Some(("denied", x.reason.clone().unwrap_or_default())),
        _ => None,
    })
}

fn issued(c: &CertificateSigningRequest) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|x| !x.0.is_empty())
        && !has_cond(c, "Failed")
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Watches every CSR named PREFIX-*; returns once all `nodes` serving CSRs are decided and
/// all 2*`nodes` CSRs are issued (or `timeout` passes). Times are from `t0` (sent once the
/// first create is about to be sent).
async fn track(
    client: Client,
    prefix: String,
    nodes: usize,
    started: Instant,
    timeout: u64,
    t0: tokio::sync::oneshot::Receiver<Instant>,
) -> Result<serde_json::Value> {
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let mut w = watcher(api, watcher::Config::default()).boxed();
    let client_p = format!("{prefix}-client-");
    let serving_p = format!("{prefix}-serving-");
    let mut decided: HashMap<String, Instant> = HashMap::new();
    let mut client_approved: HashMap<String, Instant> = HashMap::new();
    let mut issued_at: HashMap<String, Instant> = HashMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = started + Duration::from_secs(timeout);
    let mut t0 = t0;
    let mut t0v: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        if decided.len() >= nodes && issued_at.len() >= 2 * nodes && client_approved.len() >= nodes
        {
            break;
        }
        let ev = match tokio::time::timeout_at(deadline.into(), w.try_next()).await {
            Err(_) => {
                timed_out = true;
                break;
            }
            Ok(r) => r?,
        };
        if t0v.is_none()
            && let Ok(t) = t0.try_recv()
        {
            t0v = Some(t);
        }
        let objs = match ev {
            Some(watcher::Event::Apply(o)) | Some(watcher::Event::InitApply(o)) => vec![o],
            Some(_) => continue,
            None => bail!("watch ended"),
        };
        let now = Instant::now();
        for o in objs {
            let name = o.metadata.name.clone().unwrap_or_default();
            if name.starts_with(&serving_p) {
                if !decided.contains_key(&name)
                    && let Some((d, reason)) = decision(&o)
                {
                    decided.insert(name.clone(), now);
                    *outcomes.entry(format!("{d} {reason}")).or_default() += 1;
                }
            } else if name.starts_with(&client_p) {
                if !client_approved.contains_key(&name) && has_cond(&o, "Approved") {
                    client_approved.insert(name.clone(), now);
                }
            } else {
                continue;
            }
            if !issued_at.contains_key(&name) && issued(&o) {
                issued_at.insert(name, now);
            }
        }
    }
    let t0 = t0v.or_else(|| t0.try_recv().ok()).unwrap_or(started);
    let rel = |m: &HashMap<String, Instant>| {
        let mut v: Vec<f64> = m
            .values()
            .map(|t| t.saturating_duration_since(t0).as_secs_f64())
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let d = rel(&decided);
    let last = |v: &[f64]| v.last().copied();
    let pct =
        |v: &[f64], p: f64| (!v.is_empty()).then(|| v[((v.len() - 1) as f64 * p).round() as usize]);
    // Decisions per second: all of them over the time to the last; and the steady rate
    // between the 10th and 90th percentile decision.
    let steady = match (pct(&d, 0.1), pct(&d, 0.9)) {
        (Some(a), Some(b)) if b > a => Some(0.8 * d.len() as f64 / (b - a)),
        _ => None,
    };
    // Serving decisions per whole second since t0.
    let mut per_sec: Vec<usize> = vec![];
    for x in &d {
        let s = *x as usize;
        if per_sec.len() <= s {
            per_sec.resize(s + 1, 0);
        }
        per_sec[s] += 1;
    }
    let i = rel(&issued_at);
    let c = rel(&client_approved);
    Ok(json!({
        "prefix": prefix,
        "timed_out": timed_out,
        "serving_expected": nodes,
        "serving_decided": d.len(),
        "serving_outcomes": outcomes,
        "first_decision_s": d.first(),
        "all_serving_decided_s": last(&d),
        "serving_decided_p50_s": pct(&d, 0.5),
        "decisions_per_s_overall": last(&d).map(|l| d.len() as f64 / l),
        "decisions_per_s_p10_p90": steady,
        "serving_decisions_per_second_since_t0": per_sec,
        "client_approved": c.len(),
        "all_client_approved_s": last(&c),
        "issued": i.len(),
        "all_issued_s": last(&i),
        "issued_p50_s": pct(&i, 0.5),
    }))
}

async fn csrs(
    client: &Client,
    prefix: &str,
    nodes: usize,
    conc: usize,
    wait: bool,
    timeout: u64,
) -> Result<serde_json::Value> {
    // Keys and PKCS#10 requests first, off the clock (in parallel: 2 cores).
    let tk = Instant::now();
    let reqs: Vec<(usize, String, &'static str, Vec<String>, String)> = {
        let mut hs = vec![];
        let per = nodes.div_ceil(4);
        for part in 0..4 {
            let prefix = prefix.to_string();
            hs.push(std::thread::spawn(move || {
                let mut v = vec![];
                for i in part * per..((part + 1) * per).min(nodes) {
                    for (n, s, u, p) in requests(&prefix, i) {
                        v.push((i, n, s, u, p));
                    }
                }
                v
            }));
        }
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    };
    // Interleave nodes so that client and serving requests of many nodes arrive together.
    let keygen_s = tk.elapsed().as_secs_f64();
    let started = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tracker = wait.then(|| {
        tokio::spawn(track(
            client.clone(),
            prefix.to_string(),
            nodes,
            started,
            timeout,
            rx,
        ))
    });
    // Let the watch's initial list finish before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let t0_epoch = epoch_ms();
    if let Some(_t) = &tracker {
        let _ = tx.send(t0);
    }
    let client2 = Arc::new(client.clone());
    let results: Vec<Result<(), String>> = stream::iter(reqs)
        .map(|(i, name, signer, usages, pem)| {
            let client = client2.clone();
            async move {
                let obj = csr_object(&name, signer, usages, pem);
                create_as_node(&client, &format!("node-{i}"), &obj)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{name}: {e}"))
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let create_s = t0.elapsed().as_secs_f64();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let mut v = json!({
        "nodes": nodes,
        "concurrency": conc,
        "keygen_s": keygen_s,
        "t0_epoch_ms": t0_epoch,
        "created": results.len() - errors.len(),
        "create_errors": errors.len(),
        "first_create_errors": errors.iter().take(3).collect::<Vec<_>>(),
        "all_created_s": create_s,
        "creates_per_s": results.len() as f64 / create_s,
    });
    if let Some(t) = tracker {
        let w = t.await??;
        for (k, x) in w.as_object().unwrap() {
            v[k] = x.clone();
        }
    }
    Ok(v)
}

async fn baseline(
    client: &Client,
    prefix: &str,
    count: usize,
    conc: usize,
) -> Result<serde_json::Value> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let reqs: Vec<(String, String)> = (0..count)
        .map(|i| {
            let (_, _, _, pem) = requests(prefix, i).pop().unwrap();
            (format!("{prefix}-{i}"), pem)
        })
        .collect();
    let t0 = Instant::now();
    let created: Vec<CertificateSigningRequest> = stream::iter(reqs)
        .map(|(name, pem)| {
            let api = api.clone();
            async move {
                let u = vec!["digital signature".to_string(), "server auth".to_string()];
                api.create(&PostParams::default(), &csr_object(&name, NOOP, u, pem))
                    .await
            }
        })
        .buffer_unordered(conc)
        .try_collect()
        .await?;
    let create_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t1 = Instant::now();
    let mut lat: Vec<f64> = stream::iter(created)
        .map(|mut c| {
            let api = api.clone();
            async move {
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                c.status = Some(CertificateSigningRequestStatus {
                    conditions: Some(vec![CertificateSigningRequestCondition {
                        type_: "Approved".into(),
                        status: "True".into(),
                        reason: Some("BenchApproved".into()),
                        message: Some("approved by the write-rate baseline".into()),
                        last_update_time: Some(now.clone()),
                        last_transition_time: Some(now),
                    }]),
                    ..Default::default()
                });
                let name = c.metadata.name.clone().unwrap();
                let t = Instant::now();
                api.replace_subresource("approval", &name, &PostParams::default(), &c)
                    .await
                    .map(|_| t.elapsed().as_secs_f64())
            }
        })
        .buffer_unordered(conc)
        .try_collect()
        .await?;
    let approve_s = t1.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] * 1000.0;
    Ok(json!({
        "count": count,
        "concurrency": conc,
        "signer": NOOP,
        "create_s": create_s,
        "creates_per_s": count as f64 / create_s,
        "approve_s": approve_s,
        "approvals_per_s": count as f64 / approve_s,
        "approval_latency_ms_p50": p(0.5),
        "approval_latency_ms_p99": p(0.99),
        "secs": secs(t1.elapsed()),
    }))
}
