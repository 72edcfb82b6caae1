//! Reading the parts of a kubeadm configuration file that shape certificates.
//!
//! Accepts kubeadm.k8s.io v1beta2, v1beta3 and v1beta4 `InitConfiguration` and
//! `ClusterConfiguration` documents; other documents in the file (KubeletConfiguration,
//! KubeProxyConfiguration, JoinConfiguration...) are skipped.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::crypto::key::KeyAlgorithm;
use crate::error::{ConfigProblem, Error, ParamError, Result};
use crate::format::yaml::YamlError;
use crate::model::params::KubeVersion;

/// Certificate-relevant settings found in a kubeadm config; `None` means "not set".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KubeadmConfig {
    pub cert_dir: Option<PathBuf>,
    pub cluster_name: Option<String>,
    pub control_plane_endpoint: Option<String>,
    pub service_subnet: Option<String>,
    pub dns_domain: Option<String>,
    pub apiserver_cert_sans: Vec<String>,
    pub etcd_server_cert_sans: Vec<String>,
    pub etcd_peer_cert_sans: Vec<String>,
    pub external_etcd: bool,
    pub encryption_algorithm: Option<KeyAlgorithm>,
    pub cert_validity: Option<Duration>,
    pub ca_validity: Option<Duration>,
    pub node_name: Option<String>,
    pub advertise_address: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub kubernetes_version: Option<KubeVersion>,
}

const GROUP: &str = "kubeadm.k8s.io/";
const VERSIONS: &[&str] = &["v1beta2", "v1beta3", "v1beta4"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct InitConfiguration {
    node_registration: NodeRegistration,
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: ApiEndpoint,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NodeRegistration {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ApiEndpoint {
    advertise_address: Option<String>,
    bind_port: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ClusterConfiguration {
    certificates_dir: Option<String>,
    cluster_name: Option<String>,
    control_plane_endpoint: Option<String>,
    kubernetes_version: Option<String>,
    networking: Networking,
    api_server: ApiServer,
    etcd: Etcd,
    encryption_algorithm: Option<String>,
    certificate_validity_period: Option<String>,
    ca_certificate_validity_period: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Networking {
    service_subnet: Option<String>,
    dns_domain: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Etcd {
    local: Option<LocalEtcd>,
    external: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LocalEtcd {
    #[serde(rename = "serverCertSANs")]
    server_cert_sans: Vec<String>,
    #[serde(rename = "peerCertSANs")]
    peer_cert_sans: Vec<String>,
}

impl KubeadmConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::fsio::read_to_string(path)?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |problem: ConfigProblem| Error::Config {
            path: path.to_path_buf(),
            problem,
        };
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| err(ConfigProblem::Yaml(YamlError::new(&e))))?;
        let mut out = KubeadmConfig::default();
        let mut seen_kubeadm = false;
        for (i, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let n = i + 1;
            let decode = |kind| {
                move |source| {
                    err(ConfigProblem::Decode {
                        document: n,
                        kind,
                        source,
                    })
                }
            };
            let value = |source| {
                err(ConfigProblem::Value {
                    document: n,
                    source,
                })
            };
            let meta: TypeMeta = serde_json::from_value(doc.clone()).map_err(decode(None))?;
            let Some(version) = meta.api_version.strip_prefix(GROUP) else {
                continue;
            };
            if !VERSIONS.contains(&version) {
                return Err(err(ConfigProblem::ApiVersion {
                    document: n,
                    found: meta.api_version,
                    supported: VERSIONS.iter().map(|v| format!("{GROUP}{v}")).collect(),
                }));
            }
            match meta.kind.as_str() {
                "InitConfiguration" => {
                    seen_kubeadm = true;
                    let c: InitConfiguration =
                        serde_json::from_value(doc).map_err(decode(Some("InitConfiguration")))?;
                    out.apply_init(c).map_err(value)?;
                }
                "ClusterConfiguration" => {
                    seen_kubeadm = true;
                    let c: ClusterConfiguration = serde_json::from_value(doc)
                        .map_err(decode(Some("ClusterConfiguration")))?;
                    out.apply_cluster(c).map_err(value)?;
                }
                _ => {}
            }
        }
        if !seen_kubeadm {
            return Err(err(ConfigProblem::NoKubeadmDocument));
        }
        Ok(out)
    }

    fn apply_init(&mut self, c: InitConfiguration) -> Result<(), ParamError> {
        self.node_name = c.node_registration.name.filter(|s| !s.is_empty());
        if let Some(n) = &self.node_name {
            crate::model::params::validate_node_name(n)
                .map_err(|e| e.in_field("nodeRegistration.name"))?;
        }
        if let Some(a) = c
            .local_api_endpoint
            .advertise_address
            .filter(|s| !s.is_empty())
        {
            self.advertise_address = Some(
                a.parse()
                    .map_err(|_| ParamError::AdvertiseAddress(a.clone()))?,
            );
        }
        if let Some(p) = c.local_api_endpoint.bind_port.filter(|p| *p != 0) {
            self.bind_port = Some(u16::try_from(p).map_err(|_| ParamError::BindPortRange(p))?);
        }
        Ok(())
    }

    fn apply_cluster(&mut self, c: ClusterConfiguration) -> Result<(), ParamError> {
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        self.cert_dir = nonempty(c.certificates_dir).map(PathBuf::from);
        self.cluster_name = nonempty(c.cluster_name);
        self.control_plane_endpoint = nonempty(c.control_plane_endpoint);
        self.service_subnet = nonempty(c.networking.service_subnet);
        self.dns_domain = nonempty(c.networking.dns_domain);
        self.apiserver_cert_sans = c.api_server.cert_sans;
        if let Some(local) = c.etcd.local {
            self.etcd_server_cert_sans = local.server_cert_sans;
            self.etcd_peer_cert_sans = local.peer_cert_sans;
        }
        // kubeadm's own validation, so that the error names the file and the field.
        use crate::model::params::{
            split_host_port, validate_dns_domain, validate_san, validate_service_subnet,
        };
        if let Some(d) = &self.dns_domain {
            validate_dns_domain(d).map_err(|e| e.in_field("networking.dnsDomain"))?;
        }
        if let Some(s) = &self.service_subnet {
            validate_service_subnet(s).map_err(|e| e.in_field("networking.serviceSubnet"))?;
        }
        if let Some(ep) = &self.control_plane_endpoint {
            split_host_port(ep).map_err(|e| e.in_field("controlPlaneEndpoint"))?;
        }
        for (field, sans) in [
            ("apiServer.certSANs", &self.apiserver_cert_sans),
            ("etcd.local.serverCertSANs", &self.etcd_server_cert_sans),
            ("etcd.local.peerCertSANs", &self.etcd_peer_cert_sans),
        ] {
            for s in sans {
                validate_san(s).map_err(|e| e.in_field(field))?;
            }
        }
        self.external_etcd = c.etcd.external.is_some();
        if let Some(a) = nonempty(c.encryption_algorithm) {
            self.encryption_algorithm = Some(
                a.parse()
                    .map_err(|e: ParamError| e.in_field("encryptionAlgorithm"))?,
            );
        }
        if let Some(d) = nonempty(c.certificate_validity_period) {
            self.cert_validity = Some(
                crate::format::duration::parse(&d)
                    .map_err(|e| ParamError::from(e).in_field("certificateValidityPeriod"))?,
            );
        }
        if let Some(d) = nonempty(c.ca_certificate_validity_period) {
            self.ca_validity = Some(
                crate::format::duration::parse(&d)
                    .map_err(|e| ParamError::from(e).in_field("caCertificateValidityPeriod"))?,
            );
        }
        if let Some(v) = nonempty(c.kubernetes_version) {
            // "stable", "latest" and the like mean a current release.
            self.kubernetes_version = KubeVersion::parse(&v).ok();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1beta4_fields() {
        let text = r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp-1
localAPIEndpoint:
  advertiseAddress: 10.0.0.5
  bindPort: 7443
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
serverTLSBootstrap: true
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.2
certificatesDir: /srv/pki
clusterName: prod
controlPlaneEndpoint: cp.example.com:6443
encryptionAlgorithm: ECDSA-P256
certificateValidityPeriod: 720h0m0s
caCertificateValidityPeriod: 43800h
networking:
  serviceSubnet: 10.128.0.0/16
  dnsDomain: prod.local
apiServer:
  certSANs: [api.example.com, 203.0.113.7]
etcd:
  local:
    serverCertSANs: [etcd-1.example.com]
    peerCertSANs: [10.0.0.6]
"#;
        let c = KubeadmConfig::parse(text, Path::new("k.yaml")).unwrap();
        assert_eq!(c.node_name.as_deref(), Some("cp-1"));
        assert_eq!(c.advertise_address, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(c.bind_port, Some(7443));
        assert_eq!(c.cert_dir, Some(PathBuf::from("/srv/pki")));
        assert_eq!(c.encryption_algorithm, Some(KeyAlgorithm::EcdsaP256));
        assert_eq!(c.cert_validity, Some(Duration::from_secs(720 * 3600)));
        assert_eq!(c.ca_validity, Some(Duration::from_secs(43800 * 3600)));
        assert_eq!(c.apiserver_cert_sans, ["api.example.com", "203.0.113.7"]);
        assert_eq!(c.etcd_peer_cert_sans, ["10.0.0.6"]);
        assert!(!c.external_etcd);
        assert_eq!(c.service_subnet.as_deref(), Some("10.128.0.0/16"));
        assert_eq!(
            c.kubernetes_version,
            Some(KubeVersion {
                major: 1,
                minor: 31
            })
        );
    }

    #[test]
    fn external_etcd_and_fixture_config() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\netcd:\n  external:\n    endpoints: [https://10.0.0.9:2379]\n";
        let c = KubeadmConfig::parse(text, Path::new("k.yaml")).unwrap();
        assert!(c.external_etcd);
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/kubeadm-v1.20.2/kubeadm.yaml");
        let c = KubeadmConfig::load(&fixture).unwrap();
        assert_eq!(c.node_name.as_deref(), Some("vm"));
        assert_eq!(
            c.kubernetes_version,
            Some(KubeVersion {
                major: 1,
                minor: 20
            })
        );
    }

    #[test]
    fn errors_name_the_file_and_problem() {
        let e = KubeadmConfig::parse(
            "apiVersion: kubeadm.k8s.io/v1alpha1\nkind: ClusterConfiguration\n",
            Path::new("/x/k.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/x/k.yaml: document 1: unsupported apiVersion"),
            "{e}"
        );
        let e = KubeadmConfig::parse("a: [", Path::new("k.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid YAML"), "{e}");
        let e = KubeadmConfig::parse(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: DSA\n",
            Path::new("k.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("encryptionAlgorithm"), "{e}");
        assert!(KubeadmConfig::parse("kind: Foo\n", Path::new("k.yaml")).is_err());
        let e = KubeadmConfig::parse(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  dnsDomain: \"..\"\n",
            Path::new("k.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "k.yaml: document 1: networking.dnsDomain: invalid service DNS domain \"..\""
            ),
            "{e}"
        );
    }
}
