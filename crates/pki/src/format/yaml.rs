//! YAML output in the style of Go's sigs.k8s.io/yaml: block collections, compact sequences,
//! long strings kept on one line, YAML 1.1-ambiguous strings (timestamps, `yes`) quoted.

use serde::Serialize;

/// A YAML parse error that shows no text of the document: kubeconfigs, kubeadm configs and pod
/// manifests hold private keys, tokens and secrets, and the parser's own message quotes the
/// lines around the error. Where it is, and the parser's reason when that quotes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid YAML{}{}",
    reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
    at.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default())]
pub struct YamlError {
    /// The parser's reason, kept only when it quotes nothing of the document.
    pub reason: Option<String>,
    /// (line, column), 1-based.
    pub at: Option<(u64, u64)>,
}

impl YamlError {
    pub fn new(e: &serde_saphyr::Error) -> Self {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("").trim();
        // "error: line 3 column 7: did not find expected key" -> the reason after the location.
        // The parser's resource limits (an alias bomb, a huge document) name their counters
        // ("budget breached: Nodes { nodes: 250001 }"): say what that means instead.
        let budget = "more nodes, aliases or nesting than kubepki reads (an alias bomb?)";
        let reason = if first.contains("budget") {
            budget
        } else {
            first.rsplit(": ").next().unwrap_or("").trim()
        };
        let long_token = reason
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '/' && c != '=')
            .any(|t| t.len() > 16);
        let quotes = reason.contains(['"', '\'', '`']);
        YamlError {
            reason: (!(reason.is_empty() || quotes || long_token)).then(|| reason.to_string()),
            at: e.location().map(|l| (l.line(), l.column())),
        }
    }
}

pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::ser::Error> {
    let mut opts = serde_saphyr::SerializerOptions::default();
    opts.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(value, opts)
}

/// Serializes a JSON value with every mapping's keys sorted, as sigs.k8s.io/yaml does
/// (whatever key order serde_json's map was built with).
pub fn to_string_sorted(value: &serde_json::Value) -> Result<String, serde_saphyr::ser::Error> {
    to_string(&sorted(value))
}

fn sorted(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
