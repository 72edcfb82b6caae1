//! `kubepki certs ...`: the PKI's directories, the config file's cluster facts, and the
//! request each command hands the library.

use std::path::PathBuf;

use anyhow::Result;
use kubepki_pki::model::layout::Layout;
use kubepki_pki::model::params::DEFAULT_CERT_VALIDITY;
use kubepki_pki::ops::expiry::Scope;
use kubepki_pki::ops::renew::{ExtraSans, Request};

use super::{BackupDir, Pki, nonempty, pick, selection};
use crate::cli::{
    CheckExpirationArgs, ImportArgs, OutputFormat, RecoverArgs, RenewArgs, RestartArgs, RestoreArgs,
};
use crate::restart;

/// `kubepki certs check-expiration`.
pub struct CheckExpiration {
    pub layout: Layout,
    pub scope: Scope,
    pub output: OutputFormat,
    pub kubelet_dir: Option<PathBuf>,
}

impl CheckExpiration {
    pub fn resolve(args: CheckExpirationArgs) -> Result<CheckExpiration> {
        let Pki { layout, config } = Pki::resolve(&args.dirs)?;
        Ok(CheckExpiration {
            layout,
            scope: Scope {
                local_etcd: !config.external_etcd,
                kubernetes_version: config.kubernetes_version,
            },
            output: args.output,
            kubelet_dir: args.kubelet_dir,
        })
    }
}

/// `kubepki certs renew`.
pub struct Renew {
    pub layout: Layout,
    /// Validated ([`Request::validate`]).
    pub request: Request,
    pub backup_dir: BackupDir,
    pub wait: bool,
    pub dry_run: bool,
    /// With `--restart-static-pods`: how.
    pub restart: Option<restart::Options>,
}

impl Renew {
    /// The validity is `--validity`, else `certificateValidityPeriod`, else a year; the key
    /// algorithm `--encryption-algorithm`, else `encryptionAlgorithm`, else each certificate's
    /// own; the SANs added are `--add-sans` and then the config's for that certificate.
    pub fn resolve(args: RenewArgs) -> Result<Renew> {
        let Pki { layout, config: c } = Pki::resolve(&args.dirs)?;
        let with = |config: Vec<String>| -> Vec<String> {
            nonempty(&args.add_sans).chain(config).collect()
        };
        let request = Request {
            selection: selection(&args.names)?,
            expiring_within: args.expiring_within,
            validity: pick(args.validity, c.cert_validity, || DEFAULT_CERT_VALIDITY),
            extra_sans: ExtraSans {
                apiserver: with(c.apiserver_cert_sans),
                etcd_server: with(c.etcd_server_cert_sans),
                etcd_peer: with(c.etcd_peer_cert_sans),
            },
            key_algorithm: args.encryption_algorithm.or(c.encryption_algorithm),
            local_etcd: !c.external_etcd,
        };
        request.validate()?;
        let restart = restart_options(&args.restart, &layout, false);
        Ok(Renew {
            layout,
            request,
            backup_dir: BackupDir::resolve(args.backup_dir, BackupDir::Timestamped),
            wait: args.wait,
            dry_run: args.dry_run,
            restart,
        })
    }
}

pub(super) fn restart_options(
    args: &RestartArgs,
    layout: &Layout,
    progress_to_stderr: bool,
) -> Option<restart::Options> {
    args.restart_static_pods.then(|| restart::Options {
        progress_to_stderr,
        manifests_dir: args.manifests_dir.clone(),
        hold_dir: restart::hold_dir(&layout.kubeconfig_dir),
        file_check_frequency: args.file_check_frequency,
        timeout: args.restart_timeout,
    })
}

/// `kubepki certs restore`.
pub struct Restore {
    pub layout: Layout,
    /// The backup to put back.
    pub backup: PathBuf,
    /// Where what it replaces goes.
    pub backup_dir: BackupDir,
    pub wait: bool,
    pub dry_run: bool,
}

impl Restore {
    pub fn resolve(args: RestoreArgs) -> Result<Restore> {
        let Pki { layout, .. } = Pki::resolve(&args.dirs)?;
        let default = BackupDir::BeforeRestore(args.backup.clone());
        Ok(Restore {
            layout,
            backup: args.backup,
            backup_dir: BackupDir::resolve(args.backup_dir, default),
            wait: args.wait,
            dry_run: args.dry_run,
        })
    }
}

/// `kubepki certs recover`.
pub struct Recover {
    pub layout: Layout,
    pub wait: bool,
}

impl Recover {
    pub fn resolve(args: RecoverArgs) -> Result<Recover> {
        let Pki { layout, .. } = Pki::resolve(&args.dirs)?;
        Ok(Recover {
            layout,
            wait: args.wait,
        })
    }
}

/// `kubepki certs import`.
pub struct Import {
    pub layout: Layout,
    /// False when the config file names an external etcd.
    pub local_etcd: bool,
    pub csr_dir: Option<PathBuf>,
    pub backup_dir: BackupDir,
    pub wait: bool,
    pub dry_run: bool,
}

impl Import {
    pub fn resolve(args: ImportArgs) -> Result<Import> {
        let Pki { layout, config } = Pki::resolve(&args.dirs)?;
        Ok(Import {
            layout,
            local_etcd: !config.external_etcd,
            csr_dir: args.csr_dir,
            backup_dir: BackupDir::resolve(args.backup_dir, BackupDir::Timestamped),
            wait: args.wait,
            dry_run: args.dry_run,
        })
    }
}
