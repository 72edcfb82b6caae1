//! Reading the cluster for the audit: paginated LISTs of what the checks judge, fed page by
//! page into the checks' accumulators ([`Scale`], [`Zones`], [`Namespaces`]), so that no more
//! than a few pages of objects are in memory however large the cluster is. Only LIST and the
//! API server's `/version` are called: the audit never changes the cluster.
//!
//! Each resource is fetched by a task of its own, a couple of pages ahead of the checks, so the
//! API server's work for one list overlaps the checks' work on another. The checks consume the
//! small lists first and the Pods last.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::Finding;
use crate::namespaces::Namespaces;
use crate::scale::{Limits, Scale, ScaleReport};
use crate::zones::Zones;

/// Which of the cluster's checks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks {
    pub scale: bool,
    pub zones: bool,
    pub pss: bool,
}

/// How to read the cluster.
#[derive(Clone, Debug)]
pub struct Options {
    pub checks: Checks,
    pub limits: Limits,
    /// Objects per LIST request (`limit`): kubectl's default is 500.
    pub page_size: u32,
}

/// What the cluster's checks found.
#[derive(Debug, Default)]
pub struct ClusterAudit {
    /// The API server's `gitVersion` (`v1.20.2`).
    pub api_server_version: String,
    pub scale: Option<ScaleReport>,
    pub findings: Vec<Finding>,
    /// Each listed node's kubelet version (`status.nodeInfo.kubeletVersion`), for the local
    /// node's version-skew check.
    pub kubelet_versions: BTreeMap<String, String>,
    /// How many objects of each resource were read, for progress and the report.
    pub listed: BTreeMap<&'static str, u64>,
}

/// A LIST that failed, naming the resource.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read the API server's version: {0}")]
    Version(#[source] kube::Error),
    #[error(
        "cannot list {resource}: the list changed too much while it was read (410 Gone: its \
         continue token expired); run the audit again, or raise --page-size"
    )]
    Expired { resource: &'static str },
    #[error("cannot list {resource}: {source}")]
    List {
        resource: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// The minor version of a `gitVersion` such as `v1.20.2` or `v1.33.1-gke.100`.
pub fn minor_version(git_version: &str) -> Option<u32> {
    crate::node::minor_version(git_version)
        .filter(|&(major, _)| major == 1)
        .map(|(_, minor)| minor)
}

/// Reads the cluster and runs the chosen checks. `progress` is told, after each page, the
/// resource and how many of it have been read so far.
pub async fn audit(
    client: Client,
    options: &Options,
    progress: &(dyn Fn(&'static str, u64) + Sync),
) -> Result<ClusterAudit, ClusterError> {
    let info = client
        .apiserver_version()
        .await
        .map_err(ClusterError::Version)?;
    let Checks { scale, zones, pss } = options.checks;
    let page = options.page_size.max(1);
    let all = |want: bool| want.then(|| client.clone());
    let mut nodes = fetch::<Node>("nodes", all(true), page);
    let mut namespaces = fetch::<Namespace>("namespaces", all(pss), page);
    let mut daemon_sets = fetch::<DaemonSet>("daemonsets", all(scale), page);
    let mut deployments = fetch::<Deployment>("deployments", all(scale || zones), page);
    let mut stateful_sets = fetch::<StatefulSet>("statefulsets", all(zones), page);
    let mut volumes = fetch::<PersistentVolume>("persistentvolumes", all(zones), page);
    let mut pods = fetch::<SlimPod>("pods", all(scale || zones || pss), page);

    let mut s = Scale::new(options.limits);
    let mut z = Zones::new();
    let mut n = Namespaces::new(minor_version(&info.git_version));
    let mut out = ClusterAudit {
        api_server_version: info.git_version.clone(),
        ..ClusterAudit::default()
    };
    let listed = &mut out.listed;
    let kubelets = &mut out.kubelet_versions;
    consume(&mut nodes, listed, progress, |node: &Node| {
        if let Some(info) = node.status.as_ref().and_then(|s| s.node_info.as_ref()) {
            let name = node.metadata.name.clone().unwrap_or_default();
            kubelets.insert(name, info.kubelet_version.clone());
        }
        s.add_node(node);
        z.add_node(node);
    })
    .await?;
    consume(&mut namespaces, listed, progress, |ns| n.add_namespace(ns)).await?;
    consume(&mut daemon_sets, listed, progress, |d| s.add_daemon_set(d)).await?;
    consume(&mut deployments, listed, progress, |d| {
        s.add_deployment(d);
        z.add_deployment(d);
    })
    .await?;
    consume(&mut stateful_sets, listed, progress, |st| {
        z.add_stateful_set(st)
    })
    .await?;
    consume(&mut volumes, listed, progress, |v| {
        z.add_persistent_volume(v)
    })
    .await?;
    consume(&mut pods, listed, progress, |p: &SlimPod| {
        let p = &p.0;
        s.add_pod(p);
        z.add_pod(p);
        n.add_pod(p);
    })
    .await?;

    if scale {
        let (report, findings) = s.finish();
        out.scale = Some(report);
        out.findings.extend(findings);
    }
    if zones {
        out.findings.extend(z.finish());
    }
    if pss {
        out.findings.extend(n.finish());
    }
    Ok(out)
}

/// A Pod with what the checks read of it: its metadata but managedFields, its spec, its phase.
///
/// Decoding is most of the audit's own work on a large cluster (150,000 Pods are 700 MiB of
/// JSON), and most of that went into fields no check reads: managedFields (a JSON tree per
/// manager), and the status the kubelet writes (conditions, container statuses). Those are
/// skipped while parsing and never allocated.
#[derive(Clone, Debug)]
struct SlimPod(Pod);

impl<'de> serde::Deserialize<'de> for SlimPod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            name: Option<String>,
            namespace: Option<String>,
            labels: Option<BTreeMap<String, String>>,
            annotations: Option<BTreeMap<String, String>>,
            owner_references: Option<Vec<OwnerReference>>,
        }
        #[derive(serde::Deserialize)]
        struct Status {
            phase: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Slim {
            metadata: Option<Meta>,
            spec: Option<PodSpec>,
            status: Option<Status>,
        }
        let slim = Slim::deserialize(d)?;
        let meta = slim.metadata.map(|m| ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: m.annotations,
            owner_references: m.owner_references,
            ..ObjectMeta::default()
        });
        Ok(SlimPod(Pod {
            metadata: meta.unwrap_or_default(),
            spec: slim.spec,
            status: slim.status.map(|s| PodStatus {
                phase: s.phase,
                ..PodStatus::default()
            }),
        }))
    }
}

impl Resource for SlimPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &mut self.0.metadata
    }
}

/// Pages of one resource as its fetching task delivers them; `None` when it is not needed.
type Pages<K> = Option<(&'static str, mpsc::Receiver<Result<Vec<K>, ClusterError>>)>;

/// Starts listing `K` in every namespace, `limit` at a time, two pages ahead of the consumer.
fn fetch<K>(resource: &'static str, client: Option<Client>, limit: u32) -> Pages<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let client = client?;
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let api: Api<K> = Api::all(client);
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(limit);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(kube::Error::Api(s)) if s.code == 410 => {
                    let _ = tx.send(Err(ClusterError::Expired { resource })).await;
                    return;
                }
                Err(source) => {
                    let _ = tx.send(Err(ClusterError::List { resource, source })).await;
                    return;
                }
            };
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if tx.send(Ok(page.items)).await.is_err() || token.is_none() {
                return;
            }
        }
    });
    Some((resource, rx))
}

/// Feeds every object of `pages` to `each`, page by page, and counts them.
async fn consume<K>(
    pages: &mut Pages<K>,
    listed: &mut BTreeMap<&'static str, u64>,
    progress: &(dyn Fn(&'static str, u64) + Sync),
    mut each: impl FnMut(&K),
) -> Result<(), ClusterError> {
    let Some((resource, rx)) = pages else {
        return Ok(());
    };
    let count = listed.entry(resource).or_default();
    while let Some(page) = rx.recv().await {
        let page = page?;
        page.iter().for_each(&mut each);
        *count += page.len() as u64;
        progress(resource, *count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{SlimPod, minor_version};
    use k8s_openapi::api::core::v1::Pod;

    /// What the checks read of a Pod decodes as the full type decodes it; the rest is dropped.
    #[test]
    fn a_slim_pod_keeps_what_the_checks_read() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-1", "namespace": "default", "uid": "u",
                "labels": {"app": "web"},
                "annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": "r", "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {}}}}],
            },
            "spec": {"nodeName": "n1", "hostNetwork": true,
                "containers": [{"name": "c", "image": "x",
                    "securityContext": {"privileged": true}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0,
                    "image": "x", "imageID": "", "state": {}}]},
        });
        let full: Pod = serde_json::from_value(json.clone()).unwrap();
        let slim: SlimPod = serde_json::from_value(json).unwrap();
        let slim = slim.0;
        assert_eq!(slim.spec, full.spec);
        let (m, f) = (&slim.metadata, &full.metadata);
        assert_eq!(
            (
                &m.name,
                &m.namespace,
                &m.labels,
                &m.annotations,
                &m.owner_references
            ),
            (
                &f.name,
                &f.namespace,
                &f.labels,
                &f.annotations,
                &f.owner_references
            )
        );
        assert_eq!(m.managed_fields, None);
        let status = slim.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.conditions, None);
        // An object without metadata or spec decodes (and the checks pass it over).
        let bare: SlimPod = serde_json::from_str("{}").unwrap();
        assert_eq!(bare.0, Pod::default());
    }

    #[test]
    fn minor_versions() {
        assert_eq!(minor_version("v1.20.2"), Some(20));
        assert_eq!(minor_version("v1.33.1-gke.100"), Some(33));
        assert_eq!(minor_version("1.9"), Some(9));
        assert_eq!(minor_version("v1.20+"), Some(20));
        assert_eq!(minor_version("v2.0.0"), None);
        assert_eq!(minor_version("garbage"), None);
        assert_eq!(minor_version(""), None);
    }
}
