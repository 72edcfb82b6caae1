//! Prometheus metrics (prometheus-client, OpenMetrics text), as /metrics prints them:
//!
//! - `kubepki_csr_decisions_total{signer, decision, reason}`: decisions written (or, with
//!   `--no-deny`, a denial left pending: decision `skip`);
//! - `kubepki_csr_pending`: kubelet-serving requests waiting for a decision;
//! - `kubepki_csr_decision_duration_seconds`: histogram, from the controller first seeing a
//!   pending kubelet-serving request to its decision being written;
//! - `kubepki_csr_signed_total`, `kubepki_csr_sign_refusals_total{reason}` (`--sign`);
//! - `kubepki_api_errors_total{operation}`: failed API calls (every operation from the start);
//! - `kubepki_reconcile_errors_total`: reconciles that ended in an error (retried);
//! - `kubepki_leader`: 1 while this replica leads;
//! - `kubepki_build_info{version}`: 1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub signer: String,
    /// approve | deny | skip (a denial left pending by --no-deny)
    pub decision: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// What failed: one of `API_OPERATIONS`.
    pub operation: String,
}

/// The `operation`s of `kubepki_api_errors_total`, each exported from the start (at 0), so
/// that `increase()` sees the first failure too.
pub const API_OPERATIONS: [&str; 6] = ["approve", "deny", "sign", "node_lookup", "event", "lease"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Upper bounds of `kubepki_csr_decision_duration_seconds`' buckets: a decision normally takes
/// one API write (milliseconds); a backlog of thousands, seconds; a request held back (a Node
/// not yet in the cache, retries), up to a minute and more.
pub const DECISION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    /// kubelet-serving requests waiting for a decision, kept current from the watch.
    pub pending: Gauge,
    /// From first seeing a pending request to its decision written.
    pub decision_duration: Histogram,
    pub signed: Counter,
    /// Approved requests --sign left unsigned, by stable reason code.
    pub sign_refusals: Family<ReasonLabels, Counter>,
    /// Failed API calls, by operation.
    pub api_errors: Family<ErrorLabels, Counter>,
    /// Reconciles that ended in an error (each is retried).
    pub reconcile_errors: Counter,
    pub leader: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubepki");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let pending = Gauge::default();
        let decision_duration = Histogram::new(DECISION_BUCKETS);
        let signed = Counter::default();
        let sign_refusals = Family::<ReasonLabels, Counter>::default();
        let api_errors = Family::<ErrorLabels, Counter>::default();
        for operation in API_OPERATIONS {
            let _ = api_errors.get_or_create(&ErrorLabels {
                operation: operation.into(),
            });
        }
        let reconcile_errors = Counter::default();
        let leader = Gauge::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "csr_decisions",
            "Decisions on CertificateSigningRequests, by signer, decision and reason",
            decisions.clone(),
        );
        registry.register(
            "csr_pending",
            "kubelet-serving requests waiting for a decision",
            pending.clone(),
        );
        // The unit is appended to the name: kubepki_csr_decision_duration_seconds.
        registry.register_with_unit(
            "csr_decision_duration",
            "From first seeing a pending kubelet-serving request to its decision written",
            Unit::Seconds,
            decision_duration.clone(),
        );
        registry.register(
            "csr_signed",
            "Certificates issued by this controller (--sign)",
            signed.clone(),
        );
        registry.register(
            "csr_sign_refusals",
            "Approved requests --sign refused to sign, by reason (a rule, or ca_expired)",
            sign_refusals.clone(),
        );
        registry.register(
            "api_errors",
            "Failed API calls, by operation",
            api_errors.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error (each is retried)",
            reconcile_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "build_info",
            "1, labelled with the kubepki version",
            build_info,
        );
        Metrics {
            registry,
            decisions,
            pending,
            decision_duration,
            signed,
            sign_refusals,
            api_errors,
            reconcile_errors,
            leader,
            ready: AtomicBool::new(false),
        }
    }

    pub fn decision(&self, signer: &str, decision: &str, reason: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                signer: signer.into(),
                decision: decision.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// A decision written `took` after the request was first seen pending.
    pub fn decision_took(&self, took: Duration) {
        self.decision_duration.observe(took.as_secs_f64());
    }

    pub fn sign_refusal(&self, reason: &str) {
        self.sign_refusals
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// A failed API call.
    pub fn api_error(&self, operation: &str) {
        self.api_errors
            .get_or_create(&ErrorLabels {
                operation: operation.into(),
            })
            .inc();
    }

    /// A reconcile that ended in an error.
    pub fn reconcile_error(&self) {
        self.reconcile_errors.inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
