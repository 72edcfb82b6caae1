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
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::ops::rotate::{Phase, Plan};

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

fn phase(p: Option<Phase>) -> &'static str {
    p.map_or("none", Phase::name)
}
