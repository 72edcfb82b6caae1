//! `kubepki ca rotate ...`: the step, its targets and where the new CAs come from.

use std::path::PathBuf;

use anyhow::{Result, bail};
use kubepki_pki::model::layout::Layout;
use kubepki_pki::model::params::{DEFAULT_CA_VALIDITY, DEFAULT_CERT_VALIDITY};
use kubepki_pki::ops::rotate::{NewMaterial, Step, Target};

use super::certs::restart_options;
use super::{BackupDir, Pki, pick};
use crate::cli::{OutputFormat, RotateArgs, RotateKubeletArgs, RotateStatusArgs, RotateTokensArgs};
use crate::restart;

/// Where the new CAs of a trust step come from, before the PKI is read.
pub enum Source {
    Generate,
    Files { cert: PathBuf, key: Option<PathBuf> },
    Archive { path: PathBuf, key: String },
}

pub struct Rotate {
    pub layout: Layout,
    pub step: Step,
    pub targets: Vec<Target>,
    pub source: Source,
    pub export: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
    pub validity: std::time::Duration,
    pub ca_validity: std::time::Duration,
    pub force: bool,
    pub kubelet_dir: PathBuf,
    pub backup_dir: BackupDir,
    pub wait: bool,
    pub dry_run: bool,
    pub output: OutputFormat,
    pub restart: Option<restart::Options>,
    /// `--kubeconfig`, and this node's name in the cluster's record.
    pub cluster: Option<(PathBuf, String)>,
}

impl Rotate {
    pub fn resolve(step: Step, args: RotateArgs) -> Result<Rotate> {
        let Pki { layout, config: c } = Pki::resolve(&args.dirs)?;
        let targets = targets(&args.targets, !c.external_etcd)?;
        let only_trust = |flag: &str| -> Result<()> {
            if step != Step::Trust {
                bail!("{flag} applies to `ca rotate trust` only");
            }
            Ok(())
        };
        let source = if let Some(cert) = args.new_ca_cert {
            only_trust("--new-ca-cert")?;
            if targets.len() != 1 || targets[0] == Target::Sa {
                bail!(
                    "--new-ca-cert names the new CA of one CA: name exactly one of ca, front-proxy-ca, etcd-ca"
                );
            }
            Source::Files {
                cert,
                key: args.new_ca_key,
            }
        } else if let Some(path) = args.import {
            only_trust("--import")?;
            Source::Archive {
                path,
                key: args.certificate_key.unwrap_or_default(),
            }
        } else {
            Source::Generate
        };
        if args.export.is_some() {
            only_trust("--export")?;
        }
        if args.ca_bundle.is_some() && !(args.targets == ["ca"] || args.targets == ["all"]) {
            bail!("--ca-bundle updates a worker's trust of the cluster CA: name `ca` (or `all`)");
        }
        let cluster = match args.kubeconfig {
            Some(k) => Some((
                k,
                match args.node_name {
                    Some(n) => n,
                    None => crate::detect::node_name()?,
                },
            )),
            None => None,
        };
        Ok(Rotate {
            cluster,
            restart: restart_options(&args.restart, &layout, args.output != OutputFormat::Text),
            layout,
            step,
            targets,
            source,
            export: args.export,
            ca_bundle: args.ca_bundle,
            validity: pick(args.validity, c.cert_validity, || DEFAULT_CERT_VALIDITY),
            ca_validity: pick(args.ca_validity, c.ca_validity, || DEFAULT_CA_VALIDITY),
            force: args.force,
            kubelet_dir: args.kubelet_dir,
            backup_dir: BackupDir::resolve(args.backup_dir, BackupDir::Timestamped),
            wait: args.wait,
            dry_run: args.dry_run,
            output: args.output,
        })
    }

    pub fn material(&self) -> NewMaterial {
        match &self.source {
            Source::Files { cert, key } => NewMaterial::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => NewMaterial::Generate,
        }
    }
}

/// `all` (every target; etcd-ca only with local etcd), alone, or target names, each once.
fn targets(names: &[String], local_etcd: bool) -> Result<Vec<Target>> {
    if names.iter().any(|n| n == "all") {
        if names.len() > 1 {
            bail!("`all` cannot be combined with other names");
        }
        return Ok(Target::ALL
            .into_iter()
            .filter(|t| local_etcd || *t != Target::EtcdCa)
            .collect());
    }
    let mut out = Vec::new();
    for n in names {
        let Some(t) = Target::parse(n) else {
            bail!("unknown rotation target {n:?}: use all, ca, front-proxy-ca, etcd-ca or sa");
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out.sort();
    Ok(out)
}

pub struct RotateStatus {
    pub layout: Layout,
    pub kubelet_dir: PathBuf,
    pub output: OutputFormat,
}

impl RotateStatus {
    pub fn resolve(args: RotateStatusArgs) -> Result<RotateStatus> {
        let Pki { layout, .. } = Pki::resolve(&args.dirs)?;
        Ok(RotateStatus {
            layout,
            kubelet_dir: args.kubelet_dir,
            output: args.output,
        })
    }
}

pub struct RotateKubelet {
    pub layout: Layout,
    pub kubelet_dir: PathBuf,
    pub wait: bool,
}

impl RotateKubelet {
    pub fn resolve(args: RotateKubeletArgs) -> Result<RotateKubelet> {
        let Pki { layout, .. } = Pki::resolve(&args.dirs)?;
        Ok(RotateKubelet {
            layout,
            kubelet_dir: args.kubelet_dir,
            wait: args.wait,
        })
    }
}

pub struct RotateTokens {
    pub layout: Layout,
    pub kubeconfig: PathBuf,
    pub timeout: std::time::Duration,
    pub dry_run: bool,
}

impl RotateTokens {
    pub fn resolve(args: RotateTokensArgs) -> Result<RotateTokens> {
        let Pki { layout, .. } = Pki::resolve(&args.dirs)?;
        Ok(RotateTokens {
            layout,
            kubeconfig: args.kubeconfig,
            timeout: args.timeout,
            dry_run: args.dry_run,
        })
    }
}
