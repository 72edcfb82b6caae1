use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use kubepki_pki::model::layout::Layout;
use kubepki_pki::model::params::DEFAULT_CERT_VALIDITY;
use kubepki_pki::ops::renew::{self, Component, ExtraSans, Request, Selection};
use kubepki_pki::storage::backup;
use time::OffsetDateTime;

use crate::cli::{RenewArgs, RestartArgs, RestoreArgs};
use crate::out::{errln, outln};
use crate::restart;

fn restart_options(args: &RestartArgs, kubeconfig_dir: &Path) -> restart::Options {
    restart::Options {
        manifests_dir: args.manifests_dir.clone(),
        hold_dir: restart::hold_dir(kubeconfig_dir),
        file_check_frequency: args.file_check_frequency,
        timeout: args.restart_timeout,
    }
}

pub fn run(args: &RenewArgs, now: OffsetDateTime) -> Result<ExitCode> {
    let r = super::resolve(&args.dirs)?;
    let layout = Layout::new(&r.cert_dir, &r.kubeconfig_dir);
    let cfg = r.config.clone().unwrap_or_default();
    let selection = if args.names.iter().any(|n| n == "all") {
        if args.names.len() > 1 {
            bail!("`all` cannot be combined with other names");
        }
        Selection::All
    } else {
        Selection::Named(args.names.clone())
    };
    let with = |extra: &[String]| -> Vec<String> {
        args.add_sans
            .iter()
            .filter(|s| !s.is_empty())
            .chain(extra)
            .cloned()
            .collect()
    };
    let req = Request {
        selection,
        expiring_within: args.expiring_within,
        validity: args
            .validity
            .or(cfg.cert_validity)
            .unwrap_or(DEFAULT_CERT_VALIDITY),
        extra_sans: ExtraSans {
            apiserver: with(&cfg.apiserver_cert_sans),
            etcd_server: with(&cfg.etcd_server_cert_sans),
            etcd_peer: with(&cfg.etcd_peer_cert_sans),
        },
        key_algorithm: args.encryption_algorithm.or(cfg.encryption_algorithm),
        local_etcd: !cfg.external_etcd,
    };

    req.validate()?;

    let ropts = restart_options(&args.restart, &layout.kubeconfig_dir);
    let session = if args.dry_run {
        if kubepki_pki::storage::session::interrupted(&layout) {
            outln!(
                "[renew] an interrupted run left a journal; the next real run will finish or undo it first"
            );
        }
        None
    } else {
        Some(super::open_session(&layout, args.wait, false)?)
    };
    // Within a session, everything is planned on its absolute paths.
    let layout = session.as_ref().map_or(layout, |s| s.layout().clone());

    let plan = renew::plan(&layout, &req, now)?;
    for w in &plan.warnings {
        outln!("[renew] WARNING: {w}");
    }
    // "renewed" is said once it is true: after the swap (a dry run says "would be renewed").
    let done_later =
        |t: &&renew::Target| !args.dry_run && matches!(t.action, renew::Action::Renew { .. });
    for t in plan.targets.iter().filter(|t| !done_later(t)) {
        outln!("[renew] {}", renew::describe(t, args.dry_run));
    }
    if !plan.problems.is_empty() {
        for p in &plan.problems {
            errln!("error: {p}");
        }
        errln!("error: nothing was changed");
        return Ok(ExitCode::FAILURE);
    }
    let items: Vec<_> = plan.to_renew().map(|t| t.item).collect();
    let Some(session) = session else {
        if items.is_empty() {
            outln!("[renew] nothing would be renewed");
        } else {
            advise(&renew::restart_needed(&items), true);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let backup_dir = match &args.backup_dir {
        Some(d) => d.clone(),
        None => session.new_backup_dir(now),
    };
    let outcome = match renew::execute(&session, &plan, &req, now, &backup_dir) {
        Ok(o) => o,
        Err(e) => {
            // One line per failure, naming the file (not anyhow's repeated source chain).
            errln!("error: {e}");
            if kubepki_pki::storage::session::interrupted(&layout) {
                errln!(
                    "error: the renewal stopped half-way; `{}` finishes it",
                    super::recover_command(&layout)
                );
            } else {
                errln!("error: nothing was changed");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    for t in plan.targets.iter().filter(done_later) {
        outln!("[renew] {}", renew::describe(t, false));
    }
    if outcome.renewed.is_empty() {
        outln!("[renew] nothing to renew");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(b) = &outcome.backup {
        outln!(
            "[renew] the previous files are in {}; `{}` puts them back",
            b.display(),
            super::restore_command(b, &layout)
        );
    }
    let comps = renew::restart_needed(&outcome.renewed);
    if args.restart.restart_static_pods {
        let (statics, others): (Vec<Component>, Vec<Component>) =
            comps.iter().partition(|c| c.is_static_pod());
        let results = restart::restart_all(&statics, &ropts);
        let etcd = renew::reloaded_by_etcd(&outcome.renewed);
        for line in restart::summary(&results, &others, etcd) {
            outln!("{line}");
        }
        return Ok(restart::exit_code(&results));
    }
    advise(&comps, false);
    Ok(ExitCode::SUCCESS)
}

fn advise(comps: &[Component], dry_run: bool) {
    let statics: Vec<&str> = comps
        .iter()
        .filter(|c| c.is_static_pod())
        .map(|c| c.name())
        .collect();
    let tense = if dry_run { "would then need" } else { "must" };
    if !statics.is_empty() {
        outln!(
            "[renew] {} {tense} restart to load the renewed certificates (or rerun with --restart-static-pods)",
            statics.join(", ")
        );
    }
    if comps.contains(&Component::Kubelet) {
        outln!(
            "[renew] the kubelet {tense} restart to load the new kubelet.conf: systemctl restart kubelet"
        );
    }
    if comps.is_empty() && !dry_run {
        outln!("[renew] no component needs a restart: these certificates are read when used");
    }
}

pub fn restore(args: &RestoreArgs, now: OffsetDateTime) -> Result<ExitCode> {
    let r = super::resolve(&args.dirs)?;
    let layout = Layout::new(&r.cert_dir, &r.kubeconfig_dir).resolved()?;
    let m = backup::load(&args.backup)?;
    // The backup must be of this PKI: a restore writes only inside the directories the user
    // names (or kubeadm's defaults), never where an edited manifest points.
    let of_other = m.cert_dir != layout.cert_dir
        || m.kubeconfig_dir
            .as_ref()
            .is_some_and(|k| *k != layout.kubeconfig_dir);
    if of_other {
        bail!(
            "{}: this backup is of the PKI in {} and {}, not {} and {}; to restore it into that PKI, pass --cert-dir {} --kubeconfig-dir {}",
            args.backup.join(backup::MANIFEST).display(),
            m.cert_dir.display(),
            m.kubeconfig_dir
                .as_deref()
                .unwrap_or(&layout.kubeconfig_dir)
                .display(),
            layout.cert_dir.display(),
            layout.kubeconfig_dir.display(),
            m.cert_dir.display(),
            m.kubeconfig_dir
                .as_deref()
                .unwrap_or(&layout.kubeconfig_dir)
                .display(),
        );
    }
    let files = backup::plan_restore(&args.backup, &m, &layout)?;
    if files.is_empty() {
        outln!(
            "[restore] {} holds no files: nothing to restore",
            args.backup.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        for f in &files {
            outln!("[restore] would restore {}", f.original.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let session = super::open_session(&layout, args.wait, false)?;
    // Only once the lock is held: a refused run must not claim to be restoring.
    for f in &files {
        outln!("[restore] restoring {}", f.original.display());
    }
    let before = match &args.backup_dir {
        Some(d) => d.clone(),
        None => session.before_restore_dir(&args.backup, now),
    };
    // What is there now is backed up too: a restore must be undoable.
    let mut current = Vec::new();
    for f in &files {
        if kubepki_pki::fsio::exists(&f.original)? {
            current.push(f.original.clone());
        }
    }
    let mut tx = session.transaction("restore")?;
    for f in &files {
        tx.replace(&f.original, &f.contents, f.mode)?;
    }
    tx.back_up(
        &before,
        &current,
        session.layout(),
        &kubepki_pki::format::dates::rfc3339_utc(now),
    )?;
    let restored = tx.commit()?;
    outln!(
        "[restore] restored {} files; what they replaced is in {}",
        restored.len(),
        before.display()
    );
    let items: Vec<_> = restored
        .iter()
        .filter_map(|p| kubepki_pki::model::slot::owner_of(session.layout(), p))
        .collect();
    advise(&renew::restart_needed(&items), false);
    Ok(ExitCode::SUCCESS)
}
