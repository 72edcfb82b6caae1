use std::process::ExitCode;

use anyhow::Result;
use kubepki_pki::ops::expiry;
use time::OffsetDateTime;

use crate::cli::OutputFormat;
use crate::out::{errln, outln};
use crate::settings::certs::{CheckExpiration, Recover};

pub fn check_expiration(args: &CheckExpiration, now: OffsetDateTime) -> Result<ExitCode> {
    let layout = &args.layout;
    if kubepki_pki::storage::session::interrupted(layout) {
        errln!(
            "warning: an interrupted kubepki run left {}; `{}` (or any kubepki command that writes) finishes or undoes it",
            layout
                .cert_dir
                .join(kubepki_pki::storage::txn::JOURNAL)
                .display(),
            super::recover_command(layout)
        );
    }
    let report = expiry::collect(layout, args.scope)?;
    let kubelet = args
        .kubelet_dir
        .as_deref()
        .map(|d| expiry::collect_kubelet(layout, d))
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
pub fn recover(args: &Recover) -> Result<ExitCode> {
    let s = super::open_session(&args.layout, args.wait, false)?;
    let rec = s.recovery();
    if rec.outcome == kubepki_pki::storage::txn::Outcome::Clean && s.removed_backups().is_empty() {
        outln!(
            "[recover] nothing to recover in {}",
            s.layout().cert_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
