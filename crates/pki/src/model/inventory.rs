//! The certificate inventory of a kubeadm control-plane node, as data: every CA, leaf and
//! kubeconfig with its files, subject, usages, SANs, signing CA and the component that reads
//! it, as kubeadm makes them.
//!
//! `init`, `check-expiration`, `renew`, `generate-csr` and `import` all walk these tables
//! (leaves and kubeconfigs through [`crate::model::slot`]); nothing else in kubepki knows a
//! certificate's name, file, issuer, usages or readers.

use std::fmt;

/// The three certificate authorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaId {
    Ca,
    FrontProxyCa,
    EtcdCa,
}

#[derive(Debug)]
pub struct CaSpec {
    pub id: CaId,
    /// The name kubeadm prints.
    pub name: &'static str,
    /// File base relative to the cert dir: `<base>.crt` and `<base>.key`.
    pub base: &'static str,
    pub common_name: &'static str,
    /// Only needed when etcd runs locally (stacked control plane).
    pub local_etcd_only: bool,
}

/// How a leaf's or kubeconfig's CN is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommonName {
    Fixed(&'static str),
    NodeName,
    /// `system:node:<node name>`
    NodeUser,
}

/// Organizations (Kubernetes groups) in the subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Organizations {
    None,
    /// `kubeadm:cluster-admins` from Kubernetes 1.29, `system:masters` before.
    ClusterAdmins,
    Fixed(&'static str),
}

/// Extended key usages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

impl Usage {
    pub fn server_auth(self) -> bool {
        matches!(self, Usage::Server | Usage::ServerAndClient)
    }
    pub fn client_auth(self) -> bool {
        matches!(self, Usage::Client | Usage::ServerAndClient)
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Server => "server auth",
            Usage::Client => "client auth",
            Usage::ServerAndClient => "server auth + client auth",
        })
    }
}

/// Which of kubeadm's SAN rules applies (apiserver: the node, the service names and IPs, the
/// endpoint; etcd server and peer: the node, localhost and its addresses), and so which group
/// of extra SANs (`apiServer.certSANs`, `etcd.local.serverCertSANs`, `peerCertSANs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanRule {
    None,
    ApiServer,
    EtcdServer,
    EtcdPeer,
}

/// A control-plane component that must restart to load renewed files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// Restarted only by a CA rotation (it reads its trusted CA file at start).
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
        }
    }
    /// Static pods restart by moving their manifest; the kubelet is a system service.
    pub fn is_static_pod(self) -> bool {
        self != Component::Kubelet
    }
}

/// Who reads a certificate's files, and so what loads a renewed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBy {
    /// A component that reads them only when it starts: it must restart.
    Start(Component),
    /// etcd, which reads its serving and peer certificates on every new connection.
    EtcdConnections,
    /// Clients that read them each time they run (kubectl, etcd's health check).
    EachUse,
}

impl ReadBy {
    /// The component a renewal must restart, if any.
    pub fn restart(self) -> Option<Component> {
        match self {
            ReadBy::Start(c) => Some(c),
            ReadBy::EtcdConnections | ReadBy::EachUse => None,
        }
    }
}

#[derive(Debug)]
pub struct LeafSpec {
    pub name: &'static str,
    pub base: &'static str,
    pub issuer: CaId,
    pub common_name: CommonName,
    pub organizations: Organizations,
    pub usage: Usage,
    pub sans: SanRule,
    pub local_etcd_only: bool,
    pub read_by: ReadBy,
}

/// Which API server address a kubeconfig points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRule {
    /// `controlPlaneEndpoint` when set, else the local advertise address.
    ControlPlaneEndpoint,
    /// Always this node's advertise address (kubeadm ≥1.28 for controller-manager and scheduler).
    LocalEndpoint,
}

#[derive(Debug)]
pub struct KubeconfigSpec {
    /// File name in the kubeconfig dir, also the name kubeadm prints.
    pub name: &'static str,
    pub common_name: CommonName,
    pub organizations: Organizations,
    pub server: ServerRule,
    pub read_by: ReadBy,
    /// kubelet.conf belongs to the kubelet after bootstrap; kubeadm neither lists nor renews it.
    pub kubeadm_managed: bool,
    /// super-admin.conf exists from Kubernetes 1.29.
    pub since_1_29: bool,
}

pub const CAS: &[CaSpec] = &[
    CaSpec {
        id: CaId::Ca,
        name: "ca",
        base: "ca",
        common_name: "kubernetes",
        local_etcd_only: false,
    },
    CaSpec {
        id: CaId::FrontProxyCa,
        name: "front-proxy-ca",
        base: "front-proxy-ca",
        common_name: "front-proxy-ca",
        local_etcd_only: false,
    },
    CaSpec {
        id: CaId::EtcdCa,
        name: "etcd-ca",
        base: "etcd/ca",
        common_name: "etcd-ca",
        local_etcd_only: true,
    },
];

pub const LEAVES: &[LeafSpec] = &[
    LeafSpec {
        name: "apiserver",
        base: "apiserver",
        issuer: CaId::Ca,
        common_name: CommonName::Fixed("kube-apiserver"),
        organizations: Organizations::None,
        usage: Usage::Server,
        sans: SanRule::ApiServer,
        local_etcd_only: false,
        read_by: ReadBy::Start(Component::KubeApiserver),
    },
    LeafSpec {
        name: "apiserver-kubelet-client",
        base: "apiserver-kubelet-client",
        issuer: CaId::Ca,
        common_name: CommonName::Fixed("kube-apiserver-kubelet-client"),
        organizations: Organizations::ClusterAdmins,
        usage: Usage::Client,
        sans: SanRule::None,
        local_etcd_only: false,
        read_by: ReadBy::Start(Component::KubeApiserver),
    },
    LeafSpec {
        name: "apiserver-etcd-client",
        base: "apiserver-etcd-client",
        issuer: CaId::EtcdCa,
        common_name: CommonName::Fixed("kube-apiserver-etcd-client"),
        organizations: Organizations::None,
        usage: Usage::Client,
        sans: SanRule::None,
        local_etcd_only: true,
        read_by: ReadBy::Start(Component::KubeApiserver),
    },
    LeafSpec {
        name: "front-proxy-client",
        base: "front-proxy-client",
        issuer: CaId::FrontProxyCa,
        common_name: CommonName::Fixed("front-proxy-client"),
        organizations: Organizations::None,
        usage: Usage::Client,
        sans: SanRule::None,
        local_etcd_only: false,
        read_by: ReadBy::Start(Component::KubeApiserver),
    },
    LeafSpec {
        name: "etcd-server",
        base: "etcd/server",
        issuer: CaId::EtcdCa,
        common_name: CommonName::NodeName,
        organizations: Organizations::None,
        usage: Usage::ServerAndClient,
        sans: SanRule::EtcdServer,
        local_etcd_only: true,
        read_by: ReadBy::EtcdConnections,
    },
    LeafSpec {
        name: "etcd-peer",
        base: "etcd/peer",
        issuer: CaId::EtcdCa,
        common_name: CommonName::NodeName,
        organizations: Organizations::None,
        usage: Usage::ServerAndClient,
        sans: SanRule::EtcdPeer,
        local_etcd_only: true,
        read_by: ReadBy::EtcdConnections,
    },
    LeafSpec {
        name: "etcd-healthcheck-client",
        base: "etcd/healthcheck-client",
        issuer: CaId::EtcdCa,
        common_name: CommonName::Fixed("kube-etcd-healthcheck-client"),
        organizations: Organizations::None,
        usage: Usage::Client,
        sans: SanRule::None,
        local_etcd_only: true,
        read_by: ReadBy::EachUse,
    },
];

pub const KUBECONFIGS: &[KubeconfigSpec] = &[
    KubeconfigSpec {
        name: "admin.conf",
        common_name: CommonName::Fixed("kubernetes-admin"),
        organizations: Organizations::ClusterAdmins,
        server: ServerRule::ControlPlaneEndpoint,
        read_by: ReadBy::EachUse,
        kubeadm_managed: true,
        since_1_29: false,
    },
    KubeconfigSpec {
        name: "super-admin.conf",
        common_name: CommonName::Fixed("kubernetes-super-admin"),
        organizations: Organizations::Fixed("system:masters"),
        server: ServerRule::ControlPlaneEndpoint,
        read_by: ReadBy::EachUse,
        kubeadm_managed: true,
        since_1_29: true,
    },
    KubeconfigSpec {
        name: "controller-manager.conf",
        common_name: CommonName::Fixed("system:kube-controller-manager"),
        organizations: Organizations::None,
        server: ServerRule::LocalEndpoint,
        read_by: ReadBy::Start(Component::KubeControllerManager),
        kubeadm_managed: true,
        since_1_29: false,
    },
    KubeconfigSpec {
        name: "scheduler.conf",
        common_name: CommonName::Fixed("system:kube-scheduler"),
        organizations: Organizations::None,
        server: ServerRule::LocalEndpoint,
        read_by: ReadBy::Start(Component::KubeScheduler),
        kubeadm_managed: true,
        since_1_29: false,
    },
    KubeconfigSpec {
        name: "kubelet.conf",
        common_name: CommonName::NodeUser,
        organizations: Organizations::Fixed("system:nodes"),
        server: ServerRule::ControlPlaneEndpoint,
        read_by: ReadBy::Start(Component::Kubelet),
        kubeadm_managed: false,
        since_1_29: false,
    },
];

/// Service-account signing key pair: no certificate, never expires.
pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";

pub fn ca(id: CaId) -> &'static CaSpec {
    CAS.iter()
        .find(|c| c.id == id)
        .expect("every CaId has a spec")
}

pub fn leaf(name: &str) -> Option<&'static LeafSpec> {
    LEAVES.iter().find(|l| l.name == name)
}

pub fn kubeconfig(name: &str) -> Option<&'static KubeconfigSpec> {
    KUBECONFIGS.iter().find(|k| k.name == name)
}

/// The CAs in kubeadm's printing order (by name).
pub fn kubeadm_cas(local_etcd: bool) -> Vec<&'static CaSpec> {
    let mut cas: Vec<&CaSpec> = CAS
        .iter()
        .filter(|c| local_etcd || !c.local_etcd_only)
        .collect();
    cas.sort_by_key(|c| c.name);
    cas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadm_ca_order() {
        let cas: Vec<_> = kubeadm_cas(true).iter().map(|c| c.name).collect();
        assert_eq!(cas, ["ca", "etcd-ca", "front-proxy-ca"]);
        assert_eq!(kubeadm_cas(false).len(), 2);
    }
}
