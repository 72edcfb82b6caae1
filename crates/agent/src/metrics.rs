//! The agent's /metrics: x509-certificate-exporter's series (same names and labels, so the
//! rules and dashboards written for it work unchanged), then what only kubepki knows.

use std::sync::atomic::AtomicU64;

use kubepki_pki::crypto::cert::Name;
use kubepki_pki::ops::scan::Snapshot;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// success | failure
    pub result: String,
}

pub struct AgentMetrics {
    registry: Registry,
    not_before: Family<Labels, Gauge>,
    not_after: Family<Labels, Gauge>,
    expired: Family<Labels, Gauge>,
    relative: Option<(Family<Labels, FloatGauge>, Family<Labels, FloatGauge>)>,
    read_errors: Gauge,
    info: Family<Labels, Gauge>,
    errors: Family<Labels, Gauge>,
    /// 1 while renewal is on for this node (flag or ConfigMap).
    pub renewal_enabled: Gauge,
    /// 1 while a failure has stopped renewal on every node.
    pub renewal_stopped: Gauge,
    pub renewals: Family<ResultLabels, Counter>,
    pub last_check: Gauge,
    /// Files read and parsed (an unchanged file is not read again).
    pub file_reads: Counter,
    /// Requests to the API server, by resource (the renewal Lease election's own are not
    /// counted: they happen only while this node renews).
    pub api_requests: Family<Labels, Counter>,
}

/// x509-certificate-exporter's name labels: the first value of each attribute present. Its
/// `_ST` label carries the street address, not the province; kept so that series match.
fn name_labels(prefix: &'static [&'static str; 6], n: &Name, out: &mut Labels) {
    let first = |v: &[String]| v.first().cloned();
    for (label, value) in prefix.iter().zip([
        first(&n.countries),
        first(&n.street_addresses),
        first(&n.localities),
        first(&n.organizations),
        first(&n.organizational_units),
        n.common_name.clone().filter(|c| !c.is_empty()),
    ]) {
        if let Some(v) = value {
            out.push((label, v));
        }
    }
}

const SUBJECT: [&str; 6] = [
    "subject_C",
    "subject_ST",
    "subject_L",
    "subject_O",
    "subject_OU",
    "subject_CN",
];
const ISSUER: [&str; 6] = [
    "issuer_C",
    "issuer_ST",
    "issuer_L",
    "issuer_O",
    "issuer_OU",
    "issuer_CN",
];

fn flag(b: bool) -> String {
    if b { "true" } else { "false" }.into()
}

impl AgentMetrics {
    pub fn new(expose_relative: bool) -> AgentMetrics {
        let mut registry = Registry::default();
        let not_before = Family::<Labels, Gauge>::default();
        let not_after = Family::<Labels, Gauge>::default();
        let expired = Family::<Labels, Gauge>::default();
        let read_errors = Gauge::default();
        let info = Family::<Labels, Gauge>::default();
        let errors = Family::<Labels, Gauge>::default();
        let build = Family::<Labels, Gauge>::default();
        let renewal_enabled = Gauge::default();
        let renewal_stopped = Gauge::default();
        let renewals = Family::<ResultLabels, Counter>::default();
        let last_check = Gauge::default();
        let file_reads = Counter::default();
        let api_requests = Family::<Labels, Counter>::default();
        registry.register(
            "kubepki_agent_api_requests",
            "Requests to the API server, by resource",
            api_requests.clone(),
        );
        registry.register(
            "x509_cert_not_before",
            "Indicates the certificate's not before timestamp",
            not_before.clone(),
        );
        registry.register(
            "x509_cert_not_after",
            "Indicates the certificate's not after timestamp",
            not_after.clone(),
        );
        registry.register(
            "x509_cert_expired",
            "Indicates if the certificate is expired",
            expired.clone(),
        );
        let relative = expose_relative.then(|| {
            let expires_in = Family::<Labels, FloatGauge>::default();
            let valid_since = Family::<Labels, FloatGauge>::default();
            registry.register(
                "x509_cert_expires_in_seconds",
                "Indicates the remaining time before the certificate's not after timestamp",
                expires_in.clone(),
            );
            registry.register(
                "x509_cert_valid_since_seconds",
                "Indicates the elapsed time since the certificate's not before timestamp",
                valid_since.clone(),
            );
            (expires_in, valid_since)
        });
        registry.register(
            "x509_read_errors",
            "Indicates the number of read failure(s)",
            read_errors.clone(),
        );
        registry.register(
            "kubepki_certificate_info",
            "What kubepki knows of a certificate: its kubeadm name, whether it is a CA, managed by an external CA, renewable on this node",
            info.clone(),
        );
        registry.register(
            "kubepki_read_errors",
            "Files that could not be read or parsed, by reason",
            errors.clone(),
        );
        registry.register(
            "kubepki_build_info",
            "The kubepki version serving these metrics",
            build.clone(),
        );
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        registry.register(
            "kubepki_agent_renewal_enabled",
            "1 while automatic renewal is on for this node",
            renewal_enabled.clone(),
        );
        registry.register(
            "kubepki_agent_renewal_stopped",
            "1 while a failed renewal has stopped automatic renewal on every node",
            renewal_stopped.clone(),
        );
        // Both results exist from the start, so that increase() sees the first failure.
        for result in ["success", "failure"] {
            let _ = renewals.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        registry.register(
            "kubepki_agent_renewals",
            "Automatic renewals on this node, by result",
            renewals.clone(),
        );
        registry.register(
            "kubepki_agent_last_check_timestamp_seconds",
            "When the agent last decided Events and renewal",
            last_check.clone(),
        );
        registry.register(
            "kubepki_agent_file_reads",
            "Files read and parsed; a file is read again only when it changed",
            file_reads.clone(),
        );
        AgentMetrics {
            file_reads,
            api_requests,
            registry,
            not_before,
            not_after,
            expired,
            relative,
            read_errors,
            info,
            errors,
            renewal_enabled,
            renewal_stopped,
            renewals,
            last_check,
        }
    }

    /// Replaces the certificate series with `snap`'s, as of `now`.
    pub fn update(&self, snap: &Snapshot, now: OffsetDateTime) {
        self.not_before.clear();
        self.not_after.clear();
        self.expired.clear();
        self.info.clear();
        self.errors.clear();
        if let Some((a, b)) = &self.relative {
            a.clear();
            b.clear();
        }
        for (file, seen) in snap.certificates() {
            let path = file.path.to_string_lossy().into_owned();
            let mut labels: Labels = Vec::with_capacity(16);
            labels.push((
                "filename",
                file.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ));
            labels.push(("filepath", path.clone()));
            labels.push(("serial_number", seen.serial.clone()));
            name_labels(&ISSUER, &seen.issuer, &mut labels);
            name_labels(&SUBJECT, &seen.subject, &mut labels);
            let kind = seen.embedded.as_ref().map(|(k, n)| (k.label(), n.clone()));
            if let Some((k, n)) = &kind {
                labels.push(("embedded_kind", k.to_string()));
                labels.push(("embedded_key", n.clone()));
            }
            let nb = seen.not_before.unix_timestamp();
            let na = seen.not_after.unix_timestamp();
            self.not_before.get_or_create(&labels).set(nb);
            self.not_after.get_or_create(&labels).set(na);
            self.expired
                .get_or_create(&labels)
                .set(i64::from(now >= seen.not_after));
            if let Some((expires_in, valid_since)) = &self.relative {
                let t = now.unix_timestamp() as f64;
                expires_in.get_or_create(&labels).set(na as f64 - t);
                valid_since.get_or_create(&labels).set(t - nb as f64);
            }
            let role = snap.role(file, seen);
            let info: Labels = vec![
                ("filepath", path),
                ("serial_number", seen.serial.clone()),
                (
                    "embedded_kind",
                    kind.map(|(k, _)| k.to_string()).unwrap_or_default(),
                ),
                ("name", role.name),
                ("ca", flag(role.ca)),
                ("externally_managed", flag(role.externally_managed)),
                ("renewable", flag(role.renewable)),
            ];
            self.info.get_or_create(&info).set(1);
        }
        let mut n = 0;
        for (path, e) in snap.errors() {
            n += 1;
            self.errors
                .get_or_create(&vec![
                    ("filepath", path.to_string_lossy().into_owned()),
                    ("reason", e.reason().to_string()),
                ])
                .set(1);
        }
        self.read_errors.set(n);
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
