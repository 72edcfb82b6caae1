use std::process::ExitCode;

use anyhow::Result;
use kubepki_pki::model::layout::Layout;
use kubepki_pki::ops::expiry::{self, Scope};
use time::OffsetDateTime;

use crate::cli::{CheckExpirationArgs, OutputFormat};
use crate::out::{errln, outln};

pub fn check_expiration(args: &CheckExpirationArgs, now: OffsetDateTime) -> Result<ExitCode> {
    let r = super::resolve(&args.dirs)?;
    let scope = Scope {
        local_etcd: !r.config.as_ref().is_some_and(|c| c.external_etcd),
        kubernetes_version: r.config.as_ref().and_then(|c| c.kubernetes_version),
    };
    let layout = Layout::new(&r.cert_dir, &r.kubeconfig_dir);
    if kubepki_pki::storage::session::interrupted(&layout) {
        errln!(
            "warning: an interrupted kubepki run left {}; `{}` (or any kubepki command that writes) finishes or undoes it",
            layout
                .cert_dir
                .join(kubepki_pki::storage::txn::JOURNAL)
                .display(),
            super::recover_command(&layout)
        );
    }
    let report = expiry::collect(&layout, scope)?;
    let kubelet = args
        .kubelet_dir
        .as_deref()
        .map(|d| expiry::collect_kubelet(&layout, d))
        .transpose()?;
    let out = match args.output {
        OutputFormat::Text => {
            let mut t = report.to_text(now);
            if let Some(k) = &kubelet {
                t.push_str(&expiry::kubelet_text(k, now));
            }
            t
        }
        OutputFormat::Json | OutputFormat::Yaml => {
            let mut info = report.to_info(now);
            info.kubelet_certificates = kubelet.as_deref().map(|k| expiry::kubelet_entries(k, now));
            if args.output == OutputFormat::Json {
                info.to_json()
            } else {
                info.to_yaml()
            }
        }
    };
    crate::out::data(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `certs recover`: a session opened and closed, nothing else.
pub fn recover(args: &crate::cli::RecoverArgs) -> Result<ExitCode> {
    let r = super::resolve(&args.dirs)?;
    let layout = Layout::new(&r.cert_dir, &r.kubeconfig_dir);
    let s = super::open_session(&layout, args.wait, false)?;
    let rec = s.recovery();
    if rec.outcome == kubepki_pki::storage::txn::Outcome::Clean && s.removed_backups().is_empty() {
        outln!(
            "[recover] nothing to recover in {}",
            s.layout().cert_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
