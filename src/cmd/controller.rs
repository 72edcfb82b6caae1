//! `kubepki controller`: logging, then the controller with the `Config` the settings made.

use std::process::ExitCode;

use anyhow::Result;
use kubepki_controller::controller;

use super::csr::{client, runtime};
use crate::cli::LogFormat;
use crate::settings::controller::Controller;

/// RUST_LOG (default info) to stderr, as text or JSON.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: `kubectl logs` and journald show them raw.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Its own report of a failed write is an errln!, which panics on a broken stderr.
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub fn run(args: Controller) -> Result<ExitCode> {
    init_logging(args.log_format);
    runtime()?.block_on(async {
        let client = client(&args.client).await?;
        controller::run(client, args.config).await
    })?;
    Ok(ExitCode::SUCCESS)
}
