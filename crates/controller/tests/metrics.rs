//! /metrics as the contract names it: every family, its type, and what each call adds.

use std::time::Duration;

use kubepki_controller::metrics::{API_OPERATIONS, DECISION_BUCKETS, Metrics};

/// The `# TYPE` lines: (name, type), in registration order.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// The value of the one sample line starting with `prefix` (None: no such line).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    let mut found = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap());
    let v = found.next();
    assert!(found.next().is_none(), "more than one {prefix}:\n{text}");
    v
}

#[test]
fn names_and_types_are_the_contracts() {
    let m = Metrics::new();
    // Families with labels print nothing until they have a series.
    m.decision("kubernetes.io/kubelet-serving", "approve", "valid");
    m.sign_refusal("ca_expired");
    let text = m.encode();
    let got = families(&text);
    let want = [
        ("kubepki_csr_decisions", "counter"),
        ("kubepki_csr_pending", "gauge"),
        ("kubepki_csr_decision_duration_seconds", "histogram"),
        ("kubepki_csr_signed", "counter"),
        ("kubepki_csr_sign_refusals", "counter"),
        ("kubepki_api_errors", "counter"),
        ("kubepki_reconcile_errors", "counter"),
        ("kubepki_leader", "gauge"),
        ("kubepki_build_info", "gauge"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(got, want, "{text}");
    assert!(
        text.contains("# UNIT kubepki_csr_decision_duration_seconds seconds"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(!text.contains("queue_depth"), "{text}");
}

#[test]
fn fresh_values() {
    let text = Metrics::new().encode();
    let version = format!(
        "kubepki_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), Some(1.0), "{text}");
    assert_eq!(sample(&text, "kubepki_csr_pending "), Some(0.0));
    assert_eq!(sample(&text, "kubepki_csr_signed_total "), Some(0.0));
    assert_eq!(sample(&text, "kubepki_reconcile_errors_total "), Some(0.0));
    assert_eq!(sample(&text, "kubepki_leader "), Some(0.0));
    assert_eq!(
        sample(&text, "kubepki_csr_decision_duration_seconds_count "),
        Some(0.0)
    );
    // Every operation's failures from the start, at 0: `increase()` sees the first one.
    for op in API_OPERATIONS {
        let line = format!("kubepki_api_errors_total{{operation=\"{op}\"}}");
        assert_eq!(sample(&text, &line), Some(0.0), "{text}");
    }
    // Decisions and refusals have no series until there is one.
    assert_eq!(sample(&text, "kubepki_csr_decisions_total"), None, "{text}");
    assert_eq!(
        sample(&text, "kubepki_csr_sign_refusals_total"),
        None,
        "{text}"
    );
}

#[test]
fn decisions_are_timed_into_buckets_from_5ms_to_60s() {
    assert_eq!(DECISION_BUCKETS.first(), Some(&0.005));
    assert_eq!(DECISION_BUCKETS.last(), Some(&60.0));
    assert!(DECISION_BUCKETS.windows(2).all(|w| w[0] < w[1]));

    let m = Metrics::new();
    m.decision("kubernetes.io/kubelet-serving", "approve", "valid");
    m.decision_took(Duration::from_millis(3));
    m.decision("kubernetes.io/kubelet-serving", "deny", "usages");
    m.decision_took(Duration::from_millis(700));
    m.decision_took(Duration::from_secs(90));
    let text = m.encode();
    let bucket = |le: &str| {
        sample(
            &text,
            &format!("kubepki_csr_decision_duration_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("0.005"), Some(1.0), "{text}");
    assert_eq!(bucket("0.5"), Some(1.0), "{text}");
    assert_eq!(bucket("1.0"), Some(2.0), "{text}");
    assert_eq!(bucket("60.0"), Some(2.0), "{text}");
    assert_eq!(bucket("+Inf"), Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "kubepki_csr_decision_duration_seconds_count "),
        Some(3.0)
    );
    let sum = sample(&text, "kubepki_csr_decision_duration_seconds_sum ").unwrap();
    assert!((sum - 90.703).abs() < 1e-9, "{sum}");
    assert_eq!(
        sample(
            &text,
            "kubepki_csr_decisions_total{signer=\"kubernetes.io/kubelet-serving\",decision=\"deny\",reason=\"usages\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn api_errors_by_operation_and_failed_reconciles_apart() {
    let m = Metrics::new();
    m.api_error("lease");
    m.api_error("lease");
    m.api_error("sign");
    m.reconcile_error();
    m.sign_refusal("ca_expired");
    m.signed.inc();
    m.pending.set(4);
    m.leader.set(1);
    let text = m.encode();
    for (line, v) in [
        ("kubepki_api_errors_total{operation=\"lease\"}", 2.0),
        ("kubepki_api_errors_total{operation=\"sign\"}", 1.0),
        ("kubepki_reconcile_errors_total ", 1.0),
        (
            "kubepki_csr_sign_refusals_total{reason=\"ca_expired\"}",
            1.0,
        ),
        ("kubepki_csr_signed_total ", 1.0),
        ("kubepki_csr_pending ", 4.0),
        ("kubepki_leader ", 1.0),
    ] {
        assert_eq!(sample(&text, line), Some(v), "{line}:\n{text}");
    }
}
