//! What a CA rotation step does through the API server when `--kubeconfig` is given: it sees
//! where the other control-plane nodes are (each records its phases in the ConfigMap
//! `kube-system/kubepki-ca-rotation`), makes `kube-public/cluster-info` trust what the node's
//! ca.crt trusts (so `kubeadm join` keeps working), and names the objects that embed the old
//! CA and that kubepki cannot re-issue (webhook and APIService `caBundle`s).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::ops::rotate::{self, Phase, Plan, Side};

use crate::cli::KubeClientArgs;

const RECORD_NS: &str = "kube-system";
const RECORD: &str = "kubepki-ca-rotation";

/// Each node's phases, as recorded: node -> target -> phase ("none", "trust", "switch").
pub type Phases = BTreeMap<String, BTreeMap<String, String>>;

pub struct Cluster {
    rt: tokio::runtime::Runtime,
    client: Client,
    node: String,
}

impl Cluster {
    pub fn connect(kubeconfig: &Path, node: String) -> Result<Cluster> {
        let rt = super::csr::runtime()?;
        let args = KubeClientArgs {
            kubeconfig: Some(kubeconfig.to_path_buf()),
        };
        let client = rt.block_on(super::csr::client(&args))?;
        Ok(Cluster { rt, client, node })
    }

    /// Every node's recorded phases.
    pub fn phases(&self) -> Result<Phases> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), RECORD_NS);
        let cm = self
            .rt
            .block_on(api.get_opt(RECORD))
            .with_context(|| format!("cannot read ConfigMap {RECORD_NS}/{RECORD}"))?;
        let mut out = Phases::new();
        for (node, v) in cm.and_then(|c| c.data).unwrap_or_default() {
            if let Ok(m) = serde_json::from_str(&v) {
                out.insert(node, m);
            }
        }
        // A control-plane node that never recorded a step is at none.
        let nodes: Api<Node> = Api::all(self.client.clone());
        for label in [
            "node-role.kubernetes.io/control-plane",
            "node-role.kubernetes.io/master",
        ] {
            let list = self
                .rt
                .block_on(nodes.list(&ListParams::default().labels(label)))
                .context("cannot list the control-plane Nodes")?;
            for n in list {
                out.entry(n.name_any()).or_default();
            }
        }
        Ok(out)
    }

    /// What another node's record says that forbids the step: a node whose phase of a
    /// changing target is neither where this node starts nor where it goes.
    pub fn behind(&self, plan: &Plan, phases: &Phases) -> Vec<String> {
        let mut out = Vec::new();
        for t in plan.targets.iter().filter(|t| t.changes) {
            let ok = [phase(t.from), phase(t.to)];
            for (node, m) in phases {
                if *node == self.node {
                    continue;
                }
                let theirs = m.get(t.target.name()).map_or("none", String::as_str);
                let their_new = m.get(&format!("{}.new", t.target.name()));
                let mine = &t.new.id()[..16];
                if theirs != "none" && their_new.is_some_and(|n| n != mine) {
                    out.push(format!(
                        "node {node} rotates {} to another new CA (sha256:{}) than this node (sha256:{mine}): every node must import the same archive",
                        t.target.name(),
                        their_new.map_or("", String::as_str)
                    ));
                    continue;
                }
                if !ok.contains(&theirs) {
                    out.push(format!(
                        "node {node} is at phase {theirs} of {}, and this node goes from {} to {}: finish the previous step on every node first (--force to go on anyway)",
                        t.target.name(),
                        ok[0],
                        ok[1]
                    ));
                }
            }
        }
        out
    }

    /// Records this node's phases after the step.
    pub fn record(&self, plan: &Plan, phases: &Phases) -> Result<()> {
        let mut mine = phases.get(&self.node).cloned().unwrap_or_default();
        for t in &plan.targets {
            mine.insert(t.target.name().into(), phase(t.to).into());
            let key = format!("{}.new", t.target.name());
            if t.to.is_some() {
                mine.insert(key, t.new.id()[..16].to_string());
            } else {
                mine.remove(&key);
            }
        }
        let value = serde_json::to_string(&mine)?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), RECORD_NS);
        let patch = serde_json::json!({ "data": { self.node.clone(): value } });
        self.rt
            .block_on(async {
                if api.get_opt(RECORD).await?.is_none() {
                    let mut cm = ConfigMap::default();
                    cm.metadata.name = Some(RECORD.into());
                    let _ = api.create(&PostParams::default(), &cm).await;
                }
                api.patch(RECORD, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            })
            .with_context(|| {
                format!("cannot record this node's phase in ConfigMap {RECORD_NS}/{RECORD}")
            })
    }

    /// Makes `kube-public/cluster-info` embed `bundle` (the node's ca.crt); false when it
    /// already does or does not exist.
    pub fn cluster_info(&self, bundle: &str) -> Result<bool> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-public");
        let Some(cm) = self
            .rt
            .block_on(api.get_opt("cluster-info"))
            .context("cannot read ConfigMap kube-public/cluster-info")?
        else {
            return Ok(false);
        };
        let Some(text) = cm.data.as_ref().and_then(|d| d.get("kubeconfig")) else {
            return Ok(false);
        };
        let path = Path::new("ConfigMap kube-public/cluster-info");
        let Some(updated) = kubepki_pki::model::kubeconfig::replace_every_ca(text, path, bundle)?
        else {
            return Ok(false);
        };
        let patch = serde_json::json!({ "data": { "kubeconfig": updated } });
        self.rt
            .block_on(api.patch(
                "cluster-info",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ))
            .context("cannot update ConfigMap kube-public/cluster-info")?;
        Ok(true)
    }

    /// The CA certificates `kube-public/cluster-info` trusts (what kubepki keeps equal to the
    /// control plane's ca.crt): a worker's source for its trust.
    pub fn cluster_info_cas(&self) -> Result<Vec<Certificate>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-public");
        let cm = self
            .rt
            .block_on(api.get("cluster-info"))
            .context("cannot read ConfigMap kube-public/cluster-info")?;
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("kubeconfig"))
            .context("ConfigMap kube-public/cluster-info has no kubeconfig")?;
        Ok(kubepki_pki::model::kubeconfig::first_cluster_cas(
            text,
            Path::new("ConfigMap kube-public/cluster-info"),
        )?)
    }

    /// Deletes `kube-system/extension-apiserver-authentication` (absent is fine): the API
    /// servers write it again from their current client CA files.
    pub fn refresh_extension_authentication(&self) -> Result<()> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-system");
        match self.rt.block_on(api.delete(
            "extension-apiserver-authentication",
            &kube::api::DeleteParams::default(),
        )) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e)
                .context("cannot delete ConfigMap kube-system/extension-apiserver-authentication"),
        }
    }

    /// Webhook configurations and APIServices whose `caBundle` holds `old` (DER).
    pub fn embedding(&self, old: &[u8]) -> Result<Vec<String>> {
        let holds = |b: &Option<ByteString>| {
            b.as_ref().is_some_and(|b| {
                Certificate::from_pem_chain(&b.0)
                    .map(|cs| cs.iter().any(|c| c.der() == old))
                    .unwrap_or(false)
            })
        };
        let lp = ListParams::default();
        self.rt
            .block_on(async {
                let mut out = Vec::new();
                let m: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
                for w in m.list(&lp).await? {
                    if w.webhooks
                        .iter()
                        .flatten()
                        .any(|h| holds(&h.client_config.ca_bundle))
                    {
                        out.push(format!("MutatingWebhookConfiguration {}", w.name_any()));
                    }
                }
                let v: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
                for w in v.list(&lp).await? {
                    if w.webhooks
                        .iter()
                        .flatten()
                        .any(|h| holds(&h.client_config.ca_bundle))
                    {
                        out.push(format!("ValidatingWebhookConfiguration {}", w.name_any()));
                    }
                }
                let a: Api<APIService> = Api::all(self.client.clone());
                for s in a.list(&lp).await? {
                    if s.spec.as_ref().is_some_and(|s| holds(&s.ca_bundle)) {
                        out.push(format!("APIService {}", s.name_any()));
                    }
                }
                Ok::<_, kube::Error>(out)
            })
            .context("cannot list webhook configurations and APIServices")
    }
}

/// A legacy service-account token Secret: (namespace, name, service account, token).
struct TokenSecret {
    namespace: String,
    name: String,
    account: String,
    token: String,
}

impl Cluster {
    fn token_secrets(&self) -> Result<Vec<TokenSecret>> {
        let api: Api<Secret> = Api::all(self.client.clone());
        let lp = ListParams::default().fields("type=kubernetes.io/service-account-token");
        let list = self
            .rt
            .block_on(api.list(&lp))
            .context("cannot list service-account token Secrets")?;
        Ok(list
            .into_iter()
            .filter_map(|s| {
                let token = s.data.as_ref()?.get("token")?;
                Some(TokenSecret {
                    namespace: s.namespace().unwrap_or_default(),
                    account: s
                        .annotations()
                        .get("kubernetes.io/service-account.name")
                        .cloned()
                        .unwrap_or_default(),
                    name: s.name_any(),
                    token: String::from_utf8_lossy(&token.0).into_owned(),
                })
            })
            .collect())
    }

    /// Token Secrets whose token the key `old` signed, as `namespace/name`.
    pub fn old_key_tokens(&self, old: &Side) -> Result<Vec<String>> {
        Ok(self
            .token_secrets()?
            .into_iter()
            .filter(|t| rotate::token_signed_by(&t.token, old))
            .map(|t| format!("{}/{}", t.namespace, t.name))
            .collect())
    }

    /// Empties the token of every token Secret `old` signed, so that the controller-manager's
    /// tokens controller (signing with `new` since switch) puts a new one into the same Secret
    /// (pods' volumes name it, so they receive the new token), and waits (at most `limit`)
    /// until each holds a token signed by `new`.
    pub fn reissue_tokens(
        &self,
        old: &Side,
        new: &Side,
        limit: std::time::Duration,
        say: &dyn Fn(String),
    ) -> Result<Vec<String>> {
        let stale: Vec<TokenSecret> = self
            .token_secrets()?
            .into_iter()
            .filter(|t| rotate::token_signed_by(&t.token, old))
            .collect();
        for t in &stale {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &t.namespace);
            let patch = serde_json::json!({ "data": { "token": null } });
            self.rt
                .block_on(api.patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch)))
                .with_context(|| format!("cannot update Secret {}/{}", t.namespace, t.name))?;
            say(format!(
                "[rotate] cleared the token of Secret {}/{} (service account {}), signed by the old key",
                t.namespace, t.name, t.account
            ));
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            let now = self.token_secrets()?;
            let missing: Vec<String> = stale
                .iter()
                .filter(|s| {
                    !now.iter().any(|t| {
                        t.namespace == s.namespace
                            && t.name == s.name
                            && rotate::token_signed_by(&t.token, new)
                    })
                })
                .map(|s| format!("{}/{}", s.namespace, s.name))
                .collect();
            if missing.is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "no new token signed by the new key yet in the Secrets {}: is the controller-manager running with the new sa.key (restarted after switch)?",
                    missing.join(", ")
                );
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        Ok(stale
            .into_iter()
            .map(|t| format!("{}/{}", t.namespace, t.name))
            .collect())
    }
}

fn phase(p: Option<Phase>) -> &'static str {
    p.map_or("none", Phase::name)
}
