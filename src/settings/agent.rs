//! `kubepki agent`: the flags, and the pod's environment where a flag is absent, into a
//! `kubepki_agent::run::Config`.

use std::ffi::OsString;

use anyhow::{Context, Result, bail};
use kubepki_agent::decide::Settings as Renewal;
use kubepki_agent::run::Config;
use kubepki_controller::lease::Timing;
use kubepki_pki::ops::scan::Watch;

use super::Pki;
use super::controller::bind_address;
use crate::cli::{AgentArgs, KubeClientArgs, LogFormat};

pub struct Agent {
    /// None with --no-api.
    pub client: Option<KubeClientArgs>,
    pub log_format: LogFormat,
    pub config: Config,
}

impl Agent {
    pub fn resolve(args: AgentArgs) -> Result<Agent> {
        let pki = Pki::resolve(&args.dirs)?;
        let node_name = match args
            .node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
        {
            Some(n) if !n.is_empty() => n,
            _ => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .context("--node-name not given, $NODE_NAME not set, and no hostname")?,
        };
        if args.check_interval.is_zero() {
            bail!("--check-interval must be more than 0");
        }
        if args.event_thresholds.iter().any(|t| t.is_zero()) {
            bail!("--event-thresholds: every threshold must be more than 0");
        }
        if args.renew_before.is_some_and(|d| d.is_zero()) {
            bail!("--renew-before must be more than 0 (leave it out to turn renewal off)");
        }
        // `certs renew`'s default validity, unless --validity says otherwise.
        let validity = args
            .validity
            .unwrap_or(std::time::Duration::from_secs(365 * 24 * 3600));
        if let Some(b) = args.renew_before
            && b >= validity
        {
            bail!(
                "--renew-before {}s is not shorter than the validity of renewed certificates ({}s): every renewal would be due again at once",
                b.as_secs(),
                validity.as_secs()
            );
        }
        let metrics_addr = bind_address("--metrics-bind-address", &args.metrics_bind_address)?;
        // Renewal is `kubepki certs renew` run by this very binary, in its own process: the
        // same journaled, backed-up renewal and one-at-a-time restarts as the CLI.
        let exe = std::env::current_exe().context("cannot find the kubepki binary itself")?;
        let l = &pki.layout;
        let mut renew: Vec<OsString> = vec![
            exe.into(),
            "certs".into(),
            "renew".into(),
            "all".into(),
            "--cert-dir".into(),
            l.cert_dir.clone().into(),
            "--kubeconfig-dir".into(),
            l.kubeconfig_dir.clone().into(),
        ];
        if let Some(c) = &args.dirs.config {
            renew.extend(["--config".into(), c.clone().into()]);
        }
        if let Some(v) = args.validity {
            renew.extend(["--validity".into(), format!("{}s", v.as_secs()).into()]);
        }
        if args.restart_static_pods {
            renew.extend([
                "--restart-static-pods".into(),
                "--manifests-dir".into(),
                args.manifests_dir.clone().into(),
            ]);
        }
        // client-go's proportions (15s/10s/2s), scaled to the lease duration.
        let d = args.lease_duration;
        let timing = Timing {
            lease_duration: d,
            renew_deadline: d.mul_f64(0.8),
            retry_period: (d / 15).max(std::time::Duration::from_millis(500)),
        };
        timing.validate().map_err(|e| {
            anyhow::anyhow!(e.replace("--leader-elect-lease-duration", "--lease-duration"))
        })?;
        Ok(Agent {
            client: (!args.no_api).then(|| args.client.clone()),
            log_format: args.log_format,
            config: Config {
                node_name,
                watch: Watch {
                    layout: pki.layout.clone(),
                    kubelet_pki_dir: args.kubelet_pki_dir,
                    files: args.watch_files,
                    dirs: args.watch_dirs,
                },
                metrics_addr,
                check_interval: args.check_interval,
                thresholds: args.event_thresholds,
                flags: Renewal {
                    renew_before: args.renew_before,
                    paused_by: args.pause_renewal.then(|| "--pause-renewal".to_string()),
                },
                settle: args.settle_time,
                renew_command: renew,
                renew_timeout: args.renew_timeout,
                validity,
                namespace: args
                    .namespace
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "kubepki-system".into()),
                config_map: args.config_map,
                lease: args.lease_name,
                lease_timing: timing,
                expose_relative: args.expose_relative_metrics,
            },
        })
    }
}
