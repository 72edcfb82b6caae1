use std::process::ExitCode;

use anyhow::Result;
use kubepki_pki::model::layout::Layout;
use kubepki_pki::ops::init::{self, Artifact, Decision, Event, Step};
use time::OffsetDateTime;

use crate::out::{errln, outln};
use crate::settings::cluster::Init;

pub fn run(args: &Init, now: OffsetDateTime) -> Result<ExitCode> {
    let mut p = args.params.clone();
    let dry = args.dry_run;
    let layout = Layout::new(&p.cert_dir, &p.kubeconfig_dir);
    let (shown_cert_dir, shown_kubeconfig_dir) = (p.cert_dir.clone(), p.kubeconfig_dir.clone());
    // A writing run reads only under the lock, after an interrupted run was finished or
    // undone. Where the cert dir does not exist yet, the plan is checked first, so that bad
    // input creates nothing, not even that directory.
    let session = if dry {
        if kubepki_pki::storage::session::interrupted(&layout) {
            outln!(
                "[dry-run] an interrupted kubepki run left a journal; the next real run will finish or undo it first"
            );
        }
        None
    } else if kubepki_pki::fsio::exists(&layout.cert_dir)? {
        Some(super::open_session(&layout, args.wait, false)?)
    } else if init::plan(&p, now)?.can_write() {
        Some(super::open_session(&layout, args.wait, true)?)
    } else {
        None
    };
    if let Some(s) = &session {
        p.cert_dir = s.layout().cert_dir.clone();
        p.kubeconfig_dir = s.layout().kubeconfig_dir.clone();
    }
    let plan = init::plan(&p, now)?;

    outln!(
        "[certs] Using certificateDir folder {:?}",
        shown_cert_dir.display().to_string()
    );
    outln!(
        "[kubeconfig] Using kubeconfig folder {:?}",
        shown_kubeconfig_dir.display().to_string()
    );
    for w in &plan.findings.warnings {
        outln!("[certs] WARNING: {w}");
    }
    if !plan.can_write() {
        for e in &plan.findings.problems {
            errln!("error: {e}");
        }
        errln!(
            "error: {} existing file problem(s); fix or remove those files. Nothing was written.",
            plan.findings.problems.len()
        );
        return Ok(ExitCode::FAILURE);
    }

    if dry {
        for s in &plan.steps {
            outln!("[dry-run] {}", describe(s, true));
        }
        outln!("[dry-run] {} is unchanged", shown_cert_dir.display());
    } else if plan.generates_anything() {
        let mut print = |e: Event<'_>| match e {
            Event::GeneratingKeys { count } if count > 0 => {
                outln!("[certs] Generating {count} {} keys", p.key_algorithm)
            }
            Event::GeneratingKeys { .. } => {}
            Event::Wrote { .. } => {}
        };
        let session = session.as_ref().expect("a writing run holds a session");
        init::execute(session, &plan, &p, now, &mut print)?;
        for s in &plan.steps {
            outln!("{}", describe(s, false));
        }
    } else {
        for s in &plan.steps {
            outln!("{}", describe(s, false));
        }
    }

    let gaps = plan.external_gaps();
    if !gaps.is_empty() {
        for g in &gaps {
            errln!("error: {g}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(s: &Step, dry: bool) -> String {
    let name = s.artifact.name();
    let made = if dry { "Would generate" } else { "Generated" };
    let phase = if matches!(s.artifact, Artifact::Kubeconfig(_)) {
        "[kubeconfig]"
    } else {
        "[certs]"
    };
    let what = match (s.artifact, s.decision) {
        (Artifact::Ca(_), Decision::Generate) => format!("{made} {name:?} certificate and key"),
        (Artifact::Ca(_), Decision::UseExternal) => {
            format!("Using the external {name:?} certificate authority (its key is not here)")
        }
        (Artifact::ServiceAccount, Decision::Generate) => {
            format!("{made} \"sa\" key and public key")
        }
        (Artifact::ServiceAccount, Decision::DerivePublicKey) => {
            format!(
                "{} \"sa.pub\" from the existing \"sa.key\"",
                if dry { "Would derive" } else { "Derived" }
            )
        }
        (Artifact::ServiceAccount, Decision::UseExisting) => "Using the existing \"sa\" key".into(),
        (Artifact::Leaf(_), Decision::Generate) => {
            let mut line = format!("{made} {name:?} certificate and key");
            if let Some(t) = &s.template
                && (!t.dns_names.is_empty() || !t.ip_addresses.is_empty())
            {
                let ips: Vec<String> = t.ip_addresses.iter().map(|i| i.to_string()).collect();
                line.push_str(&format!(
                    "\n[certs] {name} serving cert is signed for DNS names [{}] and IPs [{}]",
                    t.dns_names.join(" "),
                    ips.join(" ")
                ));
            }
            line
        }
        (Artifact::Kubeconfig(_), Decision::Generate) => {
            format!(
                "{} {name:?} kubeconfig file",
                if dry { "Would write" } else { "Wrote" }
            )
        }
        (Artifact::Kubeconfig(_), Decision::UseExisting) => {
            format!(
                "Using existing kubeconfig file: {:?}",
                s.files[0].display().to_string()
            )
        }
        (_, Decision::UseExisting) => format!("Using the existing {name:?} certificate and key"),
        (_, Decision::NeedsExternalSigning) => {
            format!("Missing {name:?}: it must be signed by the external CA")
        }
        (_, Decision::Unusable) => format!("Skipping {name:?}: its CA is unusable"),
        (_, d) => format!("{name}: {d:?}"),
    };
    format!("{phase} {what}")
}
