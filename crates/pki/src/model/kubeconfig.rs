//! Kubeconfig files: written byte-for-byte as client-go's clientcmd writes them (keys sorted,
//! certificates embedded), read leniently (any extra fields, embedded data or file paths).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::error::{CertError, Error, KubeconfigProblem, Result};
use crate::format::yaml::YamlError;

/// A kubeconfig with one cluster, one user and one context, as kubeadm writes them.
/// Fields are declared in sorted order because clientcmd emits them sorted.
#[derive(Serialize, Debug)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    clusters: Vec<NamedCluster>,
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    current_context: String,
    kind: &'static str,
    preferences: BTreeMap<String, String>,
    users: Vec<NamedUser>,
}

#[derive(Serialize, Debug)]
struct NamedCluster {
    cluster: Cluster,
    name: String,
}

#[derive(Serialize, Debug)]
struct Cluster {
    #[serde(
        rename = "certificate-authority-data",
        skip_serializing_if = "Option::is_none"
    )]
    certificate_authority_data: Option<String>,
    server: String,
}

#[derive(Serialize, Debug)]
struct NamedContext {
    context: Context,
    name: String,
}

#[derive(Serialize, Debug)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Serialize, Debug)]
struct NamedUser {
    name: String,
    user: AuthInfo,
}

#[derive(Serialize, Debug)]
struct AuthInfo {
    #[serde(rename = "client-certificate", skip_serializing_if = "Option::is_none")]
    client_certificate: Option<String>,
    #[serde(
        rename = "client-certificate-data",
        skip_serializing_if = "Option::is_none"
    )]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key", skip_serializing_if = "Option::is_none")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data", skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
}

impl Kubeconfig {
    /// A kubeconfig with the client certificate and key embedded.
    pub fn embedded(
        cluster_name: &str,
        server: &str,
        ca_pem: &str,
        user: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Self {
        Self::build(
            cluster_name,
            server,
            Some(ca_pem),
            user,
            AuthInfo {
                client_certificate: None,
                client_certificate_data: Some(B64.encode(cert_pem)),
                client_key: None,
                client_key_data: Some(B64.encode(key_pem)),
            },
        )
    }

    /// A kubeconfig that points at cert/key files (the kubelet's rotated pair).
    pub fn with_files(
        cluster_name: &str,
        server: &str,
        ca_pem: &str,
        user: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Self {
        Self::build(
            cluster_name,
            server,
            Some(ca_pem),
            user,
            AuthInfo {
                client_certificate: Some(cert_path.display().to_string()),
                client_certificate_data: None,
                client_key: Some(key_path.display().to_string()),
                client_key_data: None,
            },
        )
    }

    fn build(
        cluster_name: &str,
        server: &str,
        ca_pem: Option<&str>,
        user: &str,
        auth: AuthInfo,
    ) -> Self {
        let context = format!("{user}@{cluster_name}");
        Kubeconfig {
            api_version: "v1",
            clusters: vec![NamedCluster {
                cluster: Cluster {
                    certificate_authority_data: ca_pem.map(|c| B64.encode(c)),
                    server: server.to_string(),
                },
                name: cluster_name.to_string(),
            }],
            contexts: vec![NamedContext {
                context: Context {
                    cluster: cluster_name.to_string(),
                    user: user.to_string(),
                },
                name: context.clone(),
            }],
            current_context: context,
            kind: "Config",
            preferences: BTreeMap::new(),
            users: vec![NamedUser {
                name: user.to_string(),
                user: auth,
            }],
        }
    }

    /// What `generate-csr` leaves for a kubeconfig: the key, no certificate, no CA (kubeadm's
    /// partial kubeconfig); `import` completes it.
    pub fn key_only(cluster_name: &str, server: &str, user: &str, key_pem: &str) -> Self {
        Self::build(
            cluster_name,
            server,
            None,
            user,
            AuthInfo {
                client_certificate: None,
                client_certificate_data: None,
                client_key: None,
                client_key_data: Some(B64.encode(key_pem)),
            },
        )
    }

    pub fn to_yaml(&self) -> String {
        crate::format::yaml::to_string(self).expect("a kubeconfig always serializes")
    }
}

// ---- reading ----

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct AnyKubeconfig {
    clusters: Vec<AnyNamedCluster>,
    contexts: Vec<AnyNamedContext>,
    #[serde(rename = "current-context")]
    current_context: String,
    users: Vec<AnyNamedUser>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct AnyNamedCluster {
    name: String,
    cluster: AnyCluster,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct AnyCluster {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct AnyNamedContext {
    name: String,
    context: AnyContext,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct AnyContext {
    cluster: String,
    user: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct AnyNamedUser {
    name: String,
    user: AnyAuthInfo,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct AnyAuthInfo {
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
}

/// Where a credential came from: embedded in the kubeconfig or a file it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Embedded,
    File(PathBuf),
}

/// The credentials of a kubeconfig's current context, as PEM bytes.
#[derive(Debug)]
pub struct Credentials {
    pub server: String,
    pub cluster_name: String,
    pub user_name: String,
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Vec<u8>,
    pub cert_source: Source,
    pub key_pem: Option<Vec<u8>>,
    pub key_source: Source,
}

impl Credentials {
    /// The client certificate chain. A certificate read from a file may share it with its key
    /// (the kubelet's rotated pair); embedded data holds certificates only.
    pub fn client_chain(&self) -> Result<Vec<crate::crypto::cert::Certificate>, CertError> {
        match self.cert_source {
            Source::Embedded => crate::crypto::cert::Certificate::from_pem_chain(&self.cert_pem),
            Source::File(_) => crate::crypto::cert::Certificate::from_pem_with_key(&self.cert_pem),
        }
    }
}

/// The current context's API server URL, without loading any credentials.
pub fn read_server(path: &Path) -> Result<String> {
    let text = crate::fsio::read_to_string(path)?;
    let kc = parse_any(&text, path)?;
    let (cluster, _) = current(&kc).map_err(|p| Error::kubeconfig(path, p))?;
    kc.clusters
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| c.cluster.server.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::kubeconfig(path, KubeconfigProblem::NoServer(cluster.clone())))
}

/// The embedded client key of a partial kubeconfig (one written by `generate-csr`).
pub fn read_client_key(path: &Path) -> Result<Vec<u8>> {
    let text = crate::fsio::read_to_string(path)?;
    let kc = parse_any(&text, path)?;
    let (_, user) = current(&kc).map_err(|p| Error::kubeconfig(path, p))?;
    let data = kc
        .users
        .iter()
        .find(|u| u.name == user)
        .and_then(|u| u.user.client_key_data.clone())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::kubeconfig(path, KubeconfigProblem::NoEmbeddedKey(user.clone())))?;
    go_base64(&data).map_err(|e| Error::kubeconfig(path, KubeconfigProblem::KeyNotBase64(e)))
}

/// A `*-data` field as client-go decodes it: Go's base64.StdEncoding skips `\r` and `\n`, so
/// a value folded over several lines (a YAML literal block) is the same value.
fn go_base64(data: &str) -> std::result::Result<Vec<u8>, base64::DecodeError> {
    let joined: String = data
        .trim()
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    B64.decode(joined)
}

/// Reads the current context's cluster and client credentials.
pub fn read_credentials(path: &Path) -> Result<Credentials> {
    let text = crate::fsio::read_to_string(path)?;
    parse_credentials(&text, path)
}

pub fn parse_credentials(text: &str, path: &Path) -> Result<Credentials> {
    let err = |problem| Error::kubeconfig(path, problem);
    let kc = parse_any(text, path)?;
    let (cluster_name, user_name) = current(&kc).map_err(err)?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .ok_or_else(|| err(KubeconfigProblem::ClusterUndefined(cluster_name.clone())))?;
    let user = kc
        .users
        .iter()
        .find(|u| u.name == user_name)
        .ok_or_else(|| err(KubeconfigProblem::UserUndefined(user_name.clone())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let load = |data: &Option<String>,
                file: &Option<String>,
                what: &'static str|
     -> Result<Option<(Vec<u8>, Source)>> {
        if let Some(d) = data.as_deref().filter(|d| !d.is_empty()) {
            let bytes = go_base64(d).map_err(|source| {
                err(KubeconfigProblem::NotBase64 {
                    what,
                    user: user_name.clone(),
                    source,
                })
            })?;
            return Ok(Some((bytes, Source::Embedded)));
        }
        if let Some(f) = file.as_deref().filter(|f| !f.is_empty()) {
            let p = base.join(f);
            let bytes = crate::fsio::read(&p)?;
            return Ok(Some((bytes, Source::File(p))));
        }
        Ok(None)
    };
    let (cert_pem, cert_source) = load(
        &user.user.client_certificate_data,
        &user.user.client_certificate,
        "client-certificate",
    )?
    .ok_or_else(|| err(KubeconfigProblem::NoClientCert(user_name.clone())))?;
    let key = load(
        &user.user.client_key_data,
        &user.user.client_key,
        "client-key",
    )?;
    let ca = load(
        &cluster.cluster.certificate_authority_data,
        &cluster.cluster.certificate_authority,
        "certificate-authority",
    )?;
    let (key_pem, key_source) = match key {
        Some((k, s)) => (Some(k), s),
        None => (None, Source::Embedded),
    };
    Ok(Credentials {
        server: cluster.cluster.server.clone(),
        cluster_name,
        user_name,
        ca_pem: ca.map(|(c, _)| c),
        cert_pem,
        cert_source,
        key_pem,
        key_source,
    })
}

/// Puts a new client certificate and key (embedded) into the current context's user, and the
/// CA into its cluster's `certificate-authority-data` when the file embeds one. Everything
/// else in the file is kept; keys come out sorted, as clientcmd writes them.
pub fn replace_credentials(
    text: &str,
    path: &Path,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<String> {
    update_credentials(text, path, cert_pem, key_pem, ca_pem, false)
}

/// As [`replace_credentials`]; with `always_set_ca` the CA data is written even where the file
/// had none (completing a partial kubeconfig).
pub fn update_credentials(
    text: &str,
    path: &Path,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    always_set_ca: bool,
) -> Result<String> {
    let err = |problem| Error::kubeconfig(path, problem);
    // Resolve names through the lenient reader first: it knows the current-context rules.
    let creds = parse_credentials_shallow(text, path)?;
    let mut v: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| err(KubeconfigProblem::Yaml(YamlError::new(&e))))?;
    let find = |list: &mut serde_json::Value, name: &str| -> Option<usize> {
        list.as_array()?
            .iter()
            .position(|e| e.get("name").and_then(|n| n.as_str()) == Some(name))
    };
    let users = v
        .get_mut("users")
        .ok_or_else(|| err(KubeconfigProblem::NoUsers))?;
    let ui = find(users, &creds.1)
        .ok_or_else(|| err(KubeconfigProblem::UserUndefined(creds.1.clone())))?;
    let user = users[ui]
        .get_mut("user")
        .and_then(|u| u.as_object_mut())
        .ok_or_else(|| err(KubeconfigProblem::NoCredentials(creds.1.clone())))?;
    if user.contains_key("client-certificate") || user.contains_key("client-key") {
        return Err(err(KubeconfigProblem::FileCredentials(creds.1.clone())));
    }
    user.insert(
        "client-certificate-data".into(),
        B64.encode(cert_pem).into(),
    );
    user.insert("client-key-data".into(), B64.encode(key_pem).into());
    if let Some(clusters) = v.get_mut("clusters")
        && let Some(ci) = find(clusters, &creds.0)
        && let Some(c) = clusters[ci]
            .get_mut("cluster")
            .and_then(|c| c.as_object_mut())
        && (always_set_ca || c.contains_key("certificate-authority-data"))
        && !c.contains_key("certificate-authority")
    {
        c.insert(
            "certificate-authority-data".into(),
            B64.encode(ca_pem).into(),
        );
    }
    crate::format::yaml::to_string_sorted(&v).map_err(|e| err(KubeconfigProblem::Serialize(e)))
}

/// Sets the current context's cluster `certificate-authority-data` to `ca_pem`, everything
/// else kept (a CA rotation changes what a kubeconfig trusts before its client certificate).
/// A cluster that names a CA file instead is refused: kubepki would not see what it trusts.
pub fn replace_ca(text: &str, path: &Path, ca_pem: &str) -> Result<String> {
    let err = |problem| Error::kubeconfig(path, problem);
    let (cluster, _) = parse_credentials_shallow(text, path)?;
    let mut v: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| err(KubeconfigProblem::Yaml(YamlError::new(&e))))?;
    let c = v
        .get_mut("clusters")
        .and_then(|l| l.as_array_mut())
        .and_then(|l| {
            l.iter_mut()
                .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(cluster.as_str()))
        })
        .and_then(|e| e.get_mut("cluster"))
        .and_then(|c| c.as_object_mut())
        .ok_or_else(|| err(KubeconfigProblem::ClusterUndefined(cluster.clone())))?;
    if c.contains_key("certificate-authority") {
        return Err(err(KubeconfigProblem::CaFile(cluster.clone())));
    }
    c.insert(
        "certificate-authority-data".into(),
        B64.encode(ca_pem).into(),
    );
    crate::format::yaml::to_string_sorted(&v).map_err(|e| err(KubeconfigProblem::Serialize(e)))
}

/// The CA certificates of the first cluster's `certificate-authority-data` (kubeadm's
/// `kube-public/cluster-info` has one cluster and no context).
pub fn first_cluster_cas(text: &str, path: &Path) -> Result<Vec<crate::crypto::cert::Certificate>> {
    let err = |problem| Error::kubeconfig(path, problem);
    let kc = parse_any(text, path)?;
    let cluster = kc
        .clusters
        .first()
        .ok_or_else(|| err(KubeconfigProblem::ClusterUndefined(String::new())))?;
    let data = cluster
        .cluster
        .certificate_authority_data
        .as_deref()
        .ok_or_else(|| err(KubeconfigProblem::NoCaData(cluster.name.clone())))?;
    let pem = go_base64(data).map_err(|source| {
        err(KubeconfigProblem::NotBase64 {
            what: "certificate-authority",
            user: cluster.name.clone(),
            source,
        })
    })?;
    crate::crypto::cert::Certificate::from_pem_chain(&pem)
        .map_err(|e| err(KubeconfigProblem::ClientCert(e)))
}

/// Sets `certificate-authority-data` of every cluster to `ca_pem` (kubeadm's
/// `kube-public/cluster-info` holds one cluster and no context); `None` when nothing changes.
pub fn replace_every_ca(text: &str, path: &Path, ca_pem: &str) -> Result<Option<String>> {
    let err = |problem| Error::kubeconfig(path, problem);
    let mut v: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| err(KubeconfigProblem::Yaml(YamlError::new(&e))))?;
    let want = B64.encode(ca_pem);
    let mut changed = false;
    for c in v
        .get_mut("clusters")
        .and_then(|l| l.as_array_mut())
        .into_iter()
        .flatten()
        .filter_map(|e| e.get_mut("cluster").and_then(|c| c.as_object_mut()))
    {
        if c.get("certificate-authority-data").and_then(|d| d.as_str()) != Some(want.as_str()) {
            c.insert("certificate-authority-data".into(), want.clone().into());
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    crate::format::yaml::to_string_sorted(&v)
        .map(Some)
        .map_err(|e| err(KubeconfigProblem::Serialize(e)))
}

/// (cluster name, user name) of the current context.
fn parse_credentials_shallow(text: &str, path: &Path) -> Result<(String, String)> {
    let kc = parse_any(text, path)?;
    current(&kc).map_err(|p| Error::kubeconfig(path, p))
}

/// Parses a kubeconfig and applies the rules client-go's loader and validation apply (what
/// kubectl, the kubelet and the control plane would refuse, kubepki refuses too): names are
/// unique in each list, and no credential is given both inline and as a file.
fn parse_any(text: &str, path: &Path) -> Result<AnyKubeconfig> {
    let err = |problem| Error::kubeconfig(path, problem);
    let kc: AnyKubeconfig = serde_saphyr::from_str(text)
        .map_err(|e| err(KubeconfigProblem::Yaml(YamlError::new(&e))))?;
    for names in [
        kc.clusters.iter().map(|c| &c.name).collect::<Vec<_>>(),
        kc.contexts.iter().map(|c| &c.name).collect(),
        kc.users.iter().map(|u| &u.name).collect(),
    ] {
        if let Some(d) = names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
            .map(|(_, n)| n)
        {
            return Err(err(KubeconfigProblem::DuplicateName(d.to_string())));
        }
    }
    let both = |data: &Option<String>, file: &Option<String>| {
        data.as_deref().is_some_and(|d| !d.is_empty())
            && file.as_deref().is_some_and(|f| !f.is_empty())
    };
    for u in &kc.users {
        for (what, data, file) in [
            (
                "client-certificate",
                &u.user.client_certificate_data,
                &u.user.client_certificate,
            ),
            ("client-key", &u.user.client_key_data, &u.user.client_key),
        ] {
            if both(data, file) {
                return Err(err(KubeconfigProblem::UserDataAndFile {
                    what,
                    user: u.name.clone(),
                }));
            }
        }
    }
    for c in &kc.clusters {
        if both(
            &c.cluster.certificate_authority_data,
            &c.cluster.certificate_authority,
        ) {
            return Err(err(KubeconfigProblem::ClusterDataAndFile(c.name.clone())));
        }
    }
    Ok(kc)
}

/// Which part of a kubeconfig embeds a certificate (x509-certificate-exporter's
/// `embedded_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmbeddedKind {
    /// A cluster's `certificate-authority-data`.
    Cluster,
    /// A user's `client-certificate-data`.
    User,
}

impl EmbeddedKind {
    pub fn label(self) -> &'static str {
        match self {
            EmbeddedKind::Cluster => "cluster",
            EmbeddedKind::User => "user",
        }
    }
}

/// Every embedded certificate field of a kubeconfig, decoded from base64 (still PEM): the
/// clusters' CA bundles first, then the users' client certificates, in file order. File
/// references are not followed (the files they name are watched by path).
pub fn embedded_pems(text: &str, path: &Path) -> Result<Vec<(EmbeddedKind, String, Vec<u8>)>> {
    let kc = parse_any(text, path)?;
    let bad = |problem| Error::kubeconfig(path, problem);
    let mut out = Vec::new();
    for c in &kc.clusters {
        let data = c.cluster.certificate_authority_data.as_deref();
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            let pem = go_base64(d).map_err(|source| {
                bad(KubeconfigProblem::ClusterCaNotBase64 {
                    cluster: c.name.clone(),
                    source,
                })
            })?;
            out.push((EmbeddedKind::Cluster, c.name.clone(), pem));
        }
    }
    for u in &kc.users {
        let data = u.user.client_certificate_data.as_deref();
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            let pem = go_base64(d).map_err(|source| {
                bad(KubeconfigProblem::NotBase64 {
                    what: "client-certificate",
                    user: u.name.clone(),
                    source,
                })
            })?;
            out.push((EmbeddedKind::User, u.name.clone(), pem));
        }
    }
    Ok(out)
}

/// (cluster name, user name) of the current context, which must be set.
fn current(kc: &AnyKubeconfig) -> std::result::Result<(String, String), KubeconfigProblem> {
    if kc.current_context.is_empty() {
        return Err(KubeconfigProblem::NoCurrentContext);
    }
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == kc.current_context)
        .ok_or_else(|| KubeconfigProblem::ContextUndefined(kc.current_context.clone()))?;
    Ok((ctx.context.cluster.clone(), ctx.context.user.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_folded_over_lines_reads_as_client_go_reads_it() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let b64 = B64.encode(pem);
        let (a, b) = b64.split_at(20);
        let y = format!(
            "clusters:\n- name: c\n  cluster:\n    certificate-authority-data: |\n      {a}\n      {b}\n"
        );
        let got = embedded_pems(&y, Path::new("/k/folded.conf")).unwrap();
        assert_eq!(
            got,
            vec![(EmbeddedKind::Cluster, "c".to_string(), pem.to_vec())]
        );
    }

    #[test]
    fn an_alias_bomb_is_refused_with_a_reason_a_human_reads() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = embedded_pems(&y, Path::new("/k/bomb.conf"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/k/bomb.conf") && e.contains("an alias bomb?"),
            "{e}"
        );
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/kubeadm-v1.20.2")
            .join(name)
    }

    /// Rebuilt from its own parts, kubeadm's admin.conf comes out byte-identical.
    #[test]
    fn writes_byte_identical_to_kubeadm() {
        let path = fixture("admin.conf");
        let original = std::fs::read_to_string(&path).unwrap();
        let c = read_credentials(&path).unwrap();
        assert_eq!(c.cert_source, Source::Embedded);
        let rebuilt = Kubeconfig::embedded(
            &c.cluster_name,
            &c.server,
            std::str::from_utf8(c.ca_pem.as_ref().unwrap()).unwrap(),
            &c.user_name,
            std::str::from_utf8(&c.cert_pem).unwrap(),
            std::str::from_utf8(c.key_pem.as_ref().unwrap()).unwrap(),
        )
        .to_yaml();
        assert_eq!(rebuilt, original);
    }

    #[test]
    fn reads_file_references_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let kc = Kubeconfig::with_files(
            "kubernetes",
            "https://10.0.0.1:6443",
            "ca",
            "system:node:n1",
            Path::new("pki/kubelet-client-current.pem"),
            Path::new("pki/kubelet-client-current.pem"),
        );
        let path = dir.path().join("kubelet.conf");
        std::fs::write(&path, kc.to_yaml()).unwrap();
        // The referenced file is absent: the error names it, resolved against the kubeconfig.
        match read_credentials(&path) {
            Err(Error::Io { path, .. }) => {
                assert_eq!(path, dir.path().join("pki/kubelet-client-current.pem"))
            }
            other => panic!("expected a missing-file error, got {other:?}"),
        }
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        std::fs::write(dir.path().join("pki/kubelet-client-current.pem"), "PEM").unwrap();
        let c = read_credentials(&path).unwrap();
        assert_eq!(c.cert_pem, b"PEM");
        assert_eq!(
            c.cert_source,
            Source::File(dir.path().join("pki/kubelet-client-current.pem"))
        );
        assert_eq!(c.user_name, "system:node:n1");
        // kubeadm's own pre-bootstrap kubelet.conf embeds its credentials.
        let c = read_credentials(&fixture("kubelet.conf")).unwrap();
        assert_eq!(c.cert_source, Source::Embedded);
    }

    #[test]
    fn replacing_credentials_keeps_the_rest_and_kubeadm_format() {
        let path = fixture("admin.conf");
        let original = std::fs::read_to_string(&path).unwrap();
        let c = read_credentials(&path).unwrap();
        // Same credentials in: same bytes out.
        let same = replace_credentials(
            &original,
            &path,
            std::str::from_utf8(&c.cert_pem).unwrap(),
            std::str::from_utf8(c.key_pem.as_ref().unwrap()).unwrap(),
            std::str::from_utf8(c.ca_pem.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(same, original);
        let extra = original.replace("preferences: {}", "preferences:\n  colors: true");
        let out = replace_credentials(&extra, &path, "CERT", "KEY", "CA").unwrap();
        assert!(out.contains("colors: true"));
        let back = parse_credentials(&out, &path).unwrap();
        assert_eq!(back.cert_pem, b"CERT");
        assert_eq!(back.key_pem.unwrap(), b"KEY");
        assert_eq!(back.ca_pem.unwrap(), b"CA");
        assert_eq!(back.user_name, "kubernetes-admin");
    }

    #[test]
    fn bad_kubeconfigs_are_reported_with_the_file() {
        let p = Path::new("/k/admin.conf");
        let e = parse_credentials("current-context: x\n", p)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "/k/admin.conf: current-context \"x\" is not defined");
        let e = parse_credentials("- a\n- b\n", p).unwrap_err().to_string();
        assert!(
            e.starts_with("/k/admin.conf: not a valid kubeconfig"),
            "{e}"
        );
    }

    /// What client-go's loader refuses (kube-controller-manager: `duplicate name "x" in
    /// list`) is refused here too, so that kubepki never calls such a file healthy.
    #[test]
    fn client_go_rules() {
        let p = Path::new("/k/admin.conf");
        let base = "clusters:\n- name: c\n  cluster: {server: https://x}\ncontexts:\n- name: ctx\n  context: {cluster: c, user: u}\ncurrent-context: ctx\nusers:\n- name: u\n  user: {client-certificate-data: QQ==}\n";
        assert!(parse_credentials(base, p).is_ok());
        for (text, want) in [
            (
                format!("{base}- name: u\n  user: {{client-certificate-data: Qg==}}\n"),
                "duplicate name \"u\" in list",
            ),
            (
                base.replace("current-context: ctx\n", ""),
                "no current-context set",
            ),
            (
                base.replace(
                    "{client-certificate-data: QQ==}",
                    "{client-certificate-data: QQ==, client-certificate: /x}",
                ),
                "client-certificate-data and client-certificate are both specified",
            ),
        ] {
            let e = parse_credentials(&text, p).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// A syntax error on (or next to) a line holding key material: the message says where,
    /// never what (the parser's own message quotes the lines around the error).
    #[test]
    fn errors_never_quote_the_document() {
        let p = Path::new("/k/admin.conf");
        let secret = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSU00";
        for text in [
            format!("users:\n- name: a\n  user:\n    client-key-data: {secret}: x\n"),
            format!("users:\n- name: a\n  user:\n    client-key-data: {secret}\n   bad: [\n"),
            format!("users: \"{secret}\"\n"),
            format!("users:\n- name: a\n  user:\n    client-key-data: [{secret}\n"),
        ] {
            let e = parse_credentials(&text, p).unwrap_err().to_string();
            assert!(!e.contains(&secret[..12]), "{e}");
            assert!(e.starts_with("/k/admin.conf: "), "{e}");
        }
    }
}
