//! Errors. Every variant that concerns a file names it, so the CLI can print one precise line.

use std::io;
use std::path::PathBuf;

use time::OffsetDateTime;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not valid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: no {label} PEM block found")]
    NoPemBlock { path: PathBuf, label: &'static str },
    #[error("{path}: invalid certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: invalid private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{path}: invalid public key: {reason}")]
    BadPublicKey { path: PathBuf, reason: String },
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotCa { path: PathBuf },
    #[error("{path}: not signed by the CA in {ca}")]
    WrongIssuer { path: PathBuf, ca: PathBuf },
    #[error("{path}: expired on {}", crate::format::dates::format_date(*not_after))]
    Expired {
        path: PathBuf,
        not_after: OffsetDateTime,
    },
    #[error("{path}: not valid before {}", crate::format::dates::format_date(*not_before))]
    NotYetValid {
        path: PathBuf,
        not_before: OffsetDateTime,
    },
    #[error("{path}: {reason}")]
    WrongForSlot { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("external CA {ca}: {ca_key} is absent, so kubepki cannot sign {}; provide them signed by that CA",
        missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ExternalCaMissing {
        ca: &'static str,
        ca_key: PathBuf,
        missing: Vec<PathBuf>,
    },
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error(
        "{path}: another kubepki run is working on this directory (it holds the lock); retry when it finishes, or pass --wait"
    )]
    Locked { path: PathBuf },
    #[error("{path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    #[error("{path} {reason}")]
    HeldManifest { path: PathBuf, reason: String },
    #[error(
        "{manifest}: this backup is of the PKI in {backup_cert_dir} and {backup_kubeconfig_dir}, not {cert_dir} and {kubeconfig_dir}; to restore it into that PKI, pass --cert-dir {backup_cert_dir} --kubeconfig-dir {backup_kubeconfig_dir}"
    )]
    BackupOfAnotherPki {
        manifest: PathBuf,
        backup_cert_dir: PathBuf,
        backup_kubeconfig_dir: PathBuf,
        cert_dir: PathBuf,
        kubeconfig_dir: PathBuf,
    },
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// `path` is absent, and `reason` says why that matters.
    pub fn not_found(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::io(path, io::Error::new(io::ErrorKind::NotFound, reason.into()))
    }
}
