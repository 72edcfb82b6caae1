//! `certs restore`: putting a backup back, all at once, after backing up what it replaces (so
//! a restore can be undone the same way). Only the files kubepki manages in the PKI the backup
//! was made of are restored (see [`crate::storage::backup::plan_restore`]).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::model::layout::Layout;
use crate::storage::backup::{self, RestoreFile};
use crate::storage::session::Session;

/// What a restore of `backup` puts back.
pub struct Plan {
    pub backup: PathBuf,
    pub files: Vec<RestoreFile>,
}

/// Reads and checks `backup` for the PKI of `layout` (resolved, as a session's): it must be a
/// backup of that very PKI, and hold only files kubepki manages there, each fit for its slot.
pub fn plan(backup: &Path, layout: &Layout) -> Result<Plan> {
    let m = backup::load(backup)?;
    let backup_kubeconfig_dir = m
        .kubeconfig_dir
        .clone()
        .unwrap_or_else(|| layout.kubeconfig_dir.clone());
    // A restore writes only inside the directories the user names (or kubeadm's defaults),
    // never where an edited manifest points.
    if m.cert_dir != layout.cert_dir || backup_kubeconfig_dir != layout.kubeconfig_dir {
        return Err(Error::BackupOfAnotherPki {
            manifest: backup.join(backup::MANIFEST),
            backup_cert_dir: m.cert_dir.clone(),
            backup_kubeconfig_dir,
            cert_dir: layout.cert_dir.clone(),
            kubeconfig_dir: layout.kubeconfig_dir.clone(),
        });
    }
    Ok(Plan {
        backup: backup.to_path_buf(),
        files: backup::plan_restore(backup, &m, layout)?,
    })
}

/// Puts the planned files back as one transaction of `session` (planned on its layout), after
/// copying what they replace into the new backup directory `before`. Returns the files written.
pub fn execute(
    session: &Session,
    plan: &Plan,
    before: &Path,
    now: OffsetDateTime,
) -> Result<Vec<PathBuf>> {
    let mut current = Vec::new();
    for f in &plan.files {
        if crate::fsio::exists(&f.original)? {
            current.push(f.original.clone());
        }
    }
    let mut tx = session.transaction("restore")?;
    for f in &plan.files {
        tx.replace(&f.original, &f.contents, f.mode)?;
    }
    tx.back_up(
        before,
        &current,
        session.layout(),
        &crate::format::dates::rfc3339_utc(now),
    )?;
    tx.commit()
}
