pub mod agent;
pub mod audit;
pub mod certs;
pub mod controller;
pub mod csr;
pub mod docs;
pub mod external;
pub mod init;
pub mod kubeconfig;
pub mod renew;
pub mod rotate;
mod rotate_cluster;

use anyhow::Result;
use kubepki_pki::model::layout::Layout;
use kubepki_pki::model::params::{DEFAULT_CERT_DIR, DEFAULT_KUBECONFIG_DIR};
use kubepki_pki::storage::session::Session;
use kubepki_pki::storage::txn::Outcome;

use crate::out::{errln, outln};

/// Opens a writing session on `layout` (creating the cert dir if `create`) and says what
/// its recovery of an interrupted run did.
pub fn open_session(layout: &Layout, wait: bool, create: bool) -> Result<Session> {
    let s = if create {
        Session::create(layout, wait)?
    } else {
        Session::open(layout, wait)?
    };
    let rec = s.recovery();
    match &rec.outcome {
        Outcome::Clean => {}
        Outcome::RolledForward { operation, files } => outln!(
            "[recover] completed an interrupted {operation} ({} files now hold the new versions)",
            files.len()
        ),
        Outcome::RolledBack { operation, removed } => outln!(
            "[recover] an interrupted {operation} stopped before changing anything; removed its {} temporary files",
            removed.len()
        ),
    }
    for u in &rec.unaccounted {
        errln!(
            "[recover] WARNING: {} is a kubepki temporary file that no journal accounts for (left by an older kubepki, or its journal was removed); kept because it may hold a key: inspect it, then remove it",
            u.display()
        );
    }
    for b in s.removed_backups() {
        outln!(
            "[recover] removed {}, a backup an interrupted run had not finished",
            b.display()
        );
    }
    for m in s.put_back_manifests() {
        outln!(
            "[recover] put back static pod manifest {} held by an interrupted run",
            m.display()
        );
    }
    Ok(s)
}

/// The command that finishes or undoes an interrupted run of the PKI in `layout`, for advice.
pub fn recover_command(layout: &Layout) -> String {
    let l = layout.absolute().unwrap_or_else(|_| layout.clone());
    format!(
        "kubepki certs recover --cert-dir {} --kubeconfig-dir {}",
        sh(&l.cert_dir),
        sh(&l.kubeconfig_dir)
    )
}

/// A path as a shell word: quoted when it holds spaces or shell syntax, so that advice can be
/// pasted. (A path that is not UTF-8 is shown with replacement characters, and says so.)
pub fn sh(p: &std::path::Path) -> String {
    let text = p.to_string_lossy();
    let quoted = shlex::try_quote(&text)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| format!("{text:?}"));
    if p.to_str().is_none() {
        format!("{quoted} (not UTF-8: type the real name)")
    } else {
        quoted
    }
}

/// The command that restores `backup` into the PKI of `layout`, for advice: the directories
/// are named unless they are kubeadm's defaults.
pub fn restore_command(backup: &std::path::Path, layout: &Layout) -> String {
    let mut cmd = format!("kubepki certs restore {}", sh(backup));
    if layout.cert_dir != std::path::Path::new(DEFAULT_CERT_DIR)
        || layout.kubeconfig_dir != std::path::Path::new(DEFAULT_KUBECONFIG_DIR)
    {
        cmd.push_str(&format!(
            " --cert-dir {} --kubeconfig-dir {}",
            sh(&layout.cert_dir),
            sh(&layout.kubeconfig_dir)
        ));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::sh;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    #[test]
    fn advised_paths_paste_into_a_shell() {
        assert_eq!(sh(Path::new("/etc/kubernetes/pki")), "/etc/kubernetes/pki");
        assert_eq!(sh(Path::new("/tmp/sp ace;$(id)")), "'/tmp/sp ace;$(id)'");
        let odd = sh(Path::new(OsStr::from_bytes(b"/tmp/w\xff")));
        assert!(odd.ends_with("(not UTF-8: type the real name)"), "{odd}");
    }
}
