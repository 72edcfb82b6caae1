//! Installing one file kubepki manages (kubelet.conf rebuilt by `kubeconfig kubelet --write`):
//! replaced as one transaction, after a backup of what was there.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::Result;
use crate::storage::session::Session;

/// Replaces (or creates) `target`, a file kubepki manages in the session's PKI, with
/// `contents`; what was there is first copied into `backup_dir` (default: a new directory
/// below the session's backups). Returns the backup directory, if a file was replaced.
pub fn install(
    session: &Session,
    operation: &str,
    target: &Path,
    contents: &[u8],
    mode: u32,
    backup_dir: Option<&Path>,
    now: OffsetDateTime,
) -> Result<Option<PathBuf>> {
    let mut t = session.transaction(operation)?;
    t.replace(target, contents, mode)?;
    let mut backed_up = None;
    if crate::fsio::exists(target)? {
        let dir = backup_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| session.new_backup_dir(now));
        t.back_up(
            &dir,
            std::slice::from_ref(&target.to_path_buf()),
            session.layout(),
            &crate::format::dates::rfc3339_utc(now),
        )?;
        backed_up = Some(dir);
    }
    t.commit()?;
    Ok(backed_up)
}
