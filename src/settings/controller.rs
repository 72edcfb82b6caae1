//! `kubepki controller` and `kubepki csr ...`: the flags, and the pod's environment where a
//! flag is absent, into a `kubepki_controller::controller::Config` and the rules' `Policy`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use kubepki_controller::controller::{Config, LeaderElection};
use kubepki_controller::lease::Timing;
use kubepki_controller::rules::Policy;
use kubepki_controller::sign::SigningCa;
use time::OffsetDateTime;

use crate::cli::{
    ControllerArgs, CsrApproveArgs, CsrListArgs, KubeClientArgs, LogFormat, OutputFormat,
    PolicyArgs,
};

/// `kubepki controller`.
pub struct Controller {
    pub client: KubeClientArgs,
    pub log_format: LogFormat,
    pub config: Config,
}

impl Controller {
    /// The signing CA is loaded here (with `--sign`), so that a CA that cannot sign stops the
    /// controller before it starts.
    pub fn resolve(args: ControllerArgs, now: OffsetDateTime) -> Result<Controller> {
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
        // The flag, else what the pod's downward API gives, else something unique here.
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
        Ok(Controller {
            client: args.client,
            log_format: args.log_format,
            config: Config {
                policy,
                no_deny: args.no_deny,
                signing,
                identity,
                leader_election,
                metrics_addr,
                health_addr,
                concurrency: args.concurrency,
            },
        })
    }
}

/// ":8080" means every interface, as controller-runtime reads it; "0" disables.
pub(crate) fn bind_address(flag: &str, s: &str) -> Result<Option<SocketAddr>> {
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

fn policy(args: &PolicyArgs) -> Result<Policy> {
    let p = Policy {
        max_expiration_seconds: i64::try_from(args.max_expiration.as_secs()).unwrap_or(i64::MAX),
        extra_dns_patterns: args.allowed_dns_patterns.clone(),
        ..Policy::default()
    };
    p.validate().map_err(|e| anyhow!(e))?;
    Ok(p)
}

/// `kubepki csr list`.
pub struct CsrList {
    pub client: KubeClientArgs,
    pub policy: Policy,
    /// Decided requests too.
    pub all: bool,
    pub output: OutputFormat,
}

impl CsrList {
    pub fn resolve(args: CsrListArgs) -> Result<CsrList> {
        Ok(CsrList {
            policy: policy(&args.policy)?,
            client: args.client,
            all: args.all,
            output: args.output,
        })
    }
}

/// `kubepki csr approve`.
pub struct CsrApprove {
    pub client: KubeClientArgs,
    pub policy: Policy,
    pub names: Vec<String>,
    pub force: bool,
}

impl CsrApprove {
    pub fn resolve(args: CsrApproveArgs) -> Result<CsrApprove> {
        Ok(CsrApprove {
            policy: policy(&args.policy)?,
            client: args.client,
            names: args.names,
            force: args.force,
        })
    }
}
