//! Settings: the flags as clap parsed them ([`crate::cli`], the low level) resolved once into
//! what the commands and the library take (this module, the high level), as ripgrep turns its
//! `LowArgs` into `HiArgs`.
//!
//! Where a value comes from is decided here and nowhere else: a flag beats the kubeadm config
//! file given with `--config`, which beats kubeadm's default ([`pick`]). A command receives
//! its settings resolved and validated as far as can be without the PKI, and decides nothing
//! about precedence. What can only be known once the PKI is locked (the default backup
//! directory, the server of an existing kubeconfig) is a resolved *rule* here
//! ([`BackupDir`], [`kubeconfig::Server`]) that the command applies to its session.
//!
//! Resolution checks its inputs in the order the commands always did, so that the first
//! error reported is the same.

pub mod agent;
pub mod audit;
pub mod certs;
pub mod cluster;
pub mod controller;
pub mod kubeconfig;
pub mod rotate;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::{Result, bail};
use kubepki_pki::model::config::KubeadmConfig;
use kubepki_pki::model::layout::Layout;
use kubepki_pki::model::params::{DEFAULT_CERT_DIR, DEFAULT_KUBECONFIG_DIR};
use kubepki_pki::ops::renew::Selection;
use kubepki_pki::storage::session::Session;
use time::OffsetDateTime;

use crate::cli::{self, Cli, DirArgs};

/// Everything a run of kubepki needs, resolved.
pub struct Settings {
    /// `--now` (`KUBEPKI_NOW`), else the current time, at full precision: kubeadm computes
    /// residual time from the current instant, so a certificate issued a moment ago has 364d
    /// left, not 365d. Issued certificates carry whole seconds (X.509 times have no fraction).
    pub now: OffsetDateTime,
    pub command: Command,
}

/// One command's settings.
pub enum Command {
    Init(cluster::Init),
    CheckExpiration(certs::CheckExpiration),
    Renew(certs::Renew),
    Restore(certs::Restore),
    Recover(certs::Recover),
    GenerateCsr(cluster::GenerateCsr),
    Import(certs::Import),
    KubeconfigUser(kubeconfig::User),
    KubeconfigKubelet(kubeconfig::Kubelet),
    Controller(controller::Controller),
    CsrList(controller::CsrList),
    CsrApprove(controller::CsrApprove),
    Rotate(rotate::Rotate),
    RotateStatus(rotate::RotateStatus),
    RotateKubelet(rotate::RotateKubelet),
    RotateTokens(rotate::RotateTokens),
    Agent(agent::Agent),
    Audit(audit::Audit),
    Completion(clap_complete::Shell),
    Man(Option<std::path::PathBuf>),
}

impl Settings {
    /// Resolves the parsed command line; the first error is the one the user sees.
    pub fn resolve(cli: Cli) -> Result<Settings> {
        let now = cli.now.unwrap_or_else(OffsetDateTime::now_utc);
        use cli::{CertsCommand as C, Command as K, CsrCommand, KubeconfigCommand};
        let command = match cli.command {
            K::Init(a) => Command::Init(cluster::Init::resolve(a)?),
            K::Certs(C::CheckExpiration(a)) => {
                Command::CheckExpiration(certs::CheckExpiration::resolve(a)?)
            }
            K::Certs(C::Renew(a)) => Command::Renew(certs::Renew::resolve(a)?),
            K::Certs(C::Restore(a)) => Command::Restore(certs::Restore::resolve(a)?),
            K::Certs(C::Recover(a)) => Command::Recover(certs::Recover::resolve(a)?),
            K::Certs(C::GenerateCsr(a)) => Command::GenerateCsr(cluster::GenerateCsr::resolve(a)?),
            K::Certs(C::Import(a)) => Command::Import(certs::Import::resolve(a)?),
            K::Kubeconfig(KubeconfigCommand::User(a)) => {
                Command::KubeconfigUser(kubeconfig::User::resolve(a)?)
            }
            K::Kubeconfig(KubeconfigCommand::Kubelet(a)) => {
                Command::KubeconfigKubelet(kubeconfig::Kubelet::resolve(a)?)
            }
            K::Ca(cli::CaCommand::Rotate(r)) => {
                use kubepki_pki::ops::rotate::Step;
                match r {
                    cli::RotateCommand::Trust(a) => {
                        Command::Rotate(rotate::Rotate::resolve(Step::Trust, a)?)
                    }
                    cli::RotateCommand::Switch(a) => {
                        Command::Rotate(rotate::Rotate::resolve(Step::Switch, a)?)
                    }
                    cli::RotateCommand::Finish(a) => {
                        Command::Rotate(rotate::Rotate::resolve(Step::Finish, a)?)
                    }
                    cli::RotateCommand::Rollback(a) => {
                        Command::Rotate(rotate::Rotate::resolve(Step::Rollback, a)?)
                    }
                    cli::RotateCommand::Status(a) => {
                        Command::RotateStatus(rotate::RotateStatus::resolve(a)?)
                    }
                    cli::RotateCommand::Tokens(a) => {
                        Command::RotateTokens(rotate::RotateTokens::resolve(a)?)
                    }
                    cli::RotateCommand::Kubelet(a) => {
                        Command::RotateKubelet(rotate::RotateKubelet::resolve(a)?)
                    }
                }
            }
            K::Controller(a) => Command::Controller(controller::Controller::resolve(a, now)?),
            K::Csr(CsrCommand::List(a)) => Command::CsrList(controller::CsrList::resolve(a)?),
            K::Csr(CsrCommand::Approve(a)) => {
                Command::CsrApprove(controller::CsrApprove::resolve(a)?)
            }
            K::Agent(a) => Command::Agent(agent::Agent::resolve(a)?),
            K::Audit(a) => Command::Audit(audit::Audit::resolve(a)?),
            K::Completion { shell } => Command::Completion(shell),
            K::Man { dir } => Command::Man(dir),
        };
        Ok(Settings { now, command })
    }
}

/// The one rule of precedence: the flag, else the config file's value, else the default.
pub fn pick<T>(flag: Option<T>, config: Option<T>, default: impl FnOnce() -> T) -> T {
    flag.or(config).unwrap_or_else(default)
}

/// [`pick`] with a default that must be found out and may not be (the node name, the
/// advertise address): it is looked for only when neither flag nor config gives the value.
pub fn pick_found<T>(
    flag: Option<T>,
    config: Option<T>,
    find: impl FnOnce() -> Result<T>,
) -> Result<T> {
    flag.or(config).map_or_else(find, Ok)
}

/// `all`, alone, or certificate names.
pub fn selection(names: &[String]) -> Result<Selection> {
    if names.iter().any(|n| n == "all") {
        if names.len() > 1 {
            bail!("`all` cannot be combined with other names");
        }
        return Ok(Selection::All);
    }
    Ok(Selection::Named(names.to_vec()))
}

/// The values of a comma-separated list flag, without the empty ones (`--x a,,b` or `--x ""`).
pub fn nonempty(values: &[String]) -> impl Iterator<Item = String> + '_ {
    values.iter().filter(|s| !s.is_empty()).cloned()
}

/// The PKI a command works on, and the kubeadm config file that describes its cluster (empty
/// without `--config`).
pub struct Pki {
    pub layout: Layout,
    pub config: KubeadmConfig,
}

impl Pki {
    /// `--cert-dir`, else `certificatesDir` from `--config`, else /etc/kubernetes/pki;
    /// `--kubeconfig-dir`, else /etc/kubernetes (a kubeadm config does not name it). A config
    /// file that cannot be read or is invalid is an error naming the file.
    pub fn resolve(dirs: &DirArgs) -> Result<Pki> {
        let config = dirs
            .config
            .as_deref()
            .map(KubeadmConfig::load)
            .transpose()?
            .unwrap_or_default();
        let cert_dir = pick(dirs.cert_dir.clone(), config.cert_dir.clone(), || {
            DEFAULT_CERT_DIR.into()
        });
        let kubeconfig_dir = dirs
            .kubeconfig_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_KUBECONFIG_DIR.into());
        Ok(Pki {
            layout: Layout::new(cert_dir, kubeconfig_dir),
            config,
        })
    }
}

/// Where a writing command copies the files it replaces. The defaults are named only once
/// the session holds the lock: they are new names in the session's own directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupDir {
    /// `--backup-dir`.
    Given(PathBuf),
    /// A new `<kubeconfig-dir>/kubepki-backups/<UTC time>`.
    Timestamped,
    /// A new `<backup>.before-restore-<UTC time>` beside this backup, which is being restored.
    BeforeRestore(PathBuf),
}

impl BackupDir {
    fn resolve(flag: Option<PathBuf>, default: BackupDir) -> BackupDir {
        flag.map_or(default, BackupDir::Given)
    }

    pub fn path(&self, session: &Session, now: OffsetDateTime) -> PathBuf {
        match self {
            BackupDir::Given(d) => d.clone(),
            BackupDir::Timestamped => session.new_backup_dir(now),
            BackupDir::BeforeRestore(backup) => session.before_restore_dir(backup, now),
        }
    }
}
