//! `kubepki audit`: which checks run, against which limits and policy, on which files.

use std::path::PathBuf;

use anyhow::Result;
use kubepki_audit::Severity;
use kubepki_audit::pki::Policy;
use kubepki_audit::scale::Limits;
use kubepki_pki::model::layout::Layout;

use super::Pki;
use crate::cli::{AuditArgs, AuditCheck, AuditFormat, ClusterArgs, KubeClientArgs};
use crate::detect;

/// Where the kubelet keeps its configuration and certificates on a kubeadm node.
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";

/// What a check that reads this machine's files runs on, and whether it was asked for by
/// name (then a missing directory is an error) or only by default (then it is skipped).
#[derive(Clone, Debug)]
pub struct Local {
    pub asked: bool,
    pub dir: PathBuf,
}

pub struct Audit {
    pub client: KubeClientArgs,
    pub format: AuditFormat,
    pub fail_on: Option<Severity>,
    /// The cluster's checks; all false: the cluster is not read at all.
    pub cluster: kubepki_audit::cluster::Options,
    /// `Some` when the PKI is to be checked: the cert dir in `dir`.
    pub pki: Option<Local>,
    pub layout: Layout,
    pub policy: Policy,
    /// `Some` when this machine is to be checked as a node: the kubelet dir in `dir`.
    pub node: Option<Local>,
    pub node_name: String,
    /// The kubelet's directory, for the node check and the kubelet's serving certificate.
    pub kubelet_dir: PathBuf,
    pub node_root: PathBuf,
    pub runtime_endpoint: Option<String>,
}

impl Audit {
    pub fn resolve(args: AuditArgs) -> Result<Audit> {
        let pki = Pki::resolve(&args.dirs)?;
        let all = args.checks.is_empty();
        let wants = |c: AuditCheck| all || args.checks.contains(&c);
        let cluster = kubepki_audit::cluster::Options {
            checks: kubepki_audit::cluster::Checks {
                scale: wants(AuditCheck::Scale),
                zones: wants(AuditCheck::Zones),
                pss: wants(AuditCheck::Pss),
            },
            limits: Limits {
                pods_per_node: args.max_pods_per_node,
                nodes: args.max_nodes,
                pods: args.max_pods,
                containers: args.max_containers,
                warn_headroom_percent: args.headroom_warn,
            },
            page_size: args.page_size,
        };
        // A file check named in --checks, or whose directory was given, must run; one left to
        // the default runs where its directory exists.
        let local = |check: AuditCheck, given: bool, dir: PathBuf| {
            wants(check).then_some(Local {
                asked: !all || given,
                dir,
            })
        };
        let cert_dir_given = args.dirs.cert_dir.is_some() || pki.config.cert_dir.is_some();
        let pki_check = local(AuditCheck::Pki, cert_dir_given, pki.layout.cert_dir.clone());
        let kubelet_dir = args
            .kubelet_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_KUBELET_DIR.into());
        let node_check = local(
            AuditCheck::Node,
            args.kubelet_dir.is_some(),
            kubelet_dir.clone(),
        );
        // The hostname, as kubeadm names a node by default; a hostname that is no name
        // leaves the node unnamed rather than failing an audit that may not need it.
        let node_name = args
            .node_name
            .clone()
            .or_else(|| pki.config.node_name.clone())
            .or_else(|| detect::node_name().ok())
            .unwrap_or_default();
        // The node's own SANs are required only when its identity is given: a guessed
        // advertise address (the default route's) would call a correct certificate wrong.
        let node = if args.apiserver_advertise_address.is_some() || args.dirs.config.is_some() {
            let cluster = ClusterArgs {
                dirs: args.dirs.clone(),
                node_name: args.node_name.clone(),
                apiserver_advertise_address: args.apiserver_advertise_address,
                apiserver_bind_port: None,
                sans: args.sans.clone(),
                encryption_algorithm: None,
                kubernetes_version: None,
            };
            let params = super::cluster::params(&cluster, None, None)?;
            params.validate()?;
            Some(params)
        } else {
            None
        };
        let policy = Policy {
            max_leaf_validity: args.max_leaf_validity,
            min_rsa_bits: args.min_rsa_bits,
            expiry_horizon: args.expiring_within,
            local_etcd: !pki.config.external_etcd,
            node,
            ..Policy::default()
        };
        Ok(Audit {
            client: args.client,
            format: args.output,
            fail_on: args.fail_on,
            cluster,
            pki: pki_check,
            layout: pki.layout,
            policy,
            node: node_check,
            node_name,
            kubelet_dir,
            node_root: args.node_root,
            runtime_endpoint: args.container_runtime_endpoint,
        })
    }

    /// Whether any of the cluster's checks runs.
    pub fn reads_cluster(&self) -> bool {
        let c = self.cluster.checks;
        c.scale || c.zones || c.pss
    }
}
