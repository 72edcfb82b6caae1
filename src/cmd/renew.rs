use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use kubepki_pki::backup;
use kubepki_pki::inventory;
use kubepki_pki::layout::Layout;
use kubepki_pki::params::DEFAULT_CERT_VALIDITY;
use kubepki_pki::renew::{self, Component, ExtraSans, Request, Selection};
use kubepki_pki::txn::{self, DirLock, Recovery, Replacement};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::cli::{RenewArgs, RestartArgs, RestoreArgs};
use crate::out::{errln, outln};
use crate::restart;

/// Takes the cert dir lock and repairs what an interrupted run left behind.
pub fn lock_and_recover(layout: &Layout, wait: bool) -> Result<DirLock> {
    let lock = DirLock::acquire(&layout.cert_dir, wait)?;
    let etcd = layout.cert_dir.join("etcd");
    let dirs = [
        layout.cert_dir.as_path(),
        etcd.as_path(),
        layout.kubeconfig_dir.as_path(),
    ];
    match txn::recover(&layout.cert_dir, &dirs)? {
        Recovery::Clean => {}
        Recovery::RolledForward { operation, files } => outln!(
            "[recover] completed an interrupted {operation} ({} files now hold the new versions)",
            files.len()
        ),
        Recovery::RolledBack { removed } => outln!(
            "[recover] an earlier run stopped before changing anything; removed its {} temporary files",
            removed.len()
        ),
    }
    for b in backup::remove_incomplete(&layout.kubeconfig_dir.join("kubepki-backups"))? {
        outln!(
            "[recover] removed {}, a backup an interrupted run had not finished",
            b.display()
        );
    }
    for m in restart::recover_held(&restart::hold_dir(&layout.kubeconfig_dir))? {
        outln!(
            "[recover] put back static pod manifest {} held by an interrupted run",
            m.display()
        );
    }
    Ok(lock)
}

pub fn stamp(now: OffsetDateTime) -> String {
    now.format(&format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// A directory name that does not exist yet: `<base>`, else `<base>-2`, `<base>-3`, ...
pub fn fresh_dir(base: PathBuf) -> PathBuf {
    if !base.exists() {
        return base;
    }
    (2..)
        .map(|i| PathBuf::from(format!("{}-{i}", base.display())))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

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
    let _lock = if args.dry_run {
        if layout.cert_dir.join(txn::JOURNAL).exists() {
            outln!(
                "[renew] an interrupted run left a journal; the next real run will complete it first"
            );
        }
        None
    } else {
        Some(lock_and_recover(&layout, args.wait)?)
    };

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
    let names: Vec<&str> = plan.to_renew().map(|t| t.name()).collect();
    if args.dry_run {
        if names.is_empty() {
            outln!("[renew] nothing would be renewed");
        } else {
            advise(&renew::restart_needed(&names), true);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let backup_dir = match &args.backup_dir {
        Some(d) => d.clone(),
        None => fresh_dir(
            layout
                .kubeconfig_dir
                .join("kubepki-backups")
                .join(stamp(now)),
        ),
    };
    let outcome = match renew::execute(&plan, &req, now, &backup_dir) {
        Ok(o) => o,
        Err(e) => {
            // One line per failure, naming the file (not anyhow's repeated source chain).
            errln!("error: {e}");
            if layout.cert_dir.join(txn::JOURNAL).exists() {
                errln!("error: the renewal stopped half-way; the next kubepki run completes it");
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
            "[renew] the previous files are in {}; `kubepki certs restore {}` puts them back",
            b.display(),
            b.display()
        );
    }
    let comps = renew::restart_needed(&outcome.renewed);
    if args.restart.restart_static_pods {
        let (statics, others): (Vec<Component>, Vec<Component>) =
            comps.iter().partition(|c| c.is_static_pod());
        let results = restart::restart_all(&statics, &ropts);
        let etcd = outcome
            .renewed
            .iter()
            .any(|n| matches!(*n, "etcd-server" | "etcd-peer"));
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
    let m = backup::load(&args.backup)?;
    let cert_dir = m.cert_dir.clone();
    if !cert_dir.is_dir() {
        bail!(
            "{}: the backup's certificate directory does not exist",
            cert_dir.display()
        );
    }
    if args.dry_run {
        for f in &m.files {
            outln!("[restore] would restore {}", f.original.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kubeconfig_dirs: Vec<PathBuf> = m
        .files
        .iter()
        .filter_map(|f| f.original.parent().map(Path::to_path_buf))
        .filter(|d| !d.starts_with(&cert_dir))
        .collect();
    let layout = Layout::new(
        &cert_dir,
        kubeconfig_dirs
            .first()
            .cloned()
            .unwrap_or_else(|| cert_dir.clone()),
    );
    let _lock = lock_and_recover(&layout, args.wait)?;
    // Only once the lock is held: a refused run must not claim to be restoring.
    for f in &m.files {
        outln!("[restore] restoring {}", f.original.display());
    }

    // What is there now is backed up too: a restore must be undoable.
    let current: Vec<PathBuf> = m
        .files
        .iter()
        .map(|f| f.original.clone())
        .filter(|p| p.exists())
        .collect();
    let before = match &args.backup_dir {
        Some(d) => d.clone(),
        None => fresh_dir(PathBuf::from(format!(
            "{}.before-restore-{}",
            args.backup.display().to_string().trim_end_matches('/'),
            stamp(now)
        ))),
    };
    backup::create(
        &before,
        &cert_dir,
        &current,
        "restore",
        &kubepki_pki::expiry::rfc3339_utc(now),
    )?;
    let mut r = Replacement::new(&cert_dir, "restore");
    backup::stage_restore(&args.backup, &m, &mut r)?;
    let restored = r.commit()?;
    outln!(
        "[restore] restored {} files; what they replaced is in {}",
        restored.len(),
        before.display()
    );
    let names: Vec<&str> = restored.iter().filter_map(|p| item_name(p)).collect();
    advise(&renew::restart_needed(&names), false);
    Ok(ExitCode::SUCCESS)
}

/// The inventory name of a file, by its path's ending.
fn item_name(p: &Path) -> Option<&'static str> {
    let s = p.to_string_lossy();
    inventory::LEAVES
        .iter()
        .find(|l| {
            s.ends_with(&format!("/{}.crt", l.base)) || s.ends_with(&format!("/{}.key", l.base))
        })
        .map(|l| l.name)
        .or_else(|| {
            inventory::KUBECONFIGS
                .iter()
                .find(|k| s.ends_with(&format!("/{}", k.name)))
                .map(|k| k.name)
        })
}
