//! `kubepki audit`: reads the cluster and this machine's files, runs the checks of
//! kubepki-audit on them, prints the report and exits by `--fail-on`. It changes nothing.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kubepki_audit::cluster::{self, ClusterAudit};
use kubepki_audit::node::{LocalNode, NodeOptions, kubelet_settings};
use kubepki_audit::report::{Report, Skipped, exit_code};
use kubepki_audit::{Finding, pki};
use kubepki_pki::crypto::files;
use kubepki_pki::model::inventory::{self, CaId};
use time::OffsetDateTime;

use super::csr::{client, runtime};
use crate::cli::AuditFormat;
use crate::out::errln;
use crate::settings::audit::{Audit, Local};

/// Exit status when the audit itself could not be made, apart from 1 (findings at --fail-on).
const CANNOT_AUDIT: u8 = 2;

/// Where the runtime of a kubeadm node listens when the kubelet's configuration does not say.
const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

pub fn run(a: &Audit, now: OffsetDateTime) -> Result<ExitCode> {
    let report = match audit(a, now) {
        Ok(report) => report,
        Err(e) => {
            errln!("error: {}", crate::error_chain(&e));
            return Ok(ExitCode::from(CANNOT_AUDIT));
        }
    };
    let text = match a.format {
        AuditFormat::Text => report.to_text(),
        AuditFormat::Json => report.to_json(),
        AuditFormat::Sarif => report.to_sarif(),
    };
    // The report is the product: one that cannot be written is a failed audit, not a pass.
    if let Err(e) = crate::out::data(text.as_bytes()) {
        errln!("error: {e:#}");
        return Ok(ExitCode::from(CANNOT_AUDIT));
    }
    Ok(ExitCode::from(exit_code(&report, a.fail_on)))
}

fn audit(a: &Audit, now: OffsetDateTime) -> Result<Report> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut skipped = Vec::new();
    let mut scale = None;
    let mut versions = None;
    if a.reads_cluster() {
        let got = read_cluster(a)?;
        findings.extend(got.findings);
        scale = got.scale;
        versions = Some((got.api_server_version, got.kubelet_versions));
    }
    if let Some(local) = &a.pki {
        match present(local, "pki", "the cert dir")? {
            None => {
                // Findings name files by absolute path: they are read by people and tools
                // (SARIF) that did not run the audit from this directory.
                let layout = a.layout.absolute().with_context(|| {
                    format!(
                        "{}: cannot resolve the cert dir",
                        a.layout.cert_dir.display()
                    )
                })?;
                findings.extend(pki::check(&layout, now, &a.policy));
                // The kubelet's serving certificate, judged against the cluster CA.
                let ca = files::read_cert(&layout.ca_cert(inventory::ca(CaId::Ca)))
                    .ok()
                    .flatten();
                let kubelet_pki = std::path::absolute(a.kubelet_dir.join("pki"))
                    .context("cannot resolve the kubelet dir")?;
                findings.extend(pki::kubelet_serving(
                    &kubelet_pki,
                    ca.as_ref(),
                    now,
                    &a.policy,
                ));
            }
            Some(s) => skipped.push(s),
        }
    }
    if let Some(local) = &a.node {
        match present(local, "node", "the kubelet dir")? {
            None => {
                let (settings, found) = kubelet_settings(&local.dir);
                findings.extend(found);
                let node = LocalNode::new(&a.node_name, &a.node_root);
                let options = NodeOptions {
                    fail_swap_on: settings.fail_swap_on.unwrap_or(true),
                    runtime_endpoint: Some(
                        a.runtime_endpoint
                            .clone()
                            .or(settings.runtime_endpoint)
                            .unwrap_or_else(|| DEFAULT_RUNTIME_ENDPOINT.to_owned()),
                    ),
                    ..NodeOptions::default()
                };
                findings.extend(node.check(&options));
                match &versions {
                    Some((api, kubelets)) => match kubelets.get(&a.node_name) {
                        Some(kubelet) => findings.extend(node.skew(kubelet, api)),
                        None => skipped.push(Skipped {
                            check: "node",
                            reason: format!(
                                "the kubelet's version skew: the cluster has no node {:?} \
                                 (pass --node-name)",
                                a.node_name
                            ),
                        }),
                    },
                    None => skipped.push(Skipped {
                        check: "node",
                        reason: "the kubelet's version skew: the cluster was not read (add \
                                 scale, zones or pss to --checks)"
                            .to_owned(),
                    }),
                }
            }
            Some(s) => skipped.push(s),
        }
    }
    let mut report = Report::new(findings);
    report.scale = scale;
    report.skipped = skipped;
    Ok(report)
}

/// `None` when the check can run on `local.dir`; a note why not when it was left to the
/// default and its directory is absent (this machine is not that kind of node); an error when
/// it was asked for and cannot run.
fn present(local: &Local, check: &'static str, what: &str) -> Result<Option<Skipped>> {
    match std::fs::metadata(&local.dir) {
        Ok(m) if m.is_dir() => Ok(None),
        Ok(_) => bail!("{}: {what} is not a directory", local.dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !local.asked => Ok(Some(Skipped {
            check,
            reason: format!(
                "{} does not exist: not this kind of node (name the directory, or the check \
                 in --checks, to require it)",
                local.dir.display()
            ),
        })),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read {what}", local.dir.display())),
    }
}

/// The cluster's checks, with a progress line on a terminal.
fn read_cluster(a: &Audit) -> Result<ClusterAudit> {
    // One line rewritten in place, on a terminal only: cron and CI logs stay clean.
    let tty = std::io::stderr().is_terminal();
    let progress = move |resource: &'static str, n: u64| {
        if tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K[audit] read {n} {resource}");
        }
    };
    let read = runtime()?.block_on(async {
        let client = client(&a.client).await.context(
            "cannot reach the cluster for its checks (to audit only this machine's files: \
             --checks pki,node)",
        )?;
        cluster::audit(client, &a.cluster, &progress)
            .await
            .context("cannot audit the cluster")
    });
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
    read
}
