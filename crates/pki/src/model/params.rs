//! Cluster parameters: what a node's certificates must say (node name, addresses, SANs, ...),
//! resolved from a kubeadm config and flags, and the templates the inventory rules derive.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::crypto::issue::CertTemplate;
use crate::crypto::key::KeyAlgorithm;
use crate::error::ParamError;
use crate::model::inventory::{
    CaSpec, CommonName, KubeconfigSpec, LeafSpec, Organizations, SanRule, ServerRule,
};

pub const DEFAULT_CERT_DIR: &str = "/etc/kubernetes/pki";
pub const DEFAULT_KUBECONFIG_DIR: &str = "/etc/kubernetes";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
pub const DEFAULT_BIND_PORT: u16 = 6443;
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(8760 * 3600);
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(87600 * 3600);

/// A Kubernetes minor version, enough to pick version-dependent groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
}

impl KubeVersion {
    pub fn parse(s: &str) -> Result<Self, ParamError> {
        let t = s.trim().trim_start_matches('v');
        let mut parts = t.split(['.', '-', '+']);
        let major = parts.next().and_then(|p| p.parse().ok());
        let minor = parts.next().and_then(|p| p.parse().ok());
        match (major, minor) {
            (Some(major), Some(minor)) => Ok(KubeVersion { major, minor }),
            _ => Err(ParamError::KubeVersion(s.to_string())),
        }
    }
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// Everything that shapes a control-plane node's certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterParams {
    pub cert_dir: PathBuf,
    pub kubeconfig_dir: PathBuf,
    pub node_name: String,
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    /// `host` or `host:port`.
    pub control_plane_endpoint: Option<String>,
    pub service_subnet: String,
    pub dns_domain: String,
    pub cluster_name: String,
    pub apiserver_cert_sans: Vec<String>,
    pub etcd_server_cert_sans: Vec<String>,
    pub etcd_peer_cert_sans: Vec<String>,
    pub local_etcd: bool,
    pub key_algorithm: KeyAlgorithm,
    pub cert_validity: Duration,
    pub ca_validity: Duration,
    /// None: assume a current Kubernetes (≥1.29).
    pub kubernetes_version: Option<KubeVersion>,
}

impl ClusterParams {
    /// Defaults for a node; node name and address must come from the caller (detected or given).
    pub fn new(node_name: String, advertise_address: IpAddr) -> Self {
        ClusterParams {
            cert_dir: DEFAULT_CERT_DIR.into(),
            kubeconfig_dir: DEFAULT_KUBECONFIG_DIR.into(),
            node_name,
            advertise_address,
            bind_port: DEFAULT_BIND_PORT,
            control_plane_endpoint: None,
            service_subnet: DEFAULT_SERVICE_SUBNET.into(),
            dns_domain: DEFAULT_DNS_DOMAIN.into(),
            cluster_name: DEFAULT_CLUSTER_NAME.into(),
            apiserver_cert_sans: Vec::new(),
            etcd_server_cert_sans: Vec::new(),
            etcd_peer_cert_sans: Vec::new(),
            local_etcd: true,
            key_algorithm: KeyAlgorithm::default(),
            cert_validity: DEFAULT_CERT_VALIDITY,
            ca_validity: DEFAULT_CA_VALIDITY,
            kubernetes_version: None,
        }
    }

    /// Checks what can be checked before any key is generated, with kubeadm's rules.
    pub fn validate(&self) -> Result<(), ParamError> {
        validate_node_name(&self.node_name)?;
        validate_service_subnet(&self.service_subnet)?;
        self.service_vip()?;
        if let Some(ep) = &self.control_plane_endpoint {
            split_host_port(ep)?;
        }
        validate_dns_domain(&self.dns_domain)?;
        if self.bind_port == 0 {
            return Err(ParamError::BindPort);
        }
        for s in self
            .apiserver_cert_sans
            .iter()
            .chain(&self.etcd_server_cert_sans)
            .chain(&self.etcd_peer_cert_sans)
        {
            validate_san(s)?;
        }
        crate::format::duration::check_validity(self.cert_validity, "the certificate validity")?;
        crate::format::duration::check_validity(self.ca_validity, "the CA certificate validity")?;
        Ok(())
    }

    pub fn cluster_admins_group(&self) -> &'static str {
        match self.kubernetes_version {
            Some(v) if !v.at_least(1, 29) => "system:masters",
            _ => "kubeadm:cluster-admins",
        }
    }

    /// Whether super-admin.conf belongs to this cluster's version.
    pub fn has_super_admin(&self) -> bool {
        self.kubernetes_version.is_none_or(|v| v.at_least(1, 29))
    }

    /// The first address of the (first) service CIDR: the `kubernetes` Service's ClusterIP.
    pub fn service_vip(&self) -> Result<IpAddr, ParamError> {
        let first = self.service_subnet.split(',').next().unwrap_or("").trim();
        let net: IpNet = first
            .parse()
            .map_err(|_| ParamError::ServiceCidr(first.to_string()))?;
        let ip = match net.network() {
            IpAddr::V4(a) => IpAddr::from((u32::from(a)).wrapping_add(1).to_be_bytes()),
            IpAddr::V6(a) => IpAddr::from((u128::from(a)).wrapping_add(1).to_be_bytes()),
        };
        if !net.contains(&ip) {
            return Err(ParamError::NoClusterIp(first.to_string()));
        }
        Ok(ip)
    }

    fn endpoint(&self, rule: ServerRule) -> String {
        let local = || join_host_port(&self.advertise_address.to_string(), self.bind_port);
        match (rule, &self.control_plane_endpoint) {
            (ServerRule::ControlPlaneEndpoint, Some(ep)) => match split_host_port(ep) {
                Ok((host, Some(port))) => join_host_port(&host, port),
                Ok((host, None)) => join_host_port(&host, self.bind_port),
                Err(_) => ep.clone(),
            },
            _ => local(),
        }
    }

    pub fn server_url(&self, rule: ServerRule) -> String {
        format!("https://{}", self.endpoint(rule))
    }

    pub fn common_name(&self, cn: CommonName) -> String {
        match cn {
            CommonName::Fixed(s) => s.to_string(),
            CommonName::NodeName => self.node_name.clone(),
            CommonName::NodeUser => format!("system:node:{}", self.node_name),
        }
    }

    pub fn organizations(&self, o: Organizations) -> Vec<String> {
        match o {
            Organizations::None => Vec::new(),
            Organizations::ClusterAdmins => vec![self.cluster_admins_group().to_string()],
            Organizations::Fixed(s) => vec![s.to_string()],
        }
    }

    pub fn ca_template(spec: &CaSpec) -> CertTemplate {
        CertTemplate {
            common_name: spec.common_name.to_string(),
            is_ca: true,
            ..Default::default()
        }
    }

    pub fn leaf_template(&self, spec: &LeafSpec) -> Result<CertTemplate, ParamError> {
        let (dns_names, ip_addresses) = self.alt_names(spec.sans)?;
        Ok(CertTemplate {
            common_name: self.common_name(spec.common_name),
            organizations: self.organizations(spec.organizations),
            is_ca: false,
            server_auth: spec.usage.server_auth(),
            client_auth: spec.usage.client_auth(),
            dns_names,
            ip_addresses,
        })
    }

    pub fn kubeconfig_template(&self, spec: &KubeconfigSpec) -> CertTemplate {
        CertTemplate {
            common_name: self.common_name(spec.common_name),
            organizations: self.organizations(spec.organizations),
            client_auth: true,
            ..Default::default()
        }
    }

    /// SANs as kubeadm computes them: DNS names sorted and deduplicated, IPs in rule order
    /// with duplicates dropped (pkiutil.RemoveDuplicateAltNames).
    fn alt_names(&self, rule: SanRule) -> Result<(Vec<String>, Vec<IpAddr>), ParamError> {
        let mut dns: Vec<String> = Vec::new();
        let mut ips: Vec<IpAddr> = Vec::new();
        let extra: &[String] = match rule {
            SanRule::None => return Ok((dns, ips)),
            SanRule::ApiServer => {
                dns.push(self.node_name.clone());
                dns.extend(node_independent_sans(rule, &self.dns_domain).0);
                ips.extend([self.service_vip()?, self.advertise_address]);
                if let Some(ep) = &self.control_plane_endpoint {
                    let (host, _) = split_host_port(ep)?;
                    match host.parse::<IpAddr>() {
                        Ok(ip) => ips.push(ip),
                        Err(_) => dns.push(host),
                    }
                }
                &self.apiserver_cert_sans
            }
            SanRule::EtcdServer | SanRule::EtcdPeer => {
                let (fixed_dns, fixed_ips) = node_independent_sans(rule, &self.dns_domain);
                dns.push(self.node_name.clone());
                dns.extend(fixed_dns);
                ips.push(self.advertise_address);
                ips.extend(fixed_ips);
                if rule == SanRule::EtcdServer {
                    &self.etcd_server_cert_sans
                } else {
                    &self.etcd_peer_cert_sans
                }
            }
        };
        for s in extra {
            match s.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(s.clone()),
            }
        }
        dns.sort();
        dns.dedup();
        let mut seen = Vec::new();
        ips.retain(|ip| {
            if seen.contains(ip) {
                false
            } else {
                seen.push(*ip);
                true
            }
        });
        Ok((dns, ips))
    }
}

/// The SANs of `rule` that are the same on every node, in kubeadm's order: the API server's
/// service names (`kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
/// `kubernetes.default.svc.<dns_domain>`), etcd's `localhost`, `127.0.0.1` and `::1`. What
/// depends on the node (its name, addresses, the service IP, the endpoint, extra SANs) is
/// [`ClusterParams::leaf_template`]'s.
pub fn node_independent_sans(rule: SanRule, dns_domain: &str) -> (Vec<String>, Vec<IpAddr>) {
    match rule {
        SanRule::None => (Vec::new(), Vec::new()),
        SanRule::ApiServer => (
            vec![
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                format!("kubernetes.default.svc.{dns_domain}"),
            ],
            Vec::new(),
        ),
        SanRule::EtcdServer | SanRule::EtcdPeer => (
            vec!["localhost".into()],
            vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
        ),
    }
}

/// Splits `host[:port]`, accepting bracketed IPv6 (`[::1]:6443`) and bare IPv6 (`::1`).
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), ParamError> {
    let bad = || ParamError::Endpoint(s.to_string());
    if s.is_empty() || s.contains('/') {
        return Err(bad());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), Some(port.parse().map_err(|_| bad())?))),
        None => Ok((s.to_string(), None)),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The service DNS domain, as kubeadm validates `networking.dnsDomain`: a lowercase RFC 1123
/// subdomain (it becomes part of the apiserver's SAN kubernetes.default.svc.<domain>).
pub fn validate_dns_domain(domain: &str) -> Result<(), ParamError> {
    if domain.is_empty() || domain.len() > 253 || !is_dns1123_subdomain(domain) {
        return Err(ParamError::DnsDomain(domain.to_string()));
    }
    Ok(())
}

/// The service CIDR(s), as kubeadm validates `networking.serviceSubnet`: one CIDR, or two of
/// different IP families (dual stack), each with at least 10 addresses and at most 2^20.
pub fn validate_service_subnet(subnets: &str) -> Result<(), ParamError> {
    let parts: Vec<&str> = subnets.split(',').map(str::trim).collect();
    if parts.len() > 2 {
        return Err(ParamError::ServiceCidrCount(subnets.to_string()));
    }
    let mut families = Vec::new();
    for p in &parts {
        let net: IpNet = p
            .parse()
            .map_err(|_| ParamError::ServiceCidrSyntax(p.to_string()))?;
        let host_bits = net.max_prefix_len() - net.prefix_len();
        if host_bits < 4 {
            return Err(ParamError::ServiceCidrTooSmall(p.to_string()));
        }
        if host_bits > 20 {
            return Err(ParamError::ServiceCidrTooLarge {
                cidr: p.to_string(),
                min_prefix: net.max_prefix_len() - 20,
            });
        }
        families.push(matches!(net, IpNet::V4(_)));
    }
    if families.len() == 2 && families[0] == families[1] {
        return Err(ParamError::ServiceCidrFamilies(subnets.to_string()));
    }
    Ok(())
}

/// An extra SAN: an IP address or a DNS name (a wildcard `*.` first label allowed).
pub fn validate_san(s: &str) -> Result<(), ParamError> {
    if s.parse::<IpAddr>().is_err() && !is_valid_dns_san(s) {
        return Err(ParamError::San(s.to_string()));
    }
    Ok(())
}

/// RFC 1123 subdomain, as Kubernetes requires of node names.
pub fn validate_node_name(name: &str) -> Result<(), ParamError> {
    if name.is_empty() || name.len() > 253 || !is_dns1123_subdomain(name) {
        return Err(ParamError::NodeName(name.to_string()));
    }
    Ok(())
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// DNS SANs may be wildcards (`*.example.com`) and mixed case.
fn is_valid_dns_san(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s).to_ascii_lowercase();
    !s.is_empty() && s.len() <= 253 && is_dns1123_subdomain(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inventory;

    fn fixture_params() -> ClusterParams {
        let mut p = ClusterParams::new("vm".into(), "192.0.2.2".parse().unwrap());
        p.control_plane_endpoint = Some("127.0.0.1:6443".into());
        p
    }

    #[test]
    fn apiserver_sans_match_kubeadm_fixture() {
        let p = fixture_params();
        let t = p
            .leaf_template(inventory::leaf("apiserver").unwrap())
            .unwrap();
        assert_eq!(
            t.dns_names,
            [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "vm"
            ]
        );
        let ips: Vec<String> = t.ip_addresses.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.96.0.1", "192.0.2.2", "127.0.0.1"]);
    }

    #[test]
    fn etcd_sans_match_kubeadm_fixture() {
        let p = fixture_params();
        let t = p
            .leaf_template(inventory::leaf("etcd-server").unwrap())
            .unwrap();
        assert_eq!(t.dns_names, ["localhost", "vm"]);
        let ips: Vec<String> = t.ip_addresses.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["192.0.2.2", "127.0.0.1", "::1"]);
        assert!(t.server_auth && t.client_auth);
        assert_eq!(t.common_name, "vm");
    }

    #[test]
    fn endpoints_and_versions() {
        let mut p = fixture_params();
        assert_eq!(
            p.server_url(ServerRule::ControlPlaneEndpoint),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            p.server_url(ServerRule::LocalEndpoint),
            "https://192.0.2.2:6443"
        );
        p.control_plane_endpoint = Some("cp.example.com".into());
        assert_eq!(
            p.server_url(ServerRule::ControlPlaneEndpoint),
            "https://cp.example.com:6443"
        );
        p.control_plane_endpoint = Some("[fd00::1]:7443".into());
        assert_eq!(
            p.server_url(ServerRule::ControlPlaneEndpoint),
            "https://[fd00::1]:7443"
        );
        p.advertise_address = "fd00::2".parse().unwrap();
        assert_eq!(
            p.server_url(ServerRule::LocalEndpoint),
            "https://[fd00::2]:6443"
        );
        p.service_subnet = "fd00:10::/108,10.96.0.0/12".into();
        assert_eq!(p.service_vip().unwrap().to_string(), "fd00:10::1");
        assert_eq!(p.cluster_admins_group(), "kubeadm:cluster-admins");
        p.kubernetes_version = Some(KubeVersion::parse("v1.20.2").unwrap());
        assert_eq!(p.cluster_admins_group(), "system:masters");
        assert!(!p.has_super_admin());
        assert!(validate_node_name("Node_1").is_err());
        assert!(validate_node_name("node-1.example").is_ok());
        p.service_subnet = "10.96.0.0/33".into();
        assert!(p.validate().is_err());
    }

    #[test]
    fn validation_follows_kubeadm() {
        for d in [
            "..",
            "cluster..local",
            "Cluster.local",
            "-a.local",
            "a_b",
            "",
        ] {
            assert!(validate_dns_domain(d).is_err(), "{d:?}");
        }
        assert!(validate_dns_domain("prod.example").is_ok());
        for c in [
            "10.96.0.0/11",
            "10.96.0.0/29",
            "10.0.0.0/16,10.1.0.0/16",
            "x",
            "fd00::/64",
        ] {
            assert!(validate_service_subnet(c).is_err(), "{c:?}");
        }
        for c in ["10.96.0.0/12", "10.96.0.0/28", "10.96.0.0/16,fd00:10::/108"] {
            assert!(validate_service_subnet(c).is_ok(), "{c:?}");
        }
        assert!(validate_san("*.example.com").is_ok());
        assert!(validate_san("a..b").is_err());
        let mut p = fixture_params();
        p.dns_domain = "..".into();
        assert!(matches!(p.validate(), Err(ParamError::DnsDomain(d)) if d == ".."));
    }
}
