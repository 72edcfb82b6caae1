use std::process::ExitCode;

use anyhow::{Result, bail};
use kubepki_pki::model::layout::Layout;
use kubepki_pki::ops::external;
use time::OffsetDateTime;

use crate::out::{errln, outln};
use crate::settings::certs::Import;
use crate::settings::cluster::GenerateCsr;

pub fn generate_csr(args: &GenerateCsr) -> Result<ExitCode> {
    let (mut p, sel) = (args.params.clone(), &args.selection);
    // Checked before anything (the cert dir included) is created; planned again under the
    // lock, after recovery, on the session's absolute paths.
    external::plan_csrs(&p, sel, args.csr_dir.as_deref())?;
    let session = super::open_session(
        &Layout::new(&p.cert_dir, &p.kubeconfig_dir),
        args.wait,
        true,
    )?;
    p.cert_dir = session.layout().cert_dir.clone();
    p.kubeconfig_dir = session.layout().kubeconfig_dir.clone();
    let jobs = external::plan_csrs(&p, sel, args.csr_dir.as_deref())?;
    external::write_csrs(&session, &jobs, &p, p.key_algorithm)?;
    for j in &jobs {
        outln!(
            "[csr] {}: wrote {} and {}{}",
            j.item.name(),
            j.key_path.display(),
            j.csr_path.display(),
            if j.from_existing {
                " (names copied from the current certificate)"
            } else {
                ""
            }
        );
    }
    outln!(
        "[csr] have the external CA sign each CSR, put the certificate beside it as <name>.crt, then run `kubepki certs import`"
    );
    Ok(ExitCode::SUCCESS)
}

pub fn import(args: &Import, now: OffsetDateTime) -> Result<ExitCode> {
    let layout = args.layout.clone();
    let session = if args.dry_run {
        None
    } else {
        Some(super::open_session(&layout, args.wait, false)?)
    };
    let layout = session.as_ref().map_or(layout, |s| s.layout().clone());
    let plan = external::plan_import(&layout, args.csr_dir.as_deref(), args.local_etcd, now)?;
    for w in &plan.findings.warnings {
        outln!("[import] WARNING: {w}");
    }
    for w in &plan.waiting {
        outln!(
            "[import] {}: no signed certificate beside it yet",
            w.display()
        );
    }
    if !plan.findings.is_ok() {
        for p in &plan.findings.problems {
            errln!("error: {p}");
        }
        errln!("error: nothing was installed");
        return Ok(ExitCode::FAILURE);
    }
    if plan.items.is_empty() {
        if plan.waiting.is_empty() {
            bail!(
                "no CSRs found in {}; run `kubepki certs generate-csr` first",
                args.csr_dir.as_ref().unwrap_or(&layout.cert_dir).display()
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    let report = |installed: &str| {
        for i in &plan.items {
            let what = if i.already {
                "already in place"
            } else {
                installed
            };
            outln!(
                "[import] {}: {} {what}",
                i.item.name(),
                i.returned.display()
            );
        }
    };
    let Some(session) = session else {
        report("would be installed");
        return Ok(ExitCode::SUCCESS);
    };
    let backup_dir = args.backup_dir.path(&session, now);
    // "installed" is said once it is true.
    let written = match external::execute_import(&session, &plan, &backup_dir, now) {
        Ok(w) => w,
        Err(e) => {
            errln!("error: {e}");
            if kubepki_pki::storage::session::interrupted(session.layout()) {
                errln!(
                    "error: the import stopped half-way; `{}` finishes it",
                    super::recover_command(session.layout())
                );
            } else {
                errln!("error: nothing was installed");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    report("installed");
    if backup_dir.exists() {
        outln!(
            "[import] replaced files were backed up to {}",
            backup_dir.display()
        );
    }
    outln!("[import] {} files written", written.len());
    Ok(if plan.waiting.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
