use std::process::ExitCode;

use anyhow::Result;
use kubepki_pki::ops::renew::{self, Component};
use kubepki_pki::ops::restore;
use time::OffsetDateTime;

use crate::out::{errln, outln};
use crate::restart;
use crate::settings::certs::{Renew, Restore};

pub fn run(args: &Renew, now: OffsetDateTime) -> Result<ExitCode> {
    let (layout, req) = (args.layout.clone(), &args.request);
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

    let plan = renew::plan(&layout, req, now)?;
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
            advise(&renew::restart_needed(&items), true, args.restart.is_some());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let backup_dir = args.backup_dir.path(&session, now);
    let outcome = match renew::execute(&session, &plan, req, now, &backup_dir) {
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
    if let Some(ropts) = &args.restart {
        let (statics, others): (Vec<Component>, Vec<Component>) =
            comps.iter().partition(|c| c.is_static_pod());
        let results = restart::restart_all(&statics, ropts);
        let etcd = renew::reloaded_by_etcd(&outcome.renewed);
        for line in restart::summary(&results, &others, etcd) {
            outln!("{line}");
        }
        return Ok(restart::exit_code(&results));
    }
    advise(&comps, false, false);
    Ok(ExitCode::SUCCESS)
}

/// What must restart. `restarting`: a dry run of `--restart-static-pods`, which would do it.
fn advise(comps: &[Component], dry_run: bool, restarting: bool) {
    let statics: Vec<&str> = comps
        .iter()
        .filter(|c| c.is_static_pod())
        .map(|c| c.name())
        .collect();
    let tense = if dry_run { "would then need" } else { "must" };
    if !statics.is_empty() && restarting {
        outln!(
            "[renew] {} would then be restarted, one at a time",
            statics.join(", ")
        );
    } else if !statics.is_empty() {
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

pub fn restore(args: &Restore, now: OffsetDateTime) -> Result<ExitCode> {
    let layout = args.layout.resolved()?;
    // A writing run reads the backup and the current files under the lock.
    let session = if args.dry_run {
        None
    } else {
        Some(super::open_session(&layout, args.wait, false)?)
    };
    let layout = session.as_ref().map_or(layout, |s| s.layout().clone());
    let plan = restore::plan(&args.backup, &layout)?;
    if plan.files.is_empty() {
        outln!(
            "[restore] {} holds no files: nothing to restore",
            args.backup.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(session) = session else {
        for f in &plan.files {
            outln!("[restore] would restore {}", f.original.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    for f in &plan.files {
        outln!("[restore] restoring {}", f.original.display());
    }
    let before = args.backup_dir.path(&session, now);
    let restored = restore::execute(&session, &plan, &before, now)?;
    outln!(
        "[restore] restored {} files; what they replaced is in {}",
        restored.len(),
        before.display()
    );
    let items: Vec<_> = restored
        .iter()
        .filter_map(|p| kubepki_pki::model::slot::owner_of(session.layout(), p))
        .collect();
    advise(&renew::restart_needed(&items), false, false);
    Ok(ExitCode::SUCCESS)
}
