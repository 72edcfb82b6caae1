//! `kubepki controller`: flags to a `kubepki_controller::controller::Config`, then run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use kubepki_controller::controller::{self, LeaderElection};
use kubepki_controller::lease::Timing;
use kubepki_controller::sign::SigningCa;

use super::csr::{client, policy, runtime};
use crate::cli::{ControllerArgs, LogFormat};

/// ":8080" means every interface, as controller-runtime reads it; "0" disables.
fn bind_address(flag: &str, s: &str) -> Result<Option<SocketAddr>> {
    if s == "0" || s.is_empty() {
        return Ok(None);
    }
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map(Some)
        .map_err(|e| anyhow!("{flag} {s:?}: not HOST:PORT ({e})"))
}

pub fn run(args: &ControllerArgs, now: time::OffsetDateTime) -> Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its own report of a failed write is an errln!, which panics on a broken stderr.
        .log_internal_errors(false);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let policy = policy(&args.policy)?;
    let signing = if args.sign {
        let (c, k) = (
            args.ca_cert.as_deref().expect("clap requires --ca-cert"),
            args.ca_key.as_deref().expect("clap requires --ca-key"),
        );
        Some(Arc::new(
            SigningCa::load(c, k, args.signing_duration, now).map_err(|e| anyhow!(e))?,
        ))
    } else {
        None
    };
    let metrics_addr = bind_address("--metrics-bind-address", &args.metrics_bind_address)?;
    let health_addr = bind_address(
        "--health-probe-bind-address",
        &args.health_probe_bind_address,
    )?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into());
            format!("{host}-{}", std::process::id())
        })
    });
    let leader_election = args.leader_elect.then(|| LeaderElection {
        lease_name: args.leader_elect_resource_name.clone(),
        namespace: args
            .leader_elect_resource_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "kube-system".into()),
        timing: Timing {
            lease_duration: args.leader_elect_lease_duration,
            renew_deadline: args.leader_elect_renew_deadline,
            retry_period: args.leader_elect_retry_period,
        },
    });
    // Bad timings are a usage error at start-up, not a surprise at the first election.
    if let Some(le) = &leader_election {
        le.timing.validate().map_err(|e| anyhow!(e))?;
    }
    let cfg = controller::Config {
        policy,
        no_deny: args.no_deny,
        signing,
        identity,
        leader_election,
        metrics_addr,
        health_addr,
        concurrency: args.concurrency,
    };
    runtime()?.block_on(async {
        let client = client(&args.client).await?;
        controller::run(client, cfg).await
    })?;
    Ok(ExitCode::SUCCESS)
}
