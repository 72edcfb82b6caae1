//! Prometheus metrics (prometheus-client, OpenMetrics text).

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    /// What failed: approve, deny, sign, node_lookup, event, lease.
    pub operation: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// kubelet-serving requests waiting for a decision, as of the last reconcile.
    pub queue_depth: Gauge,
    pub signed: Counter,
    /// Approved requests --sign left unsigned, by stable reason code.
    pub sign_refusals: Family<ReasonLabels, Counter>,
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
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let queue_depth = Gauge::default();
        let signed = Counter::default();
        let leader = Gauge::default();
        let sign_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "csr_decisions",
            "Decisions on CertificateSigningRequests, by signer, decision and reason",
            decisions.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed API calls while reconciling, by operation",
            reconcile_errors.clone(),
        );
        registry.register(
            "csr_queue_depth",
            "kubelet-serving requests waiting for a decision",
            queue_depth.clone(),
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
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Metrics {
            registry,
            decisions,
            reconcile_errors,
            queue_depth,
            signed,
            sign_refusals,
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

    pub fn sign_refusal(&self, reason: &str) {
        self.sign_refusals
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn error(&self, operation: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                operation: operation.into(),
            })
            .inc();
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
