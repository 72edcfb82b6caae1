pub mod certs;
pub mod controller;
pub mod csr;
pub mod external;
pub mod init;
pub mod kubeconfig;
pub mod renew;

use std::path::PathBuf;

use anyhow::Result;
use kubepki_pki::config::KubeadmConfig;
use kubepki_pki::params::{DEFAULT_CERT_DIR, DEFAULT_KUBECONFIG_DIR};

use crate::cli::DirArgs;

/// Directories and the kubeadm config, resolved: flags win over the config file, which wins
/// over kubeadm's defaults.
pub struct Resolved {
    pub cert_dir: PathBuf,
    pub kubeconfig_dir: PathBuf,
    pub config: Option<KubeadmConfig>,
}

pub fn resolve(dirs: &DirArgs) -> Result<Resolved> {
    let config = dirs
        .config
        .as_deref()
        .map(KubeadmConfig::load)
        .transpose()?;
    let cert_dir = dirs
        .cert_dir
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.cert_dir.clone()))
        .unwrap_or_else(|| DEFAULT_CERT_DIR.into());
    let kubeconfig_dir = dirs
        .kubeconfig_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_KUBECONFIG_DIR.into());
    Ok(Resolved {
        cert_dir,
        kubeconfig_dir,
        config,
    })
}
