//! The agent's loop: scan, publish Events, maybe renew under the cluster-wide Lease; and the
//! HTTP server for /metrics, /healthz, /readyz.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::PostParams;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Client, Resource};
use kubepki_controller::lease::{self, Elector, Timing};
use kubepki_pki::ops::scan::{Scanner, Snapshot, Watch};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::decide::{self, Announced, Failure, Renewal, Settings};
use crate::metrics::AgentMetrics;

/// The Lease annotation that stops renewal on every node until an operator removes it.
pub const FAILED_ANNOTATION: &str = "kubepki.io/renewal-failed";
/// The Node annotation that pauses renewal on that node.
pub const PAUSED_ANNOTATION: &str = "kubepki.io/renewal-paused";
const REPORTER: &str = "kubepki.io/agent";

pub struct Config {
    pub node_name: String,
    pub watch: Watch,
    pub metrics_addr: Option<SocketAddr>,
    pub check_interval: Duration,
    pub thresholds: Vec<Duration>,
    /// Renewal as the flags set it (the ConfigMap may override).
    pub flags: Settings,
    /// After a renewal and its restarts, the Lease is kept this long.
    pub settle: Duration,
    /// `kubepki certs renew all ...` without `--expiring-within`, which the agent adds.
    pub renew_command: Vec<OsString>,
    pub renew_timeout: Duration,
    /// The validity renewed certificates get: a window as long would make every renewal due
    /// again at once.
    pub validity: Duration,
    pub namespace: String,
    pub config_map: String,
    pub lease: String,
    pub lease_timing: Timing,
    pub expose_relative: bool,
}

struct Shared {
    scanner: Mutex<Scanner>,
    watch: Watch,
    metrics: AgentMetrics,
    ready: AtomicBool,
}

impl Shared {
    /// Scans (reading only what changed) and refreshes the certificate series; with `encode`,
    /// also the exposition, under the same lock: another refresh clears and refills the
    /// series, and an encoding in between would miss some.
    fn refresh(&self, now: OffsetDateTime, encode: bool) -> (Snapshot, Option<String>) {
        // A panic elsewhere cannot leave the scanner half-updated in a way that matters: its
        // cache is only ever replaced entry by entry.
        let mut scanner = self.scanner.lock().unwrap_or_else(|p| p.into_inner());
        let before = scanner.reads;
        let snap = scanner.scan(&self.watch);
        self.metrics.file_reads.inc_by(scanner.reads - before);
        self.metrics.update(&snap, now);
        let text = encode.then(|| self.metrics.encode());
        (snap, text)
    }
}

pub async fn run(client: Option<Client>, cfg: Config) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        scanner: Mutex::new(Scanner::new()),
        watch: cfg.watch.clone(),
        metrics: AgentMetrics::new(cfg.expose_relative),
        ready: AtomicBool::new(false),
    });
    if let Some(addr) = cfg.metrics_addr {
        serve(addr, shared.clone()).await?;
    }
    let (first, _) = shared.refresh(OffsetDateTime::now_utc(), false);
    shared.ready.store(true, Ordering::Relaxed);
    info!(
        node = %cfg.node_name,
        files = first.files.len(),
        certificates = first.certificates().count(),
        errors = first.errors().count(),
        "watching"
    );
    for (path, e) in first.errors() {
        warn!(file = %path.display(), reason = e.reason(), error = %e, "cannot read");
    }
    let Some(client) = client else {
        info!("--no-api: serving metrics only (no Events, no renewal)");
        std::future::pending::<()>().await;
        return Ok(());
    };
    let mut agent = Agent {
        api: ApiSide::new(client, &cfg, shared.clone()),
        cfg,
        shared,
        announced: Announced::default(),
        node_ref: None,
        unrecorded: None,
        last_state: String::new(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        agent.check().await;
        tokio::select! {
            _ = tokio::time::sleep(agent.cfg.check_interval) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    info!("stopping");
    Ok(())
}

struct ApiSide {
    nodes: Api<Node>,
    config_maps: Api<ConfigMap>,
    leases: Api<Lease>,
    events: Api<K8sEvent>,
    /// reportingInstance of the Events (the node).
    instance: String,
    /// Keeps the names of Events created in the same nanosecond apart.
    sequence: std::sync::atomic::AtomicU32,
    /// Set once the API server refused an Event with no namespace for the (cluster-scoped)
    /// Node: older servers want it in "default".
    in_default: AtomicBool,
    shared: Arc<Shared>,
}

impl ApiSide {
    /// Counts one request to the API server (for the metric, and the benchmark of what many
    /// agents cost it).
    fn count(&self, resource: &str) {
        self.shared
            .metrics
            .api_requests
            .get_or_create(&vec![("resource", resource.to_string())])
            .inc();
    }

    fn new(client: Client, cfg: &Config, shared: Arc<Shared>) -> ApiSide {
        ApiSide {
            nodes: Api::all(client.clone()),
            config_maps: Api::namespaced(client.clone(), &cfg.namespace),
            leases: Api::namespaced(client.clone(), &cfg.namespace),
            events: Api::namespaced(client, "default"),
            instance: cfg.node_name.clone(),
            sequence: std::sync::atomic::AtomicU32::new(0),
            in_default: AtomicBool::new(false),
            shared,
        }
    }

    /// Records one Event on the Node. Each is its own object: kube-runtime's Recorder would
    /// fold every Event of the same reason on the Node into one (it does not compare notes),
    /// and each certificate must be named.
    async fn event(&self, node: &ObjectReference, type_: EventType, reason: &str, note: &str) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let node_name = node.name.clone().unwrap_or_default();
        let mut regarding = node.clone();
        if self.in_default.load(Ordering::Relaxed) {
            regarding.namespace = Some("default".into());
        }
        let make = |regarding: ObjectReference| K8sEvent {
            metadata: kube::api::ObjectMeta {
                // Unique, as client-go's recorder names Events: object name and a time stamp.
                name: Some(format!(
                    "{node_name}.{:x}{n:04x}",
                    now.as_nanosecond().unsigned_abs()
                )),
                namespace: Some("default".into()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            reason: Some(reason.into()),
            action: Some("Watch".into()),
            // The Events API caps notes at 1 kB.
            note: Some(note.chars().take(1000).collect()),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTER.into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        self.count("events");
        let mut result = self
            .events
            .create(&PostParams::default(), &make(regarding.clone()))
            .await;
        // API servers before 1.22 or so refuse an Event whose object has no namespace
        // ("involvedObject.namespace does not match event.namespace"): name "default" there.
        if let Err(kube::Error::Api(s)) = &result
            && s.code == 422
            && regarding.namespace.is_none()
            && s.message.contains("namespace")
        {
            self.in_default.store(true, Ordering::Relaxed);
            regarding.namespace = Some("default".into());
            self.count("events");
            result = self
                .events
                .create(&PostParams::default(), &make(regarding))
                .await;
        }
        match result {
            Ok(_) => info!(reason, note, "event"),
            Err(e) => warn!(reason, error = %e, "cannot record event"),
        }
    }

    async fn stopped(&self, lease: &str) -> Result<Option<Failure>, kube::Error> {
        self.count("leases");
        let l = self.leases.get_opt(lease).await?;
        let raw = l
            .as_ref()
            .and_then(|l| l.metadata.annotations.as_ref())
            .and_then(|a| a.get(FAILED_ANNOTATION));
        Ok(raw.map(|r| {
            serde_json::from_str(r).unwrap_or_else(|_| Failure {
                node: String::new(),
                time: String::new(),
                error: r.clone(),
                backup: None,
            })
        }))
    }

    async fn mark_failed(&self, lease: &str, f: &Failure) -> Result<(), kube::Error> {
        let value = serde_json::to_string(f).unwrap_or_default();
        self.count("leases");
        let patch = serde_json::json!({"metadata": {"annotations": {FAILED_ANNOTATION: value}}});
        self.leases
            .patch(lease, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}

struct Agent {
    cfg: Config,
    api: ApiSide,
    shared: Arc<Shared>,
    announced: Announced,
    /// This node's Node, for Events (read at the first round that reaches the API server).
    node_ref: Option<ObjectReference>,
    /// A failure not yet recorded on the Lease (the API server did not take it): it stops
    /// renewal here until it is recorded, and is written again every round.
    unrecorded: Option<Failure>,
    /// The last renewal state logged, so that an unchanged state is not logged every minute.
    last_state: String,
}

impl Agent {
    async fn check(&mut self) {
        let now = OffsetDateTime::now_utc();
        let (snap, _) = self.shared.refresh(now, false);
        self.shared.metrics.last_check.set(now.unix_timestamp());
        // A node with nothing to renew (a worker, an external CA) reads its Node once, for the
        // Events' reference, and never the ConfigMap or the Lease: 5,000 workers cost the API
        // server nothing between Events. A node that may renew reads all three every round.
        let renewable = decide::has_renewable(&snap);
        let node = if renewable || self.node_ref.is_none() {
            self.api.count("nodes");
            match self.api.nodes.get(&self.cfg.node_name).await {
                Ok(n) => {
                    self.node_ref = Some(n.object_ref(&()));
                    Some(n)
                }
                Err(e) => {
                    warn!(node = %self.cfg.node_name, error = %e, "cannot read this node's Node object");
                    None
                }
            }
        } else {
            None
        };
        let Some(node_ref) = self.node_ref.clone() else {
            return;
        };
        for n in decide::notices(&snap, &self.cfg.thresholds, now, &mut self.announced) {
            self.api
                .event(&node_ref, EventType::Warning, n.reason, &n.note)
                .await;
        }
        if !renewable {
            self.shared.metrics.renewal_enabled.set(0);
            self.shared.metrics.renewal_stopped.set(0);
            return self
                .log_state("nothing this node can renew (no CA key here): watching only".into());
        }
        let Some(node) = node else { return };
        let settings = match self.settings(&node).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot read the agent's settings; no renewal this round");
                return;
            }
        };
        self.shared
            .metrics
            .renewal_enabled
            .set(i64::from(settings.renew_before.is_some()));
        if settings.renew_before.is_none() {
            self.shared.metrics.renewal_stopped.set(0);
            return self.log_state("renewal off".into());
        }
        if let Some(f) = self.unrecorded.clone() {
            match self.api.mark_failed(&self.cfg.lease, &f).await {
                Ok(()) => self.unrecorded = None,
                Err(e) => warn!(error = %e, "cannot record the failure on the renewal Lease yet"),
            }
        }
        let stopped = match self.api.stopped(&self.cfg.lease).await {
            Ok(s) => s.or_else(|| self.unrecorded.clone()),
            Err(e) => {
                warn!(error = %e, "cannot read the renewal Lease; no renewal this round");
                return;
            }
        };
        self.shared
            .metrics
            .renewal_stopped
            .set(i64::from(stopped.is_some()));
        match decide::renewal(&settings, stopped.as_ref(), &snap, now) {
            Renewal::Due(names) => self.renew(&node_ref, &names, &settings).await,
            Renewal::Stopped(f) => self.log_state(format!(
                "renewal stopped on every node: {} failed at {}: {} (remove the Lease annotation {FAILED_ANNOTATION} once fixed)",
                f.node, f.time, f.error
            )),
            Renewal::NotDue { next } => self.log_state(format!(
                "renewal on; nothing due{}",
                next.map(|n| format!(" before {}", decide::stamp(n)))
                    .unwrap_or_default()
            )),
            Renewal::Paused(who) => self.log_state(format!("renewal paused by {who}")),
            Renewal::Off | Renewal::NothingRenewable => {}
        }
    }

    fn log_state(&mut self, s: String) {
        if s != self.last_state {
            info!("{s}");
            self.last_state = s;
        }
    }

    async fn settings(&self, node: &Node) -> Result<Settings, String> {
        self.api.count("configmaps");
        let cm = self
            .api
            .config_maps
            .get_opt(&self.cfg.config_map)
            .await
            .map_err(|e| format!("ConfigMap {}: {e}", self.cfg.config_map))?;
        let data: Option<BTreeMap<String, String>> = cm.and_then(|c| c.data);
        let mut s = decide::apply_config(&self.cfg.flags, data.as_ref())
            .map_err(|e| format!("ConfigMap {}: {e}", self.cfg.config_map))?;
        if let Some(b) = s.renew_before
            && b >= self.cfg.validity
        {
            return Err(format!(
                "renewBefore {} is not shorter than the validity of renewed certificates ({}): every renewal would be due again at once",
                decide::short(b),
                decide::short(self.cfg.validity)
            ));
        }
        let paused = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true");
        if paused && s.paused_by.is_none() {
            s.paused_by = Some(format!("the Node annotation {PAUSED_ANNOTATION}=true"));
        }
        Ok(s)
    }

    /// Takes the Lease, checks again that nothing stopped renewal, renews, restarts, settles,
    /// and hands the Lease back. A failure is recorded on the Lease before it is released.
    async fn renew(&mut self, node: &ObjectReference, names: &[String], settings: &Settings) {
        let Some(before) = settings.renew_before else {
            return;
        };
        let (lead_tx, mut lead_rx) = watch::channel(None::<Instant>);
        let (stop_tx, stop_rx) = watch::channel(false);
        let election = tokio::spawn(lease::run(
            self.api.leases.clone(),
            self.cfg.lease.clone(),
            Elector::new(&self.cfg.node_name, self.cfg.lease_timing),
            lead_tx,
            Arc::new(kubepki_controller::metrics::Metrics::new()),
            stop_rx,
        ));
        // Long enough to take over a Lease whose holder died without handing it back: a fresh
        // elector waits a whole lease duration from when it first sees the record.
        let t = self.cfg.lease_timing;
        let patience = self
            .cfg
            .check_interval
            .max(t.lease_duration + t.retry_period * 3);
        let leading = tokio::time::timeout(patience, async {
            loop {
                if lead_rx.borrow().is_some_and(|t| Instant::now() < t) {
                    return true;
                }
                if lead_rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false);
        if leading {
            self.renew_holding(node, names, before).await;
        } else {
            self.log_state("renewal due; another node holds the renewal Lease".into());
        }
        stop_tx.send_replace(true);
        let _ = election.await;
    }

    async fn renew_holding(&mut self, node: &ObjectReference, names: &[String], before: Duration) {
        match self.api.stopped(&self.cfg.lease).await {
            Ok(None) => {}
            Ok(Some(f)) => {
                return self.log_state(format!("renewal stopped by {}'s failure", f.node));
            }
            Err(e) => return warn!(error = %e, "cannot read the renewal Lease"),
        }
        // Waiting for the Lease can take minutes: a pause or a change made meanwhile counts.
        let node_now = match self.api.nodes.get(&self.cfg.node_name).await {
            Ok(n) => n,
            Err(e) => return warn!(error = %e, "cannot read this node's Node object"),
        };
        match self.settings(&node_now).await {
            Ok(s) if s.paused_by.is_some() || s.renew_before != Some(before) => {
                return self.log_state(
                    "renewal settings changed while waiting for the Lease; deciding again next round"
                        .into(),
                );
            }
            Ok(_) => {}
            Err(e) => return warn!(error = %e, "cannot read the agent's settings"),
        }
        info!(node = %self.cfg.node_name, certificates = ?names, "renewing (holding the renewal Lease)");
        let mut cmd = tokio::process::Command::new(&self.cfg.renew_command[0]);
        cmd.args(&self.cfg.renew_command[1..])
            .arg("--expiring-within")
            .arg(format!("{}s", before.as_secs()))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let (ok, text) = match cmd.spawn() {
            Err(e) => (false, format!("cannot run kubepki certs renew: {e}")),
            Ok(child) => {
                let pid = child.id();
                let waited = child.wait_with_output();
                tokio::pin!(waited);
                match tokio::time::timeout(self.cfg.renew_timeout, &mut waited).await {
                    Ok(Ok(o)) => (
                        o.status.success(),
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        ),
                    ),
                    Ok(Err(e)) => (false, format!("kubepki certs renew: {e}")),
                    Err(_) => {
                        // SIGTERM first: a restart in progress puts its manifest back before
                        // exiting; SIGKILL (kill_on_drop) only if that takes over a minute.
                        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGTERM,
                            );
                        }
                        let tail = match tokio::time::timeout(Duration::from_secs(60), waited).await
                        {
                            Ok(Ok(o)) => String::from_utf8_lossy(&o.stdout).into_owned(),
                            _ => String::new(),
                        };
                        (
                            false,
                            format!(
                                "{tail}error: kubepki certs renew did not finish within {:?}; it was stopped",
                                self.cfg.renew_timeout
                            ),
                        )
                    }
                }
            }
        };
        for line in text.lines() {
            info!(target: "kubepki::renew", "{line}");
        }
        // A renewal that leaves the same certificates due would repeat every round, restarting
        // the control plane each time: that is a failure.
        let (ok, text) = if ok {
            let now = OffsetDateTime::now_utc();
            let (snap, _) = self.shared.refresh(now, false);
            let window = Settings {
                renew_before: Some(before),
                paused_by: None,
            };
            match decide::renewal(&window, None, &snap, now) {
                Renewal::Due(still) => (
                    false,
                    format!(
                        "{text}error: the renewal had no effect: {} still expire within {}",
                        still.join(", "),
                        decide::short(before)
                    ),
                ),
                _ => (true, text),
            }
        } else {
            (ok, text)
        };
        let backup = text
            .lines()
            .find_map(|l| l.strip_prefix("[renew] the previous files are in "))
            .and_then(|r| r.split(';').next())
            .map(str::to_string);
        if ok {
            self.shared
                .metrics
                .renewals
                .get_or_create(&crate::metrics::ResultLabels {
                    result: "success".into(),
                })
                .inc();
            let renewed: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("[renew] ") && l.contains(" renewed"))
                .map(|l| l.trim_start_matches("[renew] "))
                .collect();
            let note = format!(
                "renewed {} (expiring within {}); backup: {}",
                names.join(", "),
                decide::short(before),
                backup.as_deref().unwrap_or("none")
            );
            self.api
                .event(node, EventType::Normal, "CertificateRenewed", &note)
                .await;
            for l in text.lines().filter(|l| l.starts_with("[restart] ")) {
                if l.contains("healthy") || l.contains("restarted") {
                    self.api
                        .event(node, EventType::Normal, "StaticPodRestarted", l)
                        .await;
                }
            }
            info!(renewed = ?renewed, settle = ?self.cfg.settle, "renewed; keeping the Lease while the components settle");
            tokio::time::sleep(self.cfg.settle).await;
            self.shared.refresh(OffsetDateTime::now_utc(), false);
        } else {
            self.shared
                .metrics
                .renewals
                .get_or_create(&crate::metrics::ResultLabels {
                    result: "failure".into(),
                })
                .inc();
            let error: String = text
                .lines()
                .filter(|l| l.starts_with("error") || l.contains("ERROR") || l.contains("failed"))
                .collect::<Vec<_>>()
                .join("; ");
            let error = if error.is_empty() {
                text.lines().last().unwrap_or("").to_string()
            } else {
                error
            };
            let failure = Failure {
                node: self.cfg.node_name.clone(),
                time: decide::stamp(OffsetDateTime::now_utc()),
                error: error.chars().take(700).collect(),
                backup: backup.clone(),
            };
            error!(error = %failure.error, "renewal failed; stopping renewal on every node");
            if let Err(e) = self.api.mark_failed(&self.cfg.lease, &failure).await {
                error!(error = %e, "cannot record the failure on the renewal Lease; retrying every round, no renewal here meanwhile");
                self.unrecorded = Some(failure.clone());
            }
            self.shared.metrics.renewal_stopped.set(1);
            self.api
                .event(
                    node,
                    EventType::Warning,
                    "CertificateRenewalFailed",
                    &format!(
                        "renewing {} failed: {}; backup: {}",
                        names.join(", "),
                        failure.error,
                        backup.as_deref().unwrap_or("none")
                    ),
                )
                .await;
            self.api
                .event(
                    node,
                    EventType::Warning,
                    "RenewalStopped",
                    &format!(
                        "automatic renewal is stopped on every node until the annotation {FAILED_ANNOTATION} is removed from Lease {}/{}",
                        self.cfg.namespace, self.cfg.lease
                    ),
                )
                .await;
        }
    }
}

/// Binds `addr` now (a taken port fails start-up) and serves in the background.
async fn serve(addr: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(shared);
    kubepki_controller::http::serve_router(addr, app).await
}

async fn metrics_handler(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    // File reads block: off the async workers.
    let body = tokio::task::spawn_blocking(move || {
        s.refresh(OffsetDateTime::now_utc(), true)
            .1
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: first scan running",
        )
    }
}
