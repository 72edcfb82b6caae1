use super::*;
use Severity::*;

fn finding(id: &'static str, severity: Severity, object: &str, message: &str) -> Finding {
    Finding {
        id,
        severity,
        object: object.into(),
        message: message.into(),
        page: "The page says so.",
        fix: format!("fix {id}"),
    }
}

fn small() -> Report {
    Report {
        findings: vec![
            finding("ZONE-NODE-UNLABELLED", Info, "node n2", "no zone label"),
            finding(
                "PKI-KEY-MODE",
                Error,
                "/etc/kubernetes/pki/my dir/ca.key",
                "mode 0644",
            ),
            finding(
                "PSS-BASELINE-HOST-NAMESPACES",
                Critical,
                "pod default/web-1",
                "spec.hostNetwork=true",
            ),
            finding("SCALE-NODES", Warning, "cluster", "4,000 of 5,000 nodes"),
            finding(
                "PSS-BASELINE-HOST-NAMESPACES",
                Critical,
                "pod default/web-0",
                "spec.hostPID=true",
            ),
        ],
        version: "0.1.0".into(),
        scale: None,
        skipped: Vec::new(),
    }
}

#[test]
fn text_is_grouped_by_severity_most_severe_first_and_stable() {
    let want = "\
CRITICAL (2)
ID                            OBJECT             MESSAGE                FIX
PSS-BASELINE-HOST-NAMESPACES  pod default/web-0  spec.hostPID=true      fix PSS-BASELINE-HOST-NAMESPACES
PSS-BASELINE-HOST-NAMESPACES  pod default/web-1  spec.hostNetwork=true  fix PSS-BASELINE-HOST-NAMESPACES

ERROR (1)
ID            OBJECT                             MESSAGE    FIX
PKI-KEY-MODE  /etc/kubernetes/pki/my dir/ca.key  mode 0644  fix PKI-KEY-MODE

WARNING (1)
ID           OBJECT   MESSAGE               FIX
SCALE-NODES  cluster  4,000 of 5,000 nodes  fix SCALE-NODES

INFO (1)
ID                    OBJECT   MESSAGE        FIX
ZONE-NODE-UNLABELLED  node n2  no zone label  fix ZONE-NODE-UNLABELLED
";
    let report = small();
    assert_eq!(report.to_text(), want);
    // The order the checks reported in does not matter.
    let mut reversed = report.clone();
    reversed.findings.reverse();
    assert_eq!(reversed.to_text(), want);
    assert_eq!(Report::new(Vec::new()).to_text(), "No findings.\n");
}

#[test]
fn text_cells_stay_on_one_line() {
    let r = Report::new(vec![finding(
        "X-Y",
        Info,
        "node a",
        "two\nlines\tand a tab",
    )]);
    assert_eq!(
        r.to_text(),
        "INFO (1)\nID   OBJECT  MESSAGE              FIX\nX-Y  node a  two lines and a tab  fix X-Y\n"
    );
}

#[test]
fn json_has_stable_field_names_and_sorted_findings() {
    let v: Value = serde_json::from_str(&small().to_json()).unwrap();
    assert_eq!(v["kubepkiVersion"], "0.1.0");
    assert_eq!(
        v["summary"],
        json!({"critical": 2, "error": 1, "warning": 1, "info": 1})
    );
    assert_eq!(v["scale"], Value::Null);
    assert_eq!(v["skipped"], json!([]));
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 5);
    assert_eq!(
        findings[0],
        json!({
            "id": "PSS-BASELINE-HOST-NAMESPACES",
            "severity": "critical",
            "object": "pod default/web-0",
            "message": "spec.hostPID=true",
            "page": "The page says so.",
            "fix": "fix PSS-BASELINE-HOST-NAMESPACES",
        })
    );
    let severities: Vec<&str> = findings
        .iter()
        .map(|f| f["severity"].as_str().unwrap())
        .collect();
    assert_eq!(
        severities,
        ["critical", "critical", "error", "warning", "info"]
    );
}

#[test]
fn exit_code_fails_at_or_above_the_threshold() {
    let r = small();
    assert_eq!(exit_code(&r, None), 0);
    for s in Severity::ALL {
        assert_eq!(exit_code(&r, Some(*s)), 1, "{s}");
    }
    let only_info = Report::new(vec![finding("X-Y", Info, "cluster", "m")]);
    assert_eq!(exit_code(&only_info, Some(Info)), 1);
    assert_eq!(exit_code(&only_info, Some(Warning)), 0);
    assert_eq!(exit_code(&Report::new(Vec::new()), Some(Info)), 0);
}

/// The object at `key`, which must be one.
fn obj<'a>(v: &'a Value, key: &str, at: &str) -> &'a serde_json::Map<String, Value> {
    v.get(key)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{at}.{key} must be an object: {v}"))
}

fn arr<'a>(v: &'a Value, key: &str, at: &str) -> &'a Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{at}.{key} must be an array: {v}"))
}

fn string<'a>(v: &'a Value, key: &str, at: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{at}.{key} must be a string: {v}"))
}

/// A multiformatMessageString / message: `text` required (SARIF also allows `id` for a
/// message, which kubepki does not use).
fn check_message(v: &Value, at: &str) {
    assert!(!string(v, "text", at).is_empty(), "{at}.text is empty");
}

/// The properties SARIF 2.1.0 requires (§3.13 sarifLog: version, runs; §3.14 run: tool; §3.18
/// tool: driver; §3.19 toolComponent: name; §3.49 reportingDescriptor: id; §3.27 result:
/// message; §3.29 physicalLocation: artifactLocation or address; §3.27.10 level among none,
/// note, warning, error), checked by hand: the JSON schema itself cannot be fetched offline,
/// where the tests run, so they state its required properties instead of validating with it.
/// CI validates the CLI's output against the schema itself (issue 14).
fn check_sarif(log: &Value) {
    assert_eq!(string(log, "version", "log"), "2.1.0");
    assert_eq!(string(log, "$schema", "log"), SARIF_SCHEMA);
    let runs = arr(log, "runs", "log");
    assert_eq!(runs.len(), 1);
    for run in runs {
        let driver = &run["tool"]["driver"];
        obj(run, "tool", "run");
        obj(&run["tool"], "driver", "tool");
        assert_eq!(string(driver, "name", "driver"), "kubepki");
        assert!(string(driver, "informationUri", "driver").starts_with("https://"));
        string(driver, "version", "driver");
        let rules = arr(driver, "rules", "driver");
        let mut ids = Vec::new();
        for rule in rules {
            let id = string(rule, "id", "rule");
            check_message(&rule["shortDescription"], "rule.shortDescription");
            check_message(&rule["help"], "rule.help");
            assert!(!ids.contains(&id), "rule {id} twice");
            ids.push(id);
        }
        for result in arr(run, "results", "run") {
            check_message(&result["message"], "result.message");
            let rule_id = string(result, "ruleId", "result");
            let index = result["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(ids.get(index), Some(&rule_id), "ruleIndex of {rule_id}");
            let level = string(result, "level", "result");
            assert!(["none", "note", "warning", "error"].contains(&level));
            let locations = arr(result, "locations", "result");
            assert_eq!(locations.len(), 1);
            for loc in locations {
                if let Some(phys) = loc.get("physicalLocation") {
                    let uri = string(&phys["artifactLocation"], "uri", "artifactLocation");
                    assert!(!uri.contains(' '), "{uri} is not percent-encoded");
                } else {
                    for l in arr(loc, "logicalLocations", "location") {
                        string(l, "fullyQualifiedName", "logicalLocation");
                        string(l, "kind", "logicalLocation");
                    }
                }
            }
        }
    }
}

#[test]
fn sarif_has_the_required_properties_and_a_rule_per_id() {
    let r = small();
    let log: Value = serde_json::from_str(&r.to_sarif()).unwrap();
    check_sarif(&log);
    let run = &log["runs"][0];
    let rules: Vec<&str> = arr(&run["tool"]["driver"], "rules", "driver")
        .iter()
        .map(|r| string(r, "id", "rule"))
        .collect();
    assert_eq!(
        rules,
        [
            "PKI-KEY-MODE",
            "PSS-BASELINE-HOST-NAMESPACES",
            "SCALE-NODES",
            "ZONE-NODE-UNLABELLED"
        ]
    );
    let rule = &run["tool"]["driver"]["rules"][1];
    assert_eq!(rule["shortDescription"]["text"], "The page says so.");
    assert_eq!(rule["help"]["text"], "fix PSS-BASELINE-HOST-NAMESPACES");
    let results = arr(run, "results", "run");
    assert_eq!(results.len(), 5);
    let levels: Vec<&str> = results.iter().map(|r| string(r, "level", "r")).collect();
    assert_eq!(levels, ["error", "error", "error", "warning", "note"]);
    assert_eq!(
        results[0]["locations"][0],
        json!({"logicalLocations": [{
            "fullyQualifiedName": "pod/default/web-0", "name": "default/web-0", "kind": "pod",
        }]})
    );
    assert_eq!(
        results[2]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "file:///etc/kubernetes/pki/my%20dir/ca.key"
    );
    assert_eq!(
        results[3]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "cluster"
    );
    assert_eq!(results[2]["message"]["text"], "mode 0644");
}

#[test]
fn sarif_of_no_findings_is_still_valid() {
    let log = Report::new(Vec::new()).to_sarif_value();
    check_sarif(&log);
    assert_eq!(log["runs"][0]["results"], json!([]));
    assert_eq!(log["runs"][0]["tool"]["driver"]["rules"], json!([]));
}

#[test]
fn paths_are_percent_encoded() {
    assert_eq!(percent_encode("/a b/ü%.key"), "/a%20b/%C3%BC%25.key");
    assert_eq!(
        location("pki/ca.key")["physicalLocation"]["artifactLocation"]["uri"],
        "pki/ca.key"
    );
}

#[test]
fn scale_and_skipped_checks_are_reported_in_every_format() {
    use crate::scale::{Limits, scale};
    let (report, _) = scale(&[], &[], &Default::default(), &Limits::PAGE);
    let mut r = small();
    r.scale = Some(report);
    r.skipped = vec![crate::report::Skipped {
        check: "pki",
        reason: "/etc/kubernetes/pki does not exist".into(),
    }];
    let text = r.to_text();
    assert!(text.starts_with("SCALE"), "{text}");
    assert!(
        text.contains("\nnodes       0        5000    100.0 %\n"),
        "{text}"
    );
    assert!(text.contains("does not exist\n\nCRITICAL (2)\n"), "{text}");
    assert!(
        text.contains("Skipped pki: /etc/kubernetes/pki does not exist"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["scale"]["pods"]["limit"], 150_000);
    assert_eq!(v["skipped"][0]["check"], "pki");
    let sarif = r.to_sarif_value();
    assert_eq!(sarif["runs"][0]["properties"]["skipped"][0]["check"], "pki");
    assert_eq!(
        sarif["runs"][0]["properties"]["scale"]["nodes"]["limit"],
        5000
    );
}
