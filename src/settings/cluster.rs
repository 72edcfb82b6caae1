//! What a node's certificates must say (`init`, `certs generate-csr`): kubeadm init's flags
//! over the config file over kubeadm's defaults, into the library's [`ClusterParams`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use kubepki_pki::crypto::key::KeyAlgorithm;
use kubepki_pki::model::params::{
    ClusterParams, DEFAULT_BIND_PORT, DEFAULT_CA_VALIDITY, DEFAULT_CERT_VALIDITY,
    DEFAULT_CLUSTER_NAME, DEFAULT_DNS_DOMAIN, DEFAULT_SERVICE_SUBNET, KubeVersion,
};
use kubepki_pki::ops::renew::Selection;

use super::{Pki, nonempty, pick, pick_found, selection};
use crate::cli::{ClusterArgs, GenerateCsrArgs, InitArgs};
use crate::detect;

/// `kubepki init`.
pub struct Init {
    pub params: ClusterParams,
    pub dry_run: bool,
    pub wait: bool,
}

impl Init {
    pub fn resolve(args: InitArgs) -> Result<Init> {
        Ok(Init {
            params: params(&args.cluster, args.cert_validity, args.ca_validity)?,
            dry_run: args.dry_run,
            wait: args.wait,
        })
    }
}

/// `kubepki certs generate-csr`.
pub struct GenerateCsr {
    pub params: ClusterParams,
    pub selection: Selection,
    pub csr_dir: Option<PathBuf>,
    pub wait: bool,
}

impl GenerateCsr {
    pub fn resolve(args: GenerateCsrArgs) -> Result<GenerateCsr> {
        Ok(GenerateCsr {
            params: params(&args.cluster, None, None)?,
            selection: selection(&args.names)?,
            csr_dir: args.csr_dir,
            wait: args.wait,
        })
    }
}

/// Every field of the node's parameters, each from its flag, else the config file, else
/// kubeadm's default (the node name and advertise address are found on this machine). Extra
/// SANs are the config's and then the flag's.
pub(super) fn params(
    args: &ClusterArgs,
    cert_validity: Option<Duration>,
    ca_validity: Option<Duration>,
) -> Result<ClusterParams> {
    let Pki { layout, config: c } = Pki::resolve(&args.dirs)?;
    let node_name = pick_found(
        args.node_name.clone(),
        c.node_name.clone(),
        detect::node_name,
    )?;
    let advertise_address = pick_found(
        args.apiserver_advertise_address,
        c.advertise_address,
        detect::advertise_address,
    )?;
    let kubernetes_version = match &args.kubernetes_version {
        Some(v) => Some(KubeVersion::parse(v).map_err(anyhow::Error::msg)?),
        None => c.kubernetes_version,
    };
    Ok(ClusterParams {
        cert_dir: layout.cert_dir,
        kubeconfig_dir: layout.kubeconfig_dir,
        node_name,
        advertise_address,
        bind_port: pick(args.apiserver_bind_port, c.bind_port, || DEFAULT_BIND_PORT),
        control_plane_endpoint: args
            .sans
            .control_plane_endpoint
            .clone()
            .or(c.control_plane_endpoint),
        service_subnet: pick(args.sans.service_cidr.clone(), c.service_subnet, || {
            DEFAULT_SERVICE_SUBNET.into()
        }),
        dns_domain: pick(args.sans.service_dns_domain.clone(), c.dns_domain, || {
            DEFAULT_DNS_DOMAIN.into()
        }),
        cluster_name: c
            .cluster_name
            .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into()),
        apiserver_cert_sans: c
            .apiserver_cert_sans
            .into_iter()
            .chain(nonempty(&args.sans.apiserver_cert_extra_sans))
            .collect(),
        etcd_server_cert_sans: c.etcd_server_cert_sans,
        etcd_peer_cert_sans: c.etcd_peer_cert_sans,
        local_etcd: !c.external_etcd,
        key_algorithm: pick(
            args.encryption_algorithm,
            c.encryption_algorithm,
            KeyAlgorithm::default,
        ),
        cert_validity: pick(cert_validity, c.cert_validity, || DEFAULT_CERT_VALIDITY),
        ca_validity: pick(ca_validity, c.ca_validity, || DEFAULT_CA_VALIDITY),
        kubernetes_version,
    })
}
