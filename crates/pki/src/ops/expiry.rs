//! `check-expiration`: kubeadm's report, byte for byte in text, JSON and YAML (tabwriter
//! columns, `!MISSING!` rows, apimachinery's HumanDuration for residual times).

use std::io::Write;

use crate::format::dates::{format_date, rfc3339_utc};
use serde::Serialize;
use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::files;
use crate::error::Result;
use crate::model::inventory::{self, CaId};
use crate::model::kubeconfig;
use crate::model::layout::Layout;
use crate::model::params::KubeVersion;
use crate::model::slot::{self, Item};

/// One row: a certificate (or kubeconfig) or a CA.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: &'static str,
    /// None when the file is missing.
    pub not_after: Option<OffsetDateTime>,
    /// The signing CA's name; None for CA rows.
    pub ca_name: Option<&'static str>,
    pub externally_managed: bool,
}

impl Row {
    pub fn missing(&self) -> bool {
        self.not_after.is_none()
    }
    /// Whole seconds left, truncated toward zero as Go's `int64(d / time.Second)`.
    pub fn residual_seconds(&self, now: OffsetDateTime) -> i64 {
        self.not_after
            .map(|t| (t - now).whole_seconds())
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub certificates: Vec<Row>,
    pub authorities: Vec<Row>,
}

/// What to list besides what kubeadm always lists.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub local_etcd: bool,
    /// From `--config`; decides whether super-admin.conf belongs to this cluster.
    pub kubernetes_version: Option<KubeVersion>,
}

/// Reads the PKI and builds the report. Unreadable or corrupt files are errors naming the file
/// (as in kubeadm); absent files are `!MISSING!` rows.
pub fn collect(layout: &Layout, scope: Scope) -> Result<Report> {
    let cas = inventory::kubeadm_cas(scope.local_etcd);
    let mut authorities = Vec::new();
    let mut external = Vec::new();
    for ca in &cas {
        let cert = files::read_cert(&layout.ca_cert(ca))?;
        // External: the CA certificate is here but its key is not.
        let ext = cert.is_some() && !crate::fsio::exists(&layout.ca_key(ca))?;
        external.push((ca.id, ext));
        authorities.push(Row {
            name: ca.name,
            not_after: cert.map(|c| c.not_after),
            ca_name: None,
            externally_managed: ext,
        });
    }
    let is_external = |id: CaId| external.iter().any(|(i, e)| *i == id && *e);

    let mut certificates = Vec::new();
    for item in slot::kubeadm_items(scope.local_etcd) {
        let cert = item.read_cert(layout)?;
        if item.since_1_29() && cert.is_none() && !super_admin_expected(layout, scope)? {
            continue;
        }
        let ca = inventory::ca(item.issuer());
        certificates.push(Row {
            name: item.name(),
            not_after: cert.map(|c| c.not_after),
            ca_name: Some(ca.name),
            externally_managed: is_external(ca.id),
        });
    }
    Ok(Report {
        certificates,
        authorities,
    })
}

/// A kubelet certificate: not part of kubeadm's report, shown with `--kubelet-dir`.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeletRow {
    pub name: &'static str,
    pub path: std::path::PathBuf,
    pub not_after: Option<OffsetDateTime>,
    /// "ca", "self-signed", or "unknown" (signed by something else).
    pub issuer: &'static str,
}

/// The kubelet's own certificates: its rotated client certificate (what kubelet.conf points
/// at after bootstrap), its serving certificate, and kubelet.conf's embedded one if any.
pub fn collect_kubelet(layout: &Layout, kubelet_dir: &std::path::Path) -> Result<Vec<KubeletRow>> {
    let ca = files::read_cert(&layout.ca_cert(inventory::ca(CaId::Ca)))
        .ok()
        .flatten();
    let issuer = |c: &Certificate| -> &'static str {
        if ca.as_ref().is_some_and(|ca| c.is_signed_by(ca)) {
            "ca"
        } else if c.is_self_issued() && c.is_signed_by(c) {
            "self-signed"
        } else {
            "unknown"
        }
    };
    let mut rows = Vec::new();
    let pki = kubelet_dir.join("pki");
    for (name, file, always) in [
        ("kubelet-client", "kubelet-client-current.pem", true),
        ("kubelet-serving", "kubelet-server-current.pem", false),
        ("kubelet-serving", "kubelet.crt", false),
    ] {
        let path = pki.join(file);
        match files::read_cert_with_key(&path)? {
            Some(c) => rows.push(KubeletRow {
                name,
                path,
                not_after: Some(c.not_after),
                issuer: issuer(&c),
            }),
            None if always => rows.push(KubeletRow {
                name,
                path,
                not_after: None,
                issuer: "",
            }),
            None => {}
        }
    }
    let kc = layout.kubeconfig(inventory::kubeconfig("kubelet.conf").expect("in the inventory"));
    if crate::fsio::exists(&kc)? {
        let creds = kubeconfig::read_credentials(&kc);
        if let Ok(c) = creds
            && c.cert_source == kubeconfig::Source::Embedded
            && let Ok(chain) = c.client_chain()
        {
            rows.push(KubeletRow {
                name: "kubelet.conf",
                path: kc,
                not_after: Some(chain[0].not_after),
                issuer: issuer(&chain[0]),
            });
        }
    }
    Ok(rows)
}

/// The kubelet table, in kubeadm's tabwriter style, appended after kubeadm's two tables.
pub fn kubelet_text(rows: &[KubeletRow], now: OffsetDateTime) -> String {
    let mut lines = String::from(
        "\nKUBELET CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tFILE\n",
    );
    for r in rows {
        match r.not_after {
            None => lines.push_str(&format!(
                "!MISSING! {}\t\t\t\t{}\n",
                r.name,
                r.path.display()
            )),
            Some(t) => lines.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                r.name,
                format_date(t),
                crate::format::duration::human((t - now).whole_seconds()),
                r.issuer,
                r.path.display()
            )),
        }
    }
    let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
    tw.write_all(lines.as_bytes()).expect("writing to a Vec");
    String::from_utf8(tw.into_inner().expect("flushing to a Vec")).expect("UTF-8")
}

/// JSON/YAML entries for the kubelet view.
#[derive(Serialize, Debug)]
pub struct KubeletEntry {
    pub name: String,
    pub path: String,
    #[serde(rename = "expirationDate")]
    pub expiration_date: Option<String>,
    #[serde(rename = "residualTime")]
    pub residual_time: i64,
    #[serde(rename = "caName")]
    pub ca_name: String,
    pub missing: bool,
}

pub fn kubelet_entries(rows: &[KubeletRow], now: OffsetDateTime) -> Vec<KubeletEntry> {
    rows.iter()
        .map(|r| KubeletEntry {
            name: r.name.to_string(),
            path: r.path.display().to_string(),
            expiration_date: r.not_after.map(rfc3339_utc),
            residual_time: r.not_after.map(|t| (t - now).whole_seconds()).unwrap_or(0),
            ca_name: r.issuer.to_string(),
            missing: r.not_after.is_none(),
        })
        .collect()
}

/// super-admin.conf arrived in Kubernetes 1.29. When the version is unknown, a cluster whose
/// admin.conf is still in system:masters predates it, so its absence is not news.
fn super_admin_expected(layout: &Layout, scope: Scope) -> Result<bool> {
    if let Some(v) = scope.kubernetes_version {
        return Ok(v.at_least(1, 29));
    }
    let admin: Item = inventory::kubeconfig("admin.conf").expect("admin.conf is in the inventory");
    match admin.read_cert(layout)? {
        Some(c) => Ok(!c.organizations.iter().any(|o| o == "system:masters")),
        None => Ok(true),
    }
}

impl Report {
    /// kubeadm's two tables: Go's `tabwriter.NewWriter(out, 10, 4, 3, ' ', 0)`.
    pub fn to_text(&self, now: OffsetDateTime) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        // Go sizes a column as max(minwidth, text+padding); the tabwriter crate as
        // max(minwidth, text)+padding. minwidth 7 here is Go's 10.
        let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
        let mut lines = String::new();
        lines.push_str(
            "CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED\n",
        );
        for r in &self.certificates {
            match r.not_after {
                None => lines.push_str(&format!("!MISSING! {}\t\t\t\t\n", r.name)),
                Some(t) => lines.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{:<8}\n",
                    r.name,
                    format_date(t),
                    crate::format::duration::human(r.residual_seconds(now)),
                    r.ca_name.unwrap_or(""),
                    yes_no(r.externally_managed)
                )),
            }
        }
        lines.push('\n');
        lines.push_str("CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED\n");
        for r in &self.authorities {
            match r.not_after {
                None => lines.push_str(&format!("!MISSING! {}\t\t\t\n", r.name)),
                Some(t) => lines.push_str(&format!(
                    "{}\t{}\t{}\t{:<8}\n",
                    r.name,
                    format_date(t),
                    crate::format::duration::human(r.residual_seconds(now)),
                    yes_no(r.externally_managed)
                )),
            }
        }
        tw.write_all(lines.as_bytes()).expect("writing to a Vec");
        let out = tw.into_inner().expect("flushing to a Vec");
        String::from_utf8(out).expect("all input was UTF-8")
    }

    /// The `output.kubeadm.k8s.io/v1alpha3` object.
    pub fn to_info(&self, now: OffsetDateTime) -> ExpirationInfo {
        let entry = |r: &Row| Entry {
            name: r.name.to_string(),
            expiration_date: r.not_after.map(rfc3339_utc),
            residual_time: r.residual_seconds(now),
            ca_name: r.ca_name.map(str::to_string),
            externally_managed: r.externally_managed,
            missing: r.missing(),
        };
        ExpirationInfo {
            kind: "CertificateExpirationInfo",
            api_version: "output.kubeadm.k8s.io/v1alpha3",
            certificates: self.certificates.iter().map(entry).collect(),
            certificate_authorities: self.authorities.iter().map(entry).collect(),
            kubelet_certificates: None,
        }
    }
}

/// Field order follows kubeadm's Go struct, which JSON output preserves.
#[derive(Serialize, Debug)]
pub struct ExpirationInfo {
    pub kind: &'static str,
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub certificates: Vec<Entry>,
    #[serde(rename = "certificateAuthorities")]
    pub certificate_authorities: Vec<Entry>,
    /// kubepki's addition, present only with `--kubelet-dir`.
    #[serde(
        rename = "kubeletCertificates",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubelet_certificates: Option<Vec<KubeletEntry>>,
}

#[derive(Serialize, Debug)]
pub struct Entry {
    pub name: String,
    #[serde(rename = "expirationDate")]
    pub expiration_date: Option<String>,
    #[serde(rename = "residualTime")]
    pub residual_time: i64,
    #[serde(rename = "caName", skip_serializing_if = "Option::is_none")]
    pub ca_name: Option<String>,
    #[serde(rename = "externallyManaged")]
    pub externally_managed: bool,
    pub missing: bool,
}

impl ExpirationInfo {
    /// `json.MarshalIndent(obj, "", "    ")` plus a newline, as kubeadm's JSON printer.
    pub fn to_json(&self) -> String {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        self.serialize(&mut ser).expect("serializing to a Vec");
        buf.push(b'\n');
        String::from_utf8(buf).expect("JSON is UTF-8")
    }

    /// sigs.k8s.io/yaml goes through JSON and a map, so keys come out sorted.
    pub fn to_yaml(&self) -> String {
        let v = serde_json::to_value(self).expect("serializing to a Value");
        crate::format::yaml::to_string_sorted(&v).expect("a Value always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn fixture_layout() -> Layout {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/kubeadm-v1.20.2");
        Layout::new(base.join("pki"), base)
    }

    /// At an instant inside the window when kubeadm ran, the rows equal kubeadm's own output,
    /// except the CA column of kubeconfig rows (blank in 1.20, "ca" in current kubeadm).
    #[test]
    fn fixture_matches_kubeadm_check_expiration() {
        let scope = Scope {
            local_etcd: true,
            kubernetes_version: None,
        };
        let report = collect(&fixture_layout(), scope).unwrap();
        let now = datetime!(2026-11-22 18:00 UTC);
        let ours = report.to_text(now);
        let theirs =
            std::fs::read_to_string(fixture_layout().kubeconfig_dir.join("check-expiration.txt"))
                .unwrap();
        // Blank the CA column of kubeconfig rows in our output; nothing else may differ.
        let col = ours.find("CERTIFICATE AUTHORITY").unwrap();
        let normalized: String = ours
            .split_inclusive('\n')
            .map(|l| {
                if l.split_whitespace()
                    .next()
                    .is_some_and(|n| n.ends_with(".conf"))
                {
                    assert_eq!(&l[col..col + 4], "ca  ", "{l}");
                    format!("{}  {}", &l[..col], &l[col + 2..])
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert_eq!(normalized, theirs);
        assert!(ours.contains("admin.conf                 Nov 22, 2027 16:10 UTC   364d            ca                      no      \n"));
    }

    #[test]
    fn json_and_yaml_have_kubeadm_shape() {
        let mut report = collect(
            &fixture_layout(),
            Scope {
                local_etcd: true,
                kubernetes_version: Some(KubeVersion {
                    major: 1,
                    minor: 31,
                }),
            },
        )
        .unwrap();
        // 1.31 lists super-admin.conf, missing in a 1.20 PKI.
        assert!(
            report
                .certificates
                .iter()
                .any(|r| r.name == "super-admin.conf" && r.missing())
        );
        report.certificates.truncate(1);
        report.authorities.truncate(1);
        let info = report.to_info(datetime!(2026-11-22 18:00 UTC));
        let json = info.to_json();
        assert_eq!(
            json,
            r#"{
    "kind": "CertificateExpirationInfo",
    "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
    "certificates": [
        {
            "name": "admin.conf",
            "expirationDate": "2027-11-22T16:10:20Z",
            "residualTime": 31529420,
            "caName": "ca",
            "externallyManaged": false,
            "missing": false
        }
    ],
    "certificateAuthorities": [
        {
            "name": "ca",
            "expirationDate": "2036-11-19T16:10:15Z",
            "residualTime": 315353415,
            "externallyManaged": false,
            "missing": false
        }
    ]
}
"#
        );
        assert_eq!(
            info.to_yaml(),
            r#"apiVersion: output.kubeadm.k8s.io/v1alpha3
certificateAuthorities:
- expirationDate: "2036-11-19T16:10:15Z"
  externallyManaged: false
  missing: false
  name: ca
  residualTime: 315353415
certificates:
- caName: ca
  expirationDate: "2027-11-22T16:10:20Z"
  externallyManaged: false
  missing: false
  name: admin.conf
  residualTime: 31529420
kind: CertificateExpirationInfo
"#
        );
    }

    #[test]
    fn missing_rows_and_dates() {
        let r = Report {
            certificates: vec![Row {
                name: "apiserver",
                not_after: None,
                ca_name: Some("ca"),
                externally_managed: false,
            }],
            authorities: vec![Row {
                name: "ca",
                not_after: None,
                ca_name: None,
                externally_managed: false,
            }],
        };
        let text = r.to_text(datetime!(2026-01-01 0:00 UTC));
        // Column widths: max(10, widest cell + 3), blank cells included.
        let want = format!(
            "CERTIFICATE{}EXPIRES   RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED\n\
             !MISSING! apiserver{}\n\n\
             CERTIFICATE AUTHORITY   EXPIRES   RESIDUAL TIME   EXTERNALLY MANAGED\n\
             !MISSING! ca{}\n",
            " ".repeat(22 - 11),
            " ".repeat(3 + 10 + 16 + 24),
            " ".repeat(12 + 10 + 16)
        );
        assert_eq!(text, want);
        let info = r.to_info(datetime!(2026-01-01 0:00 UTC));
        assert!(info.to_json().contains("\"expirationDate\": null"));
        assert_eq!(
            format_date(datetime!(2027-03-04 05:06:07 UTC)),
            "Mar 04, 2027 05:06 UTC"
        );
    }
}
