//! `kubepki csr list`, `kubepki csr approve`: thin wrappers around the kubepki-controller
//! crate (the rules live there, so a human sees the controller's verdict).

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use kubepki_controller::controller;
use kubepki_controller::facts;
use kubepki_controller::rules::{self, NodeInfo, Policy, Verdict};
use serde::Serialize;

use crate::cli::{KubeClientArgs, OutputFormat};
use crate::out::{errln, outln};
use crate::settings::controller::{CsrApprove, CsrList};

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(super) async fn client(args: &KubeClientArgs) -> Result<Client> {
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("{}: cannot read kubeconfig", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("{}: unusable kubeconfig", path.display()))?
        }
        None => Config::infer().await.context(
            "no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a cluster",
        )?,
    };
    // The API server's audit log and request metrics name the client by it.
    config.headers.push((
        ureq::http::header::USER_AGENT,
        ureq::http::HeaderValue::from_static(concat!("kubepki/", env!("CARGO_PKG_VERSION"))),
    ));
    Client::try_from(config).context("cannot build the API client")
}

/// One row of `csr list`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    name: String,
    age: String,
    signer_name: String,
    requestor: String,
    condition: String,
    verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_code: Option<String>,
    reason: String,
}

fn condition(csr: &CertificateSigningRequest) -> String {
    let mut parts = Vec::new();
    if facts::is_approved(csr) {
        parts.push("Approved");
    }
    if facts::is_denied(csr) {
        parts.push("Denied");
    }
    if facts::is_failed(csr) {
        parts.push("Failed");
    }
    if facts::has_certificate(csr) {
        parts.push("Issued");
    }
    if parts.is_empty() {
        "Pending".into()
    } else {
        parts.join(",")
    }
}

fn age(csr: &CertificateSigningRequest) -> String {
    let Some(t) = &csr.metadata.creation_timestamp else {
        return "<unknown>".into();
    };
    let secs = k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second();
    kubepki_pki::format::duration::human(secs.max(0))
}

/// Everything the rules need: all CSRs, all Nodes, and the pending index the controller
/// keeps (so each request's pending siblings are found without a scan per request).
struct World {
    csrs: Vec<CertificateSigningRequest>,
    by_name: HashMap<String, usize>,
    pending: facts::PendingIndex,
    nodes: HashMap<String, NodeInfo>,
}

async fn world(client: &Client) -> Result<World> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let csrs = csrs
        .list(&ListParams::default())
        .await
        .context("cannot list CertificateSigningRequests")?
        .items;
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .context("cannot list Nodes")?
        .items
        .iter()
        .map(|n| (n.name_any(), facts::node_info(n)))
        .collect();
    let mut pending = facts::PendingIndex::default();
    let mut by_name = HashMap::new();
    for (i, c) in csrs.iter().enumerate() {
        pending.apply(c);
        by_name.insert(c.name_any(), i);
    }
    Ok(World {
        csrs,
        by_name,
        pending,
        nodes,
    })
}

impl World {
    fn verdict(&self, csr: &CertificateSigningRequest, policy: &Policy) -> Verdict {
        let user = csr.spec.username.as_deref().unwrap_or("");
        let siblings = self
            .pending
            .names_of(user)
            .into_iter()
            .filter_map(|n| self.by_name.get(&n).map(|&i| &self.csrs[i]));
        let group = facts::pending_group(csr, siblings);
        let node = rules::node_name_of(user).and_then(|n| self.nodes.get(n));
        facts::verdicts_in_group(csr, &group, node, policy).0
    }
}

pub fn list(args: &CsrList) -> Result<ExitCode> {
    let policy = &args.policy;
    let world = runtime()?.block_on(async {
        let client = client(&args.client).await?;
        world(&client).await
    })?;
    let mut rows = Vec::new();
    for csr in &world.csrs {
        if !args.all && !facts::is_pending(csr) {
            continue;
        }
        let verdict = world.verdict(csr, policy);
        let (v, code, reason) = match &verdict {
            Verdict::NotOurs => (
                "-".to_string(),
                None,
                format!("signer {} is not kubelet-serving", csr.spec.signer_name),
            ),
            Verdict::Approve => ("approve".to_string(), None, "bound to its node".to_string()),
            Verdict::Deny(r) => (
                "deny".to_string(),
                Some(r.code().to_string()),
                r.to_string(),
            ),
        };
        rows.push(Row {
            name: csr.name_any(),
            age: age(csr),
            signer_name: csr.spec.signer_name.clone(),
            requestor: csr.spec.username.clone().unwrap_or_default(),
            condition: condition(csr),
            verdict: v,
            reason_code: code,
            reason,
        });
    }
    let text = match args.output {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&rows)?).into_bytes(),
        OutputFormat::Yaml => serde_saphyr::to_string(&rows)?.into_bytes(),
        OutputFormat::Text => {
            if rows.is_empty() {
                errln!(
                    "No {}CertificateSigningRequests found.",
                    if args.all { "" } else { "pending " }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(3);
            writeln!(
                tw,
                "NAME\tAGE\tSIGNERNAME\tREQUESTOR\tCONDITION\tVERDICT\tREASON"
            )?;
            for r in &rows {
                writeln!(
                    tw,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.name, r.age, r.signer_name, r.requestor, r.condition, r.verdict, r.reason
                )?;
            }
            tw.into_inner()?
        }
    };
    crate::out::data(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub fn approve(args: &CsrApprove) -> Result<ExitCode> {
    let policy = &args.policy;
    runtime()?.block_on(async {
        let client = client(&args.client).await?;
        let api: Api<CertificateSigningRequest> = Api::all(client.clone());
        let mut failed = false;
        for name in &args.names {
            if let Err(e) = approve_one(&client, &api, name, policy, args.force).await {
                errln!("error: {e:#}");
                failed = true;
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

async fn approve_one(
    client: &Client,
    api: &Api<CertificateSigningRequest>,
    name: &str,
    policy: &Policy,
    force: bool,
) -> Result<()> {
    // Two attempts: a conflict means the request changed between reading and writing.
    for _ in 0..2 {
        let csr = api
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read certificatesigningrequest {name}"))?
            .ok_or_else(|| anyhow!("certificatesigningrequest {name:?} not found"))?;
        if facts::is_approved(&csr) {
            outln!("certificatesigningrequest.certificates.k8s.io/{name} already approved");
            return Ok(());
        }
        if facts::is_denied(&csr) {
            bail!(
                "certificatesigningrequest {name} is already denied; a denied request cannot be approved"
            );
        }
        let verdict = world(client).await?.verdict(&csr, policy);
        let note = match &verdict {
            Verdict::Approve => "approved with kubepki csr approve: bound to its node".to_string(),
            Verdict::NotOurs if force => format!(
                "approved with kubepki csr approve --force (signer {} is not judged by kubepki's rules)",
                csr.spec.signer_name
            ),
            Verdict::NotOurs => bail!(
                "{name}: signer {} is not kubernetes.io/kubelet-serving, which is all kubepki's rules judge; use --force to approve it anyway",
                csr.spec.signer_name
            ),
            Verdict::Deny(r) if force => {
                errln!("warning: {name}: approving despite the rules (--force): {r}");
                format!("approved with kubepki csr approve --force despite: {r}")
            }
            Verdict::Deny(r) => bail!("{name}: refused: {r} (use --force to approve anyway)"),
        };
        match controller::set_condition(api, &csr, "Approved", "KubepkiManualApprove", &note).await
        {
            Ok(_) => {
                outln!("certificatesigningrequest.certificates.k8s.io/{name} approved");
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot approve {name}")),
        }
    }
    bail!("{name}: the request kept changing while approving it; try again")
}
