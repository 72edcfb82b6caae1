//! The in-cluster controller: watches kubelet-serving CSRs, judges each with `rules`, and records
//! the decision. The reconcile function is a pure decision (facts + rules) followed by thin API
//! calls. Decisions are written with the object's resourceVersion as a precondition, so a
//! second writer (a replica that just lost the lease, or a human) makes the API server refuse
//! the stale one: one decision per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::facts;
use crate::lease::{self, Elector, Timing};
use crate::metrics::Metrics;
use crate::rules::{self, NodeInfo, Policy, Verdict};
use crate::sign::{Refusal, SigningCa};

pub const CONTROLLER_NAME: &str = "kubepki-controller";

/// Leader election on a coordination.k8s.io Lease (see `lease`).
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub namespace: String,
    pub timing: Timing,
}

pub struct Config {
    pub policy: Policy,
    /// Leave requests the rules reject pending instead of denying them.
    pub no_deny: bool,
    pub signing: Option<Arc<SigningCa>>,
    pub identity: String,
    pub leader_election: Option<LeaderElection>,
    pub metrics_addr: Option<SocketAddr>,
    pub health_addr: Option<SocketAddr>,
    /// Reconciles in flight at once (0: unbounded). Bounded so that a backlog of thousands of
    /// requests is decided steadily instead of all at once.
    pub concurrency: u16,
}

struct Ctx {
    csrs: Api<CertificateSigningRequest>,
    nodes: Api<Node>,
    node_store: Store<Node>,
    csr_store: Store<CertificateSigningRequest>,
    pending: Arc<Mutex<facts::PendingIndex>>,
    events: Arc<EventSink>,
    metrics: Arc<Metrics>,
    policy: Policy,
    no_deny: bool,
    signing: Option<Arc<SigningCa>>,
    /// With leader election: until when this replica may write (see `lease`).
    lead: Option<watch::Receiver<Option<Instant>>>,
}

impl Ctx {
    /// Whether this replica may write a decision now. The reconciles of a replica that stops
    /// leading are cancelled too; this closes the moment in between.
    fn may_write(&self) -> bool {
        self.lead
            .as_ref()
            .is_none_or(|l| l.borrow().is_some_and(|until| Instant::now() < until))
    }
}

/// Records Events off the decision path: a decision waits for its own API write only, so a
/// backlog is decided at the API server's write rate, not half of it.
struct EventSink {
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// Set once the API server refused an Event for a cluster-scoped object (see `send`).
    in_default: AtomicBool,
    /// Events in flight; beyond this they queue.
    slots: tokio::sync::Semaphore,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{operation} {name}: {source}")]
    Api {
        operation: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("signing {name}: {source}")]
    Sign {
        name: String,
        source: kubepki_pki::error::IssueError,
    },
}

/// Runs until SIGTERM/SIGINT. With leader election, only the lease holder reconciles, and only
/// while its lease is fresh; the API server being unreachable is retried, never fatal.
pub async fn run(client: Client, cfg: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    for addr in [cfg.metrics_addr, cfg.health_addr].into_iter().flatten() {
        crate::http::serve(addr, metrics.clone()).await?;
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let cfg = Arc::new(cfg);

    let Some(le) = cfg.leader_election.clone() else {
        metrics.leader.set(1);
        tokio::select! {
            r = reconcile_all(client.clone(), cfg.clone(), metrics.clone(), None) => return r,
            _ = &mut shutdown => { info!("shutting down"); return Ok(()); }
        }
    };
    le.timing.validate().map_err(|e| anyhow::anyhow!(e))?;

    let (lead_tx, mut lead) = watch::channel(None::<Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let elector = tokio::spawn(lease::run(
        Api::namespaced(client.clone(), &le.namespace),
        le.lease_name.clone(),
        Elector::new(&cfg.identity, le.timing),
        lead_tx,
        metrics.clone(),
        stop_rx,
    ));
    info!(identity = %cfg.identity, lease = %le.lease_name, namespace = %le.namespace, "waiting for the leader lease");
    let result = loop {
        // Wait until we lead.
        let leading = loop {
            if lead
                .borrow_and_update()
                .is_some_and(|until| Instant::now() < until)
            {
                break true;
            }
            tokio::select! {
                r = lead.changed() => if r.is_err() { break false },
                _ = &mut shutdown => break false,
            }
        };
        if !leading {
            break Ok(());
        }
        info!(identity = %cfg.identity, "leading; reconciling");
        metrics.leader.set(1);
        let outcome = tokio::select! {
            r = reconcile_all(client.clone(), cfg.clone(), metrics.clone(), Some(lead.clone())) => Some(r),
            _ = lease_lost(lead.clone()) => { warn!("lost the leader lease; stopped reconciling"); None }
            _ = &mut shutdown => Some(Ok(())),
        };
        metrics.leader.set(0);
        // Its watch stopped with its reconciles: a standby reports no pending requests.
        metrics.pending.set(0);
        if let Some(r) = outcome {
            break r;
        }
    };
    // Reconciling has stopped: only now hand the lease over.
    info!("shutting down; releasing the lease if held");
    let _ = stop_tx.send(true);
    let _ = elector.await;
    result
}

/// Returns once this replica may no longer lead: its lease was taken over, or it has not
/// renewed within the renew deadline (a timer: a renewal hanging on a dead connection must not
/// keep it leading).
async fn lease_lost(mut lead: watch::Receiver<Option<Instant>>) {
    loop {
        let Some(until) = *lead.borrow_and_update() else {
            return;
        };
        if Instant::now() >= until {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
            r = lead.changed() => if r.is_err() { return },
        }
    }
}

/// Aborts a spawned task when dropped: a reconcile loop cancelled on losing the lease takes its
/// watches with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Watches Nodes (a cache for the address checks) and kubelet-serving CSRs, and reconciles.
async fn reconcile_all(
    client: Client,
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    lead: Option<watch::Receiver<Option<Instant>>>,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let (node_store, node_writer) = reflector::store();
    let node_watch = reflector::reflector(
        node_writer,
        watcher(nodes.clone(), watcher::Config::default())
            .default_backoff()
            .modify(facts::strip_node),
    )
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    let _node_task = AbortOnDrop(tokio::spawn(node_watch));

    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    // Only our signer's requests: kubelet client CSRs are the built-in approver's business.
    let wc =
        watcher::Config::default().fields(&format!("spec.signerName={}", rules::KUBELET_SERVING));
    let (csr_store, csr_writer) = reflector::store();
    let pending = Arc::new(Mutex::new(facts::PendingIndex::default()));
    let index = pending.clone();
    let gauge = metrics.clone();
    let csr_events = watcher(csrs.clone(), wc)
        .default_backoff()
        // managedFields are most of a cached CSR and never read; an update without them keeps
        // the server's (the API server's field manager falls back to the live object's).
        .modify(|csr: &mut CertificateSigningRequest| csr.managed_fields_mut().clear())
        .map_ok(move |ev| {
            let mut index = index.lock().expect("pending index");
            index.observe_at(&ev, Instant::now());
            gauge
                .pending
                .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
            ev
        })
        .reflect(csr_writer)
        .applied_objects();
    let controller = Controller::for_stream(csr_events, csr_store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(cfg.concurrency));
    let ready_nodes = node_store.clone();
    let ctx = Arc::new(Ctx {
        csrs,
        nodes,
        node_store,
        csr_store,
        pending,
        events: Arc::new(EventSink {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: CONTROLLER_NAME.into(),
                    instance: Some(cfg.identity.clone()),
                },
            ),
            metrics: metrics.clone(),
            in_default: AtomicBool::new(false),
            slots: tokio::sync::Semaphore::new(32),
        }),
        metrics: metrics.clone(),
        policy: cfg.policy.clone(),
        no_deny: cfg.no_deny,
        signing: cfg.signing.clone(),
        lead,
    });
    // Judge nothing before the Node cache is complete: a missing entry would read as "no Node".
    ready_nodes.wait_until_ready().await?;
    metrics.set_ready(true);
    info!("node cache synced; reconciling kubelet-serving requests");
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                warn!(error = %e, "reconcile failed");
            }
            futures::future::ready(())
        })
        .await;
    Ok(())
}

fn error_policy(_csr: Arc<CertificateSigningRequest>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.reconcile_error();
    warn!(error = %err, "will retry");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = csr.name_any();
    // The requester's pending siblings come from the index (a scan of the whole cache per
    // reconcile would be quadratic in a mass rotation); each is re-read from the cache.
    let siblings: Vec<Arc<CertificateSigningRequest>> = {
        let index = ctx.pending.lock().expect("pending index");
        index.names_of(csr.spec.username.as_deref().unwrap_or(""))
    }
    .into_iter()
    .filter_map(|n| ctx.csr_store.get(&ObjectRef::new(&n)))
    .collect();
    if !facts::is_pending(&csr) {
        if let Some(ca) = &ctx.signing
            && facts::is_approved(&csr)
            && !facts::is_denied(&csr)
            && !facts::is_failed(&csr)
            && !facts::has_certificate(&csr)
            && csr.spec.signer_name == rules::KUBELET_SERVING
        {
            return sign(&csr, ca, &ctx).await;
        }
        return Ok(Action::await_change());
    }
    let group = facts::pending_group(&csr, siblings.iter().map(|c| c.as_ref()));
    let node_name =
        rules::node_name_of(csr.spec.username.as_deref().unwrap_or("")).map(str::to_string);
    let node = node_name.as_deref().and_then(|n| cached_node(&ctx, n));
    let (mut verdict, mut verdicts) =
        facts::verdicts_in_group(&csr, &group, node.as_ref(), &ctx.policy);
    // The cache may lag a Node created a moment ago: ask the API server before denying.
    if let (Verdict::Deny(rules::Reason::NodeNotFound { .. }), Some(n)) = (&verdict, &node_name)
        && let Some(found) = fetch_node(&ctx, n).await?
    {
        (verdict, verdicts) = facts::verdicts_in_group(&csr, &group, Some(&found), &ctx.policy);
    }
    // Deny the node's later duplicates first, whichever of them this reconcile is for: then
    // the outcome does not depend on which request the controller looks at first.
    if !ctx.no_deny {
        let me = csr.metadata.name.as_deref();
        for (other, v) in group.iter().zip(&verdicts) {
            if let Verdict::Deny(r @ rules::Reason::Duplicate { .. }) = v
                && other.metadata.name.as_deref() != me
            {
                deny(other, &ctx, r).await?;
            }
        }
    }
    let signer = csr.spec.signer_name.clone();
    match verdict {
        Verdict::NotOurs => Ok(Action::await_change()),
        Verdict::Approve => {
            let msg = format!(
                "kubepki: {} is Node {:?}'s own serving certificate request and every SAN belongs to it",
                name,
                node_name.unwrap_or_default()
            );
            if decide(&csr, &ctx, "Approved", "KubepkiApproved", &msg).await? {
                ctx.metrics.decision(&signer, "approve", "valid");
                info!(csr = %name, "approved");
                publish(&ctx, &csr, EventType::Normal, "Approved", "Approve", msg).await;
            }
            Ok(Action::await_change())
        }
        Verdict::Deny(reason) => {
            if ctx.no_deny {
                ctx.metrics.decision(&signer, "skip", reason.code());
                info!(csr = %name, reason = %reason, "left pending (--no-deny)");
                let msg = format!("kubepki: {reason}");
                publish(
                    &ctx,
                    &csr,
                    EventType::Warning,
                    "NotApproved",
                    "LeavePending",
                    msg,
                )
                .await;
                // A later change (a Node appearing, a sibling decided) may change the answer.
                return Ok(Action::requeue(Duration::from_secs(60)));
            }
            deny(&csr, &ctx, &reason).await?;
            Ok(Action::await_change())
        }
    }
}

fn cached_node(ctx: &Ctx, name: &str) -> Option<NodeInfo> {
    ctx.node_store
        .get(&ObjectRef::new(name))
        .map(|n| facts::node_info(&n))
}

/// The Node from the API server, for when the cache has none (it may lag a new Node).
async fn fetch_node(ctx: &Ctx, name: &str) -> Result<Option<NodeInfo>, Error> {
    match ctx.nodes.get_opt(name).await {
        Ok(found) => Ok(found.map(|n| facts::node_info(&n))),
        Err(e) => {
            ctx.metrics.api_error("node_lookup");
            Err(Error::Api {
                operation: "get node",
                name: name.to_string(),
                source: e,
            })
        }
    }
}

async fn deny(
    csr: &CertificateSigningRequest,
    ctx: &Ctx,
    reason: &rules::Reason,
) -> Result<(), Error> {
    let msg = format!("kubepki: {reason}");
    if decide(csr, ctx, "Denied", reason.condition_reason(), &msg).await? {
        ctx.metrics
            .decision(&csr.spec.signer_name, "deny", reason.code());
        info!(csr = %csr.name_any(), reason = %reason, "denied");
        publish(ctx, csr, EventType::Warning, "Denied", "Deny", msg).await;
    }
    Ok(())
}

/// Writes an Approved/Denied condition with the object's resourceVersion as precondition.
/// Ok(false): someone else changed the request first (it will be looked at again).
async fn decide(
    csr: &CertificateSigningRequest,
    ctx: &Ctx,
    kind: &str,
    reason: &str,
    message: &str,
) -> Result<bool, Error> {
    let name = csr.name_any();
    if !ctx.may_write() {
        info!(csr = %name, "not leading: leaving the decision to the leader");
        return Ok(false);
    }
    // Read before the write: the watch may drop the decided request from the index before the
    // write's answer arrives.
    let first_seen = ctx.pending.lock().expect("pending index").first_seen(&name);
    match set_condition(&ctx.csrs, csr, kind, reason, message).await {
        Ok(_) => {
            if let Some(t) = first_seen {
                ctx.metrics.decision_took(t.elapsed());
            }
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            info!(csr = %name, "changed meanwhile; looking again");
            Ok(false)
        }
        Err(e) => {
            let operation = if kind == "Approved" {
                "approve"
            } else {
                "deny"
            };
            ctx.metrics.api_error(operation);
            Err(Error::Api {
                operation,
                name,
                source: e,
            })
        }
    }
}

/// PUT .../approval with one more condition. Public for `kubepki csr approve`.
pub async fn set_condition(
    api: &Api<CertificateSigningRequest>,
    csr: &CertificateSigningRequest,
    kind: &str,
    reason: &str,
    message: &str,
) -> Result<CertificateSigningRequest, kube::Error> {
    let mut updated = csr.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = updated.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    api.replace_subresource(
        "approval",
        &csr.name_any(),
        &PostParams::default(),
        &updated,
    )
    .await
}

/// Signs an approved request, if it passes the rules (whoever approved it) and the CA can issue
/// a certificate valid now. A request the rules refuse gets a Failed condition, as the built-in
/// signer does; an expired CA is retried (the request is not at fault).
async fn sign(csr: &CertificateSigningRequest, ca: &SigningCa, ctx: &Ctx) -> Result<Action, Error> {
    let name = csr.name_any();
    let req = facts::request(csr);
    let node = match rules::node_name_of(req.username) {
        Some(n) => match cached_node(ctx, n) {
            Some(found) => Some(found),
            None => fetch_node(ctx, n).await?,
        },
        None => None,
    };
    let plan = match ca.plan(
        &req,
        node.as_ref(),
        &ctx.policy,
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(p) => p,
        Err(refusal) => return refuse_to_sign(csr, ctx, &refusal).await,
    };
    let pem = ca.issue(&plan).map_err(|source| Error::Sign {
        name: name.clone(),
        source,
    })?;
    if !ctx.may_write() {
        return Ok(Action::await_change());
    }
    let mut updated = csr.clone();
    updated
        .status
        .get_or_insert_with(Default::default)
        .certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
    if write_status(ctx, &updated, "sign").await? {
        ctx.metrics.signed.inc();
        info!(csr = %name, "signed");
    }
    Ok(Action::await_change())
}

/// PUT .../status with the resourceVersion read as precondition. Ok(false): the request
/// changed meanwhile (it will be looked at again).
async fn write_status(
    ctx: &Ctx,
    updated: &CertificateSigningRequest,
    operation: &'static str,
) -> Result<bool, Error> {
    let name = updated.name_any();
    match ctx
        .csrs
        .replace_status(&name, &PostParams::default(), updated)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => {
            ctx.metrics.api_error("sign");
            Err(Error::Api {
                operation,
                name,
                source: e,
            })
        }
    }
}

/// How soon a request is looked at again while the CA cannot sign.
const CA_RETRY: Duration = Duration::from_secs(300);

async fn refuse_to_sign(
    csr: &CertificateSigningRequest,
    ctx: &Ctx,
    refusal: &Refusal,
) -> Result<Action, Error> {
    let name = csr.name_any();
    let msg = format!("kubepki will not sign ({}): {refusal}", refusal.code());
    warn!(csr = %name, reason = refusal.code(), "{msg}");
    if !refusal.is_permanent() {
        ctx.metrics.sign_refusal(refusal.code());
        publish(ctx, csr, EventType::Warning, "SignRefused", "Sign", msg).await;
        return Ok(Action::requeue(CA_RETRY));
    }
    if !ctx.may_write() {
        return Ok(Action::await_change());
    }
    // The built-in signer's way (pkg/controller/certificates/signer): a Failed condition with
    // reason SignerValidationFailure, written to /status; the resourceVersion read is the
    // precondition.
    let mut updated = csr.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    updated
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some("SignerValidationFailure".into()),
            message: Some(msg.clone()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    if write_status(ctx, &updated, "mark failed").await? {
        ctx.metrics.sign_refusal(refusal.code());
        publish(ctx, csr, EventType::Warning, "SignRefused", "Sign", msg).await;
    }
    Ok(Action::await_change())
}

async fn publish(
    ctx: &Ctx,
    csr: &CertificateSigningRequest,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        // The Events API caps notes at 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    let reference = csr.object_ref(&());
    let sink = ctx.events.clone();
    tokio::spawn(async move {
        let Ok(_slot) = sink.slots.acquire().await else {
            return;
        };
        sink.send(&ev, reference).await;
    });
}

impl EventSink {
    async fn send(&self, ev: &Event, mut reference: k8s_openapi::api::core::v1::ObjectReference) {
        // API servers before 1.22 or so refuse events.k8s.io Events whose object has no
        // namespace ("involvedObject.namespace does not match event.namespace"); for them the
        // Event names the namespace it is stored in, "default".
        if self.in_default.load(Ordering::Relaxed) {
            reference.namespace = Some("default".into());
        }
        let mut result = self.recorder.publish(ev, &reference).await;
        if let Err(kube::Error::Api(s)) = &result
            && s.code == 422
            && reference.namespace.is_none()
            && s.message.contains("namespace")
        {
            self.in_default.store(true, Ordering::Relaxed);
            reference.namespace = Some("default".into());
            result = self.recorder.publish(ev, &reference).await;
        }
        if let Err(e) = result {
            self.metrics.api_error("event");
            warn!(error = %e, "cannot record event");
        }
    }
}
