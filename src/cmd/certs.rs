use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use kubepki_pki::expiry::{self, Scope};
use kubepki_pki::layout::Layout;
use time::OffsetDateTime;

use crate::cli::{CheckExpirationArgs, OutputFormat};

pub fn check_expiration(args: &CheckExpirationArgs, now: OffsetDateTime) -> Result<ExitCode> {
    let r = super::resolve(&args.dirs)?;
    let scope = Scope {
        local_etcd: !r.config.as_ref().is_some_and(|c| c.external_etcd),
        kubernetes_version: r.config.as_ref().and_then(|c| c.kubernetes_version),
    };
    let report = expiry::collect(&Layout::new(&r.cert_dir, &r.kubeconfig_dir), scope)?;
    let out = match args.output {
        OutputFormat::Text => report.to_text(now),
        OutputFormat::Json => report.to_info(now).to_json(),
        OutputFormat::Yaml => report.to_info(now).to_yaml(),
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
