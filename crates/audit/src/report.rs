//! The audit's report and its three renderings: a text table grouped by severity for people,
//! JSON with stable field names for scripts, and SARIF 2.1.0 for code-scanning tools; plus the
//! exit code that `--fail-on` asks for.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::scale::{ScaleReport, Usage};
use crate::{Finding, Severity};

/// The SARIF schema the output declares.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The SARIF version the output follows.
pub const SARIF_VERSION: &str = "2.1.0";
/// Where the tool is described, as SARIF's `tool.driver.informationUri`.
pub const INFORMATION_URI: &str = "https://github.com/kubepki/kubepki";

/// Everything one audit found, in the order the checks reported it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The version of kubepki that made the report (SARIF's `tool.driver.version`).
    #[serde(rename = "kubepkiVersion")]
    pub version: String,
    /// The cluster against the large-cluster limits, when the scale check ran: the values
    /// themselves, not only the findings about them.
    pub scale: Option<ScaleReport>,
    /// Checks that did not run, and why: a report is complete only with none.
    pub skipped: Vec<Skipped>,
}

/// A check the audit did not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// `scale`, `zones`, `pss`, `pki` or `node`.
    pub check: &'static str,
    pub reason: String,
}

/// How many findings of each severity, as JSON output states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub critical: usize,
    pub error: usize,
    pub warning: usize,
    pub info: usize,
}

impl Report {
    /// A report of `findings` made by this build of kubepki.
    pub fn new(findings: Vec<Finding>) -> Report {
        Report {
            findings,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            scale: None,
            skipped: Vec::new(),
        }
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for f in &self.findings {
            *match f.severity {
                Severity::Critical => &mut s.critical,
                Severity::Error => &mut s.error,
                Severity::Warning => &mut s.warning,
                Severity::Info => &mut s.info,
            } += 1;
        }
        s
    }

    /// The findings, most severe first; within a severity by id, then object, then message, so
    /// that the same findings always print the same way whatever order the checks ran in.
    pub fn sorted(&self) -> Vec<&Finding> {
        let mut v: Vec<&Finding> = self.findings.iter().collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.id.cmp(b.id))
                .then_with(|| a.object.cmp(&b.object))
                .then_with(|| a.message.cmp(&b.message))
        });
        v
    }

    /// One table per severity present, most severe first, each headed `CRITICAL (n)` and with
    /// the columns ID, OBJECT, MESSAGE and FIX; "No findings." when there are none.
    pub fn to_text(&self) -> String {
        let mut out = self.preamble();
        let sorted = self.sorted();
        if sorted.is_empty() {
            out.push_str("No findings.\n");
            return out;
        }
        for &severity in Severity::ALL.iter().rev() {
            let group: Vec<&Finding> = sorted
                .iter()
                .copied()
                .filter(|f| f.severity == severity)
                .collect();
            if group.is_empty() {
                continue;
            }
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(&format!(
                "{} ({})\n",
                severity.as_str().to_uppercase(),
                group.len()
            ));
            let mut rows = vec![[
                "ID".to_owned(),
                "OBJECT".into(),
                "MESSAGE".into(),
                "FIX".into(),
            ]];
            rows.extend(group.iter().map(|f| {
                [
                    one_line(f.id),
                    one_line(&f.object),
                    one_line(&f.message),
                    one_line(&f.fix),
                ]
            }));
            out.push_str(&table(&rows));
        }
        out
    }

    /// The scale table and the skipped checks, each followed by a blank line; empty when
    /// there are neither.
    fn preamble(&self) -> String {
        let mut out = String::new();
        if let Some(scale) = &self.scale {
            let mut rows = vec![[
                "SCALE".to_owned(),
                "CURRENT".into(),
                "LIMIT".into(),
                "HEADROOM".into(),
            ]];
            let row = |what: String, u: &Usage| {
                let headroom = u
                    .headroom_percent
                    .map_or("-".to_owned(), |p| format!("{p:.1} %"));
                [what, u.current.to_string(), u.limit.to_string(), headroom]
            };
            rows.push(row("nodes".into(), &scale.nodes));
            rows.push(row("pods".into(), &scale.pods));
            rows.push(row("containers".into(), &scale.containers));
            for n in &scale.worst_nodes {
                rows.push(row(format!("pods on node {}", one_line(&n.node)), &n.usage));
            }
            out.push_str(&table(&rows));
            out.push('\n');
        }
        for s in &self.skipped {
            out.push_str(&format!("Skipped {}: {}\n", s.check, one_line(&s.reason)));
        }
        if !self.skipped.is_empty() {
            out.push('\n');
        }
        out
    }

    /// `{"kubepkiVersion", "summary": {critical, error, warning, info}, "findings": [{id,
    /// severity, object, message, page, fix}]}`, pretty-printed, findings in [`Report::sorted`]
    /// order. The field names are an interface: never renamed.
    pub fn to_json(&self) -> String {
        let v = json!({
            "kubepkiVersion": self.version,
            "summary": self.summary(),
            "scale": self.scale,
            "skipped": self.skipped,
            "findings": self.sorted(),
        });
        format!("{v:#}\n")
    }

    /// SARIF 2.1.0: one run of the driver "kubepki", one rule per distinct finding id (its page
    /// as the short description, the first finding's fix as help), one result per finding.
    pub fn to_sarif_value(&self) -> Value {
        let sorted = self.sorted();
        let mut rule_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut rules = Vec::new();
        let mut ids: Vec<&Finding> = sorted.clone();
        ids.sort_by_key(|f| f.id);
        for f in ids {
            if rule_index.contains_key(f.id) {
                continue;
            }
            rule_index.insert(f.id, rules.len());
            rules.push(json!({
                "id": f.id,
                "shortDescription": {"text": f.page},
                "help": {"text": f.fix},
                "defaultConfiguration": {"level": level(f.severity)},
            }));
        }
        let results: Vec<Value> = sorted
            .iter()
            .map(|f| {
                json!({
                    "ruleId": f.id,
                    "ruleIndex": rule_index.get(f.id).copied().unwrap_or(0),
                    "level": level(f.severity),
                    "message": {"text": f.message},
                    "locations": [location(&f.object)],
                    "properties": {"severity": f.severity, "fix": f.fix},
                })
            })
            .collect();
        json!({
            "$schema": SARIF_SCHEMA,
            "version": SARIF_VERSION,
            "runs": [{
                "tool": {"driver": {
                    "name": "kubepki",
                    "informationUri": INFORMATION_URI,
                    "version": self.version,
                    "rules": rules,
                }},
                "results": results,
                "properties": {"scale": self.scale, "skipped": self.skipped},
            }],
        })
    }

    /// [`Report::to_sarif_value`], pretty-printed.
    pub fn to_sarif(&self) -> String {
        format!("{:#}\n", self.to_sarif_value())
    }
}

/// 1 when a finding is at `fail_on` or above, else 0 (and always 0 without `fail_on`).
pub fn exit_code(report: &Report, fail_on: Option<Severity>) -> u8 {
    match fail_on {
        Some(threshold) if report.findings.iter().any(|f| f.severity >= threshold) => 1,
        _ => 0,
    }
}

/// SARIF's level for a severity: it has no "critical", so critical is an error too.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// Where a finding lies, as SARIF says it: a file (an object that is a path: absolute, or
/// relative with a `/` and no space) as a physical location; an API object (`pod default/web-1`)
/// or the cluster as a logical one, `kind/name`.
fn location(object: &str) -> Value {
    if object.starts_with('/') {
        return json!({"physicalLocation": {"artifactLocation": {
            "uri": format!("file://{}", percent_encode(object)),
        }}});
    }
    match object.split_once(' ') {
        Some((kind, name)) => json!({"logicalLocations": [{
            "fullyQualifiedName": format!("{kind}/{name}"),
            "name": name,
            "kind": kind,
        }]}),
        None if object.contains('/') => json!({"physicalLocation": {"artifactLocation": {
            "uri": percent_encode(object),
        }}}),
        None => json!({"logicalLocations": [{
            "fullyQualifiedName": object,
            "name": object,
            "kind": object,
        }]}),
    }
}

/// A path as a URI path: every byte but the unreserved characters and `/` as `%XX`.
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A cell on one line: line breaks and tabs become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Rows as columns padded to their widest cell, two spaces apart, the last column unpadded.
fn table(rows: &[[String; 4]]) -> String {
    let mut widths = [0usize; 4];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
