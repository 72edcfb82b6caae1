//! One finding of the audit: what is wrong, where, what the best-practice page says about it and
//! how to fix it. Every check reports in this shape, so that text, JSON and SARIF output and
//! `--fail-on` treat them all alike.

use serde::Serialize;

named_enum! {
    /// How much a finding matters. Ordered from least to most severe, so that "fail on warning
    /// or worse" is a comparison.
    pub enum Severity ("severity", error UnknownSeverity) {
        Info = "info",
        Warning = "warning",
        Error = "error",
        Critical = "critical",
    }
}

/// One thing the audit found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier of the check, upper-case words joined by `-` and prefixed by its area,
    /// e.g. `PSS-BASELINE-HOST-NAMESPACES`. Scripts and SARIF rules key on it: never renamed.
    pub id: &'static str,
    pub severity: Severity,
    /// What the finding is about: an API object (`pod default/web-1`, `node cp-1`) or a file path.
    pub object: String,
    /// What is wrong, with the offending values.
    pub message: String,
    /// The best-practice page and, in one sentence, what it says.
    pub page: &'static str,
    /// How to fix it.
    pub fix: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::ALL.is_sorted());
        assert!(Severity::Info < Severity::Warning && Severity::Error < Severity::Critical);
    }

    #[test]
    fn finding_serializes_every_field() {
        let f = Finding {
            id: "PSS-BASELINE-HOST-NAMESPACES",
            severity: Severity::Error,
            object: "pod default/web-1".into(),
            message: "spec.hostNetwork=true".into(),
            page: "Pod Security Standards: the baseline profile forbids sharing host namespaces.",
            fix: "remove spec.hostNetwork".into(),
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({
                "id": "PSS-BASELINE-HOST-NAMESPACES",
                "severity": "error",
                "object": "pod default/web-1",
                "message": "spec.hostNetwork=true",
                "page": "Pod Security Standards: the baseline profile forbids sharing host namespaces.",
                "fix": "remove spec.hostNetwork",
            })
        );
    }
}
