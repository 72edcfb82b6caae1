//! `kubepki ca rotate trust|switch|finish|rollback|status`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kubepki_pki::model::inventory::Component;
use kubepki_pki::ops::rotate::{self, NewMaterial, Plan, Step, Target};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::OutputFormat;
use crate::out::{data, errln, outln};
use crate::restart;
use crate::settings::rotate::{Rotate, RotateKubelet, RotateStatus, RotateTokens, Source};

/// What a step reports with `-o json|yaml`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Report {
    step: &'static str,
    dry_run: bool,
    changed: bool,
    targets: Vec<TargetReport>,
    written: Vec<PathBuf>,
    removed: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<PathBuf>,
    /// What must restart on this node to load the step, in order (etcd members one at a time
    /// across nodes).
    restart: Vec<&'static str>,
    /// The files kube-controller-manager signs with from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<Signer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_key: Option<String>,
    /// kubeadm join's --discovery-token-ca-cert-hash values accepted after this step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    discovery_token_ca_cert_hashes: Vec<String>,
    warnings: Vec<String>,
    /// With --kubeconfig: every node's recorded phases (before this step).
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<super::rotate_cluster::Phases>,
    /// With --kubeconfig: whether kube-public/cluster-info was updated.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_info_updated: Option<bool>,
    /// With --kubeconfig: objects whose caBundle embeds the old CA (kubepki cannot re-issue
    /// their servers' certificates).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    embedding_old_ca: Vec<String>,
}

#[derive(Serialize)]
struct Signer {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetReport {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    old: String,
    new: String,
    reissued: Vec<&'static str>,
}

fn phase(p: Option<rotate::Phase>) -> &'static str {
    p.map_or("none", |p| p.name())
}

pub fn run(args: &Rotate, now: OffsetDateTime) -> Result<ExitCode> {
    let text = args.output == OutputFormat::Text;
    // With -o json|yaml, stdout is the report alone; progress goes to stderr.
    let say = |line: String| {
        if text {
            outln!("{line}");
        } else {
            errln!("{line}");
        }
    };
    let session = if args.dry_run {
        if kubepki_pki::storage::session::interrupted(&args.layout) {
            say("[rotate] an interrupted run left a journal; the next real run will finish or undo it first".into());
        }
        None
    } else {
        Some(super::open_session(&args.layout, args.wait, false)?)
    };
    let layout = session
        .as_ref()
        .map_or_else(|| args.layout.clone(), |s| s.layout().clone());
    let mut report = Report {
        step: args.step.name(),
        dry_run: args.dry_run,
        ..Report::default()
    };

    // A worker: no CA key here, its trust follows the control plane's ca.crt (a file, or
    // kube-public/cluster-info, which kubepki keeps equal to it).
    let ca_key = layout.ca_key(kubepki_pki::model::inventory::ca(
        kubepki_pki::model::inventory::CaId::Ca,
    ));
    // A worker holds no CA key, no service-account key and no rotation record (a control-plane
    // node with an external CA still has sa.key).
    let is_worker = !kubepki_pki::fsio::exists(&ca_key)?
        && !kubepki_pki::fsio::exists(&layout.sa_key())?
        && !kubepki_pki::fsio::exists(&layout.rotation_state())?;
    if args.ca_bundle.is_some() && !is_worker {
        anyhow::bail!(
            "{}: this is a control-plane node (it has {} or a rotation record); --ca-bundle is for workers, which follow the control plane's ca.crt",
            layout.cert_dir.display(),
            if kubepki_pki::fsio::exists(&ca_key)? {
                "ca.key"
            } else {
                "sa.key"
            }
        );
    }
    let worker_source = match (&args.ca_bundle, &args.cluster) {
        (Some(b), _) => Some(WorkerSource::File(b.clone())),
        (None, Some((kc, node))) if is_worker => {
            let c = super::rotate_cluster::Cluster::connect(kc, node.clone())?;
            Some(WorkerSource::ClusterInfo(c.cluster_info_cas()?))
        }
        _ => None,
    };
    if let Some(src) = worker_source {
        return worker(args, session.as_ref(), &layout, src, now, report, say);
    }

    let new = match &args.source {
        Source::Archive { path, key } => NewMaterial::Imported(rotate::import(path, key, &layout)?),
        _ => args.material(),
    };
    let req = rotate::Request {
        step: args.step,
        targets: args.targets.clone(),
        new,
        validity: args.validity,
        ca_validity: args.ca_validity,
        force: args.force,
        kubelet_dir: Some(args.kubelet_dir.clone()),
    };
    let plan = rotate::plan(&layout, &req, now)?;
    for w in &plan.warnings {
        say(format!("[rotate] WARNING: {w}"));
    }
    report.warnings = plan.warnings.clone();
    describe(&plan, args.dry_run, &say);
    let cluster = match &args.cluster {
        Some((kc, node)) => Some(super::rotate_cluster::Cluster::connect(kc, node.clone())?),
        None => None,
    };
    let mut refusals = Vec::new();
    if let Some(c) = &cluster {
        let phases = c.phases()?;
        for b in c.behind(&plan, &phases) {
            if args.force {
                say(format!("[rotate] WARNING: {b}"));
            } else {
                refusals.push(b);
            }
        }
        if let Some(ca) = plan.targets.iter().find(|t| t.target == Target::Ca)
            && let Some(old) = &ca.old.cert
        {
            report.embedding_old_ca = c.embedding(old.der())?;
            for o in &report.embedding_old_ca {
                say(format!(
                    "[rotate] WARNING: {o} embeds the old ca in its caBundle: kubepki cannot re-issue its server's certificate; re-issue it with the new CA and update its caBundle before finish"
                ));
            }
        }
        report.nodes = Some(phases);
        // Service-account tokens the key being dropped signed stop working.
        let dropped = plan.targets.iter().find_map(|t| {
            (t.target == Target::Sa && t.changes && t.to.is_none()).then(|| {
                if args.step == Step::Finish {
                    (
                        &t.old,
                        "old",
                        "`kubepki ca rotate tokens --kubeconfig ...` re-issues them",
                    )
                } else {
                    (&t.new, "new", "they were re-issued during switch")
                }
            })
        });
        if let Some((key, which, how)) = dropped {
            let stale = c.old_key_tokens(key)?;
            if !stale.is_empty() {
                let msg = format!(
                    "{} service-account token Secrets are signed by the {which} key, which this step drops ({}); {how} (--force to go on anyway: they stop working)",
                    stale.len(),
                    stale.join(", ")
                );
                if args.force {
                    say(format!("[rotate] WARNING: {msg}"));
                } else {
                    refusals.push(msg);
                }
            }
        }
    }
    if !plan.problems.is_empty() || !refusals.is_empty() {
        for r in &refusals {
            errln!("error: {r}");
        }
        for p in &plan.problems {
            errln!("error: {p}");
        }
        errln!("error: nothing was changed");
        return Ok(ExitCode::FAILURE);
    }
    report.changed = plan.changes();
    report.targets = plan
        .targets
        .iter()
        .map(|t| TargetReport {
            name: t.target.name(),
            from: phase(t.from),
            to: phase(t.to),
            old: t.old.describe(),
            new: t.new.describe(),
            reissued: t.reissued.clone(),
        })
        .collect();
    report.restart = plan.restart.iter().map(|c| c.name()).collect();
    let (cert, key) = plan.signer_after();
    report.signer = Some(Signer { cert, key });
    if let Some(ca) = plan.targets.iter().find(|t| t.target == Target::Ca) {
        let after_new = matches!(args.step, Step::Switch | Step::Finish)
            || (args.step == Step::Trust && ca.to.is_some());
        report.discovery_token_ca_cert_hashes = match (args.step, after_new) {
            (Step::Finish, _) => vec![ca.new.discovery_hash()],
            (Step::Rollback, _) if ca.to.is_none() => vec![ca.old.discovery_hash()],
            (_, _) => vec![ca.old.discovery_hash(), ca.new.discovery_hash()],
        };
    }

    let Some(session) = session else {
        for f in &plan.files {
            say(format!("[rotate] would write {}", f.path.display()));
        }
        for p in &plan.removed {
            say(format!("[rotate] would remove {}", p.display()));
        }
        advise(&plan.restart, true, &say);
        report.written = plan.files.iter().map(|f| f.path.clone()).collect();
        report.removed = plan.removed.clone();
        return finish_report(args, &report);
    };
    let backup_dir = args.backup_dir.path(&session, now);
    let outcome = match rotate::execute(&session, &plan, now, &backup_dir) {
        Ok(o) => o,
        Err(e) => {
            errln!("error: {e}");
            if kubepki_pki::storage::session::interrupted(&layout) {
                errln!(
                    "error: the step stopped half-way; `{}` finishes it",
                    super::recover_command(&layout)
                );
            } else {
                errln!("error: nothing was changed");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    report.written = plan.files.iter().map(|f| f.path.clone()).collect();
    report.removed = plan.removed.clone();
    report.backup = outcome.backup.clone();
    if let Some(b) = &outcome.backup {
        // A restore would not remove what the step created (the record, the other half of
        // each pair): rollback is the way back.
        say(format!(
            "[rotate] the previous files are in {}; `kubepki ca rotate rollback` steps back",
            b.display()
        ));
    }
    if !plan.changes() {
        say(format!(
            "[rotate] nothing to do: already {}",
            plan.targets
                .iter()
                .map(|t| format!("{} {}", t.target.name(), phase(t.to)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(path) = &args.export {
        let (bytes, key) = rotate::export(&plan)?;
        write_new(path, &bytes)?;
        say(format!(
            "[rotate] the new CAs are in {}, encrypted; on each other control-plane node run `kubepki ca rotate trust {} --import <file> --certificate-key <key>` with this key (shown once, not stored):",
            path.display(),
            plan.targets
                .iter()
                .map(|t| t.target.name())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        if text {
            outln!("{key}");
        }
        report.certificate_key = Some(key);
    }
    if let Some(c) = &cluster {
        let phases = report.nodes.clone().unwrap_or_default();
        let ca_file = layout.ca_cert(kubepki_pki::model::inventory::ca(
            kubepki_pki::model::inventory::CaId::Ca,
        ));
        let synced = c.record(&plan, &phases).and_then(|()| {
            if plan.targets.iter().any(|t| t.target == Target::Ca) {
                let bundle = kubepki_pki::crypto::files::read_ca_bundle_pem(&ca_file)?;
                c.cluster_info(&bundle).map(Some)
            } else {
                Ok(None)
            }
        });
        match synced {
            Ok(updated) => {
                report.cluster_info_updated = updated;
                if updated == Some(true) {
                    say("[rotate] kube-public/cluster-info now trusts what ca.crt trusts".into());
                }
            }
            Err(e) => {
                errln!("error: {e:#}");
                errln!(
                    "error: this node's step is done; rerun the same command to update the cluster objects"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    for h in &report.discovery_token_ca_cert_hashes {
        say(format!(
            "[rotate] kubeadm join accepts --discovery-token-ca-cert-hash {h}"
        ));
    }
    let code = if !plan.changes() {
        ExitCode::SUCCESS
    } else if let Some(ropts) = &args.restart {
        let (statics, others): (Vec<Component>, Vec<Component>) =
            plan.restart.iter().partition(|c| c.is_static_pod());
        let results = restart::restart_all(&statics, ropts);
        for line in restart::summary(&results, &others, false) {
            say(line.replacen("[renew]", "[rotate]", 1));
        }
        restart::exit_code(&results)
    } else {
        advise(&plan.restart, false, &say);
        ExitCode::SUCCESS
    };
    // kube-apiserver publishes its client CAs to extension API servers in
    // kube-system/extension-apiserver-authentication, adding to what is there and dropping a CA
    // only when it expires: after finish the old one would stay trusted by them. Deleted, the
    // API servers publish it again from the files they run with (so run finish again with
    // --kubeconfig once every API server runs the new files; it is idempotent).
    if let Some(c) = &cluster
        && args.step == Step::Finish
        && plan
            .targets
            .iter()
            .any(|t| matches!(t.target, Target::Ca | Target::FrontProxyCa) && t.to.is_none())
    {
        match c.refresh_extension_authentication() {
            Ok(()) => say(
                "[rotate] deleted kube-system/extension-apiserver-authentication: the API servers publish it again with the CAs they run with (run finish again with --kubeconfig once every API server has restarted)"
                    .into(),
            ),
            Err(e) => {
                errln!("error: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if !plan.changes() {
        return finish_report(args, &report);
    }
    let written = finish_report(args, &report)?;
    Ok(if code == ExitCode::SUCCESS {
        written
    } else {
        code
    })
}

fn describe(plan: &Plan, dry_run: bool, say: &impl Fn(String)) {
    let verb = if dry_run { "would move" } else { "moves" };
    for t in &plan.targets {
        if !t.changes {
            continue;
        }
        say(format!(
            "[rotate] {} {verb} from {} to {} (old {}, new {})",
            t.target.name(),
            phase(t.from),
            phase(t.to),
            t.old.describe(),
            t.new.describe()
        ));
        if !t.reissued.is_empty() {
            say(format!(
                "[rotate] {}: re-issued by the {} CA: {}",
                t.target.name(),
                if t.to == Some(rotate::Phase::Switch) {
                    "new"
                } else {
                    "old"
                },
                t.reissued.join(", ")
            ));
        }
    }
}

fn advise(comps: &[Component], dry_run: bool, say: &impl Fn(String)) {
    if comps.is_empty() {
        return;
    }
    let tense = if dry_run {
        "would then need to"
    } else {
        "must"
    };
    say(format!(
        "[rotate] restart, one at a time and waiting for each to be healthy, before the next node: {} ({tense} restart to load this step; static pods: rerun with --restart-static-pods; etcd members one node at a time)",
        comps
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if comps.contains(&Component::Kubelet) {
        say("[rotate] the kubelet reloads its client CA file by itself; it must restart to load kubelet.conf: systemctl restart kubelet".into());
    }
}

/// Creates `path` with `bytes`, mode 0600, never replacing a file.
fn write_new(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create the archive", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("{}: cannot write the archive", path.display()))
}

fn finish_report(args: &Rotate, report: &Report) -> Result<ExitCode> {
    match args.output {
        OutputFormat::Text => {}
        OutputFormat::Json => {
            data(format!("{}\n", serde_json::to_string_pretty(report)?).as_bytes())?
        }
        OutputFormat::Yaml => data(serde_saphyr::to_string(report)?.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

enum WorkerSource {
    File(PathBuf),
    ClusterInfo(Vec<kubepki_pki::crypto::cert::Certificate>),
}

/// A worker: its trust follows the control plane's ca.crt.
fn worker(
    args: &Rotate,
    session: Option<&kubepki_pki::storage::session::Session>,
    layout: &kubepki_pki::model::layout::Layout,
    src: WorkerSource,
    now: OffsetDateTime,
    mut report: Report,
    say: impl Fn(String),
) -> Result<ExitCode> {
    let files = match src {
        WorkerSource::File(bundle) => rotate::worker_files(layout, &bundle)?,
        WorkerSource::ClusterInfo(certs) => rotate::worker_files_for(
            layout,
            certs,
            std::path::Path::new("ConfigMap kube-public/cluster-info"),
        )?,
    };
    report.changed = !files.is_empty();
    report.written = files.iter().map(|f| f.path.clone()).collect();
    let kubelet_conf = files
        .iter()
        .any(|f| f.path.file_name().is_some_and(|n| n == "kubelet.conf"));
    if kubelet_conf {
        report.restart = vec![Component::Kubelet.name()];
    }
    let verb = if session.is_none() {
        "would write"
    } else {
        "writes"
    };
    for f in &files {
        say(format!("[rotate] worker: {verb} {}", f.path.display()));
    }
    if files.is_empty() {
        say("[rotate] worker: already trusts exactly this bundle; nothing to do".into());
    }
    if let Some(s) = session {
        let backup = args.backup_dir.path(s, now);
        let out = rotate::execute_files(s, &files, now, &backup)?;
        report.backup = out.backup;
    }
    if kubelet_conf {
        say("[rotate] worker: the kubelet must restart to load kubelet.conf: systemctl restart kubelet".into());
    }
    finish_report(args, &report)
}

pub fn status(args: &RotateStatus) -> Result<ExitCode> {
    let kd = args
        .kubelet_dir
        .exists()
        .then_some(args.kubelet_dir.as_path());
    let st = rotate::status(&args.layout, kd)?;
    match args.output {
        OutputFormat::Json => {
            data(
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&serde_json::json!({ "rotations": st }))?
                )
                .as_bytes(),
            )?;
        }
        OutputFormat::Yaml => {
            data(serde_saphyr::to_string(&serde_json::json!({ "rotations": st }))?.as_bytes())?
        }
        OutputFormat::Text => {
            for s in &st {
                let mut line = format!("{:<15} {}", s.name, s.phase);
                if let Some(e) = &s.error {
                    line.push_str(&format!("  ERROR: {e}"));
                }
                if let Some(o) = &s.old {
                    line.push_str(&format!(
                        "  {} {o}",
                        if s.new.is_some() { "old" } else { "current" }
                    ));
                }
                if let Some(n) = &s.new {
                    line.push_str(&format!("  new {n}"));
                }
                outln!("{line}");
                for p in &s.trusts_old {
                    outln!("    still trusts the old one: {}", p.display());
                }
                for p in &s.signed_by_old {
                    outln!("    still signed by the old one: {}", p.display());
                }
            }
        }
    }
    // A target whose files could not be read or disagree with the record is an error.
    Ok(if st.iter().any(|s| s.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The kubelet's certificates that move aside so that it requests new ones.
const KUBELET_CURRENT: [&str; 2] = ["kubelet-client-current.pem", "kubelet-server-current.pem"];

pub fn kubelet(args: &RotateKubelet, now: OffsetDateTime) -> Result<ExitCode> {
    use kubepki_pki::crypto::cert::Certificate;
    let session = super::open_session(&args.layout, args.wait, false)?;
    let layout = session.layout();
    let state = rotate::State::read(layout)?;
    let ca_file = layout.ca_cert(kubepki_pki::model::inventory::ca(
        kubepki_pki::model::inventory::CaId::Ca,
    ));
    let cas = kubepki_pki::crypto::files::read_cert_chain(&ca_file)?
        .with_context(|| format!("{}: no such file", ca_file.display()))?;
    match state.phase(Target::Ca) {
        Some(rotate::Phase::Switch) => {}
        // A worker: no rotation record; it must trust both CAs (its trust step ran).
        None if cas.len() >= 2
            && !kubepki_pki::fsio::exists(&layout.ca_key(kubepki_pki::model::inventory::ca(
                kubepki_pki::model::inventory::CaId::Ca,
            )))? => {}
        p => anyhow::bail!(
            "{}: the rotation of ca is in phase {} here, not switch; the kubelet's new certificates would not come from the new CA (on a worker: after the control plane's switch, once this node trusts both CAs)",
            layout.rotation_state().display(),
            phase(p)
        ),
    }
    let pki = args.kubelet_dir.join("pki");
    let current = pki.join(KUBELET_CURRENT[0]);
    // The kubelet authenticates its request with the certificate it has (the old CA still
    // trusts it until finish): moved into kubelet.conf, it is what the kubelet starts from.
    let bytes = kubepki_pki::fsio::read(&current)?;
    let cert = Certificate::from_pem_with_key(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", current.display()))?
        .remove(0);
    let key = kubepki_pki::crypto::key::PrivateKey::from_pem(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", current.display()))?;
    if !key.matches_public_key(cert.public_key_der()) {
        anyhow::bail!(
            "{}: the key does not match the certificate",
            current.display()
        );
    }
    if now >= cert.not_after {
        anyhow::bail!(
            "{}: expired on {}; `kubepki kubeconfig kubelet --write` makes a new kubelet.conf",
            current.display(),
            kubepki_pki::format::dates::format_date(cert.not_after)
        );
    }
    if !cas.iter().any(|ca| cert.is_signed_by(ca)) {
        anyhow::bail!(
            "{}: not signed by a CA of {}",
            current.display(),
            ca_file.display()
        );
    }
    if !cert.common_name.starts_with("system:node:") {
        anyhow::bail!(
            "{}: the certificate is for {:?}, not a node",
            current.display(),
            cert.common_name
        );
    }
    let key_pem = key.to_pem().map_err(anyhow::Error::msg)?;
    let backup = super::kubeconfig::write_embedded_kubelet_conf(
        &session,
        &cert.common_name,
        &cert.to_pem(),
        &key_pem,
        now,
    )?
    .unwrap_or_else(|| session.new_backup_dir(now));
    outln!(
        "[rotate] kubelet.conf now embeds the kubelet's current client certificate ({}); the previous kubelet.conf is in {}",
        cert.common_name,
        backup.display()
    );
    let keep = backup.join("kubelet-pki");
    for f in KUBELET_CURRENT {
        let p = pki.join(f);
        if p.symlink_metadata().is_err() {
            continue;
        }
        // A copy of what the link points at (the certificate and its key), then the link goes:
        // without a current certificate the kubelet starts from kubelet.conf's and, as it does
        // after a bootstrap, asks for a new one at once.
        kubepki_pki::fsio::create_dirs(&keep, 0o700)?;
        let bytes = kubepki_pki::fsio::read(&p)?;
        kubepki_pki::fsio::write_atomic(&keep.join(f), &bytes, 0o600)?;
        std::fs::remove_file(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        outln!(
            "[rotate] moved {} to {}",
            p.display(),
            keep.join(f).display()
        );
    }
    // The dated files (the kubelet keeps every certificate it had, the current ones among them)
    // hold keys of certificates the old CA signed: they go into the backup too.
    let mut dated: Vec<std::path::PathBuf> = std::fs::read_dir(&pki)
        .with_context(|| format!("{}: cannot list", pki.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (n.starts_with("kubelet-client-2") || n.starts_with("kubelet-server-2"))
                && n.ends_with(".pem")
                && p.symlink_metadata().is_ok_and(|m| m.is_file())
        })
        .collect();
    dated.sort();
    for p in dated {
        let name = p
            .file_name()
            .map(std::path::Path::new)
            .unwrap_or(p.as_path());
        kubepki_pki::fsio::create_dirs(&keep, 0o700)?;
        kubepki_pki::fsio::write_atomic(&keep.join(name), &kubepki_pki::fsio::read(&p)?, 0o600)?;
        std::fs::remove_file(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        outln!(
            "[rotate] moved {} to {}",
            p.display(),
            keep.join(name).display()
        );
    }
    let node = cert.common_name.trim_start_matches("system:node:");
    outln!(
        "[rotate] restart the kubelet (systemctl restart kubelet): it requests its client and serving certificates from the new CA through CSRs; then `kubepki kubeconfig kubelet --node-name {} --rotated --kubelet-dir {} --write` points kubelet.conf at them again",
        super::sh(std::path::Path::new(node)),
        super::sh(&args.kubelet_dir)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn tokens(args: &RotateTokens) -> Result<ExitCode> {
    let state = rotate::State::read(&args.layout)?;
    if state.phase(Target::Sa) != Some(rotate::Phase::Switch) {
        anyhow::bail!(
            "{}: the rotation of sa is not in phase switch (it is {}); new tokens would be signed by the old key",
            args.layout.rotation_state().display(),
            phase(state.phase(Target::Sa))
        );
    }
    let Some((old, Some(new))) = rotate::sides(&args.layout, Target::Sa)? else {
        anyhow::bail!(
            "{}: no service-account key rotation found",
            args.layout.sa_pub().display()
        );
    };
    let node = crate::detect::node_name().unwrap_or_default();
    let c = super::rotate_cluster::Cluster::connect(&args.kubeconfig, node)?;
    if args.dry_run {
        for t in c.old_key_tokens(&old)? {
            outln!("[rotate] would re-issue token Secret {t}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let say = |l: String| outln!("{l}");
    let done = c.reissue_tokens(&old, &new, args.timeout, &say)?;
    outln!(
        "[rotate] {} token Secrets re-issued with the new key; pods receive them through their Secret volumes at the kubelet's next sync",
        done.len()
    );
    Ok(ExitCode::SUCCESS)
}
