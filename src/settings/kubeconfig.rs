//! `kubepki kubeconfig ...`: who the client certificate is for, its key and lifetime, and
//! which cluster and API server the kubeconfig names.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use kubepki_pki::crypto::key::KeyAlgorithm;
use kubepki_pki::model::config::KubeadmConfig;
use kubepki_pki::model::inventory::ServerRule;
use kubepki_pki::model::layout::Layout;
use kubepki_pki::model::params::{ClusterParams, DEFAULT_CLUSTER_NAME, validate_node_name};

use super::{BackupDir, Pki, pick};
use crate::cli::{KubeletArgs, UserArgs};

/// Where a kubeconfig's API server address comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// `--server`, else the endpoint `--config` gives (its controlPlaneEndpoint, else its
    /// advertise address, with its bind port).
    Url(String),
    /// The server named by the first of these kubeconfigs in the kubeconfig dir that exists.
    FromKubeconfigs(&'static [&'static str]),
}

impl Server {
    fn resolve(
        flag: Option<String>,
        config: &KubeadmConfig,
        from: &'static [&'static str],
    ) -> Self {
        match flag.or_else(|| config_server(config)) {
            Some(url) => Server::Url(url),
            None => Server::FromKubeconfigs(from),
        }
    }
}

/// The API server URL a kubeadm config gives, if it says where the API server is.
fn config_server(c: &KubeadmConfig) -> Option<String> {
    if c.control_plane_endpoint.is_none() && c.advertise_address.is_none() {
        return None;
    }
    let address = c.advertise_address.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut p = ClusterParams::new(String::new(), address);
    if let Some(port) = c.bind_port {
        p.bind_port = port;
    }
    p.control_plane_endpoint = c.control_plane_endpoint.clone();
    Some(p.server_url(ServerRule::ControlPlaneEndpoint))
}

/// What every kubeconfig kubepki prints says besides its user.
pub struct Client {
    pub layout: Layout,
    /// `clusterName` from `--config`, else kubernetes.
    pub cluster_name: String,
    pub server: Server,
    /// How long the client certificate is valid (`--validity-period`).
    pub validity: Duration,
    /// `--encryption-algorithm`, else `encryptionAlgorithm` from `--config`, else RSA-2048.
    pub key_algorithm: KeyAlgorithm,
}

impl Client {
    fn resolve(
        pki: Pki,
        server: Option<String>,
        from: &'static [&'static str],
        validity: Duration,
        alg: Option<KeyAlgorithm>,
    ) -> Client {
        let c = pki.config;
        Client {
            layout: pki.layout,
            cluster_name: c
                .cluster_name
                .clone()
                .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into()),
            server: Server::resolve(server, &c, from),
            validity,
            key_algorithm: pick(alg, c.encryption_algorithm, KeyAlgorithm::default),
        }
    }
}

/// `kubepki kubeconfig user`.
pub struct User {
    pub client: Client,
    /// The certificate's CN.
    pub name: String,
    /// The certificate's O.
    pub orgs: Vec<String>,
}

impl User {
    pub fn resolve(args: UserArgs) -> Result<User> {
        if args.client_name.is_empty() {
            bail!("--client-name must not be empty");
        }
        let pki = Pki::resolve(&args.dirs)?;
        Ok(User {
            client: Client::resolve(
                pki,
                args.server,
                &["admin.conf"],
                args.validity_period,
                args.encryption_algorithm,
            ),
            name: args.client_name,
            orgs: args.orgs,
        })
    }
}

/// `kubepki kubeconfig kubelet`.
pub struct Kubelet {
    pub client: Client,
    pub node_name: String,
    /// With `--rotated`: the kubelet's directory, whose rotated certificate the kubeconfig
    /// points at instead of embedding a new one.
    pub rotated: Option<PathBuf>,
    /// With `--write`: install as kubelet.conf, backing up the old one there.
    pub write: Option<BackupDir>,
    pub wait: bool,
}

impl Kubelet {
    pub fn resolve(args: KubeletArgs) -> Result<Kubelet> {
        validate_node_name(&args.node_name).map_err(anyhow::Error::msg)?;
        let pki = Pki::resolve(&args.dirs)?;
        Ok(Kubelet {
            client: Client::resolve(
                pki,
                args.server,
                &["kubelet.conf", "admin.conf"],
                args.validity_period,
                args.encryption_algorithm,
            ),
            node_name: args.node_name,
            rotated: args.rotated.then_some(args.kubelet_dir),
            write: args
                .write
                .then(|| BackupDir::resolve(args.backup_dir, BackupDir::Timestamped)),
            wait: args.wait,
        })
    }
}
