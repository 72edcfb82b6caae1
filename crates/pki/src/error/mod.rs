//! Errors. Every variant that concerns a file names it, so the CLI can print one precise line;
//! what is wrong is a typed sub-error ([`SlotProblem`], [`KeyError`], ...) that carries the
//! data the message needs, so callers can match on the problem rather than on text.

mod crypto;
mod problem;

pub use crypto::{
    CertError, ChainCa, ChainProblem, CryptoError, CsrError, IssueError, KeyError,
    NAME_CONSTRAINED, PemError,
};
pub use problem::{
    ConfigProblem, Foreign, HeldProblem, JournalProblem, KubeconfigProblem, ParamError, Refusal,
    RotationProblem, SlotProblem,
};

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
    #[error("{path}: no {label} PEM block found")]
    NoPemBlock { path: PathBuf, label: &'static str },
    #[error("{path}: invalid certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: CertError },
    #[error("{path}: invalid private key: {reason}")]
    BadKey { path: PathBuf, reason: KeyError },
    #[error("{path}: invalid public key: {reason}")]
    BadPublicKey { path: PathBuf, reason: KeyError },
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{key}: private key does not match the public key in {public}")]
    PublicKeyMismatch { public: PathBuf, key: PathBuf },
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
    #[error("{path}: {problem}")]
    WrongForSlot { path: PathBuf, problem: SlotProblem },
    #[error("{path}: {problem}")]
    Kubeconfig {
        path: PathBuf,
        problem: KubeconfigProblem,
    },
    #[error("{path}: {problem}")]
    Config {
        path: PathBuf,
        problem: ConfigProblem,
    },
    #[error("{0}")]
    Param(#[from] ParamError),
    #[error("{0}")]
    Refused(Refusal),
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
    #[error("{path}: {problem}")]
    Journal {
        path: PathBuf,
        /// Boxed: the largest problem, and rare.
        problem: Box<JournalProblem>,
    },
    #[error("{path}: {problem}")]
    Rotation {
        path: PathBuf,
        problem: RotationProblem,
    },
    #[error("{path} {problem}")]
    HeldManifest { path: PathBuf, problem: HeldProblem },
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
    Crypto(#[from] CryptoError),
    /// Signing refused (the CA cannot sign, or not for that window) or failed.
    #[error("cryptographic operation failed: {0}")]
    Issue(IssueError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn slot(path: impl Into<PathBuf>, problem: SlotProblem) -> Self {
        Error::WrongForSlot {
            path: path.into(),
            problem,
        }
    }

    pub fn kubeconfig(path: impl Into<PathBuf>, problem: KubeconfigProblem) -> Self {
        Error::Kubeconfig {
            path: path.into(),
            problem,
        }
    }

    pub fn journal(path: impl Into<PathBuf>, problem: JournalProblem) -> Self {
        Error::Journal {
            path: path.into(),
            problem: Box::new(problem),
        }
    }

    pub fn rotation(path: impl Into<PathBuf>, problem: RotationProblem) -> Self {
        Error::Rotation {
            path: path.into(),
            problem,
        }
    }

    /// `path` is absent, and `reason` says why that matters.
    pub fn not_found(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::io(path, io::Error::new(io::ErrorKind::NotFound, reason.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The typed problems print exactly what the free-text messages they replaced printed:
    /// scripts and runbooks match on these lines.
    #[test]
    fn messages_are_the_ones_users_know() {
        let p = Path::new("/etc/kubernetes/pki/apiserver.crt");
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::slot(
                    p,
                    SlotProblem::MissingSans(vec!["DNS:n1".into(), "IP:10.0.0.1".into()]),
                ),
                "/etc/kubernetes/pki/apiserver.crt: lacks SANs this node needs: DNS:n1, IP:10.0.0.1",
            ),
            (
                Error::slot(
                    p,
                    SlotProblem::LacksUsage(vec!["the serverAuth extended key usage"]),
                ),
                "/etc/kubernetes/pki/apiserver.crt: lacks the serverAuth extended key usage",
            ),
            (
                Error::slot(
                    p,
                    SlotProblem::AlreadyExists {
                        external_ca_hint: true,
                    },
                ),
                "/etc/kubernetes/pki/apiserver.crt: already exists; kubepki does not overwrite it; to renew through the external CA, pass --csr-dir",
            ),
            (
                Error::slot(
                    p,
                    SlotProblem::WrongUsages {
                        slot: "apiserver",
                        lacks: vec!["serverAuth"],
                        usage: "server".into(),
                    },
                ),
                "/etc/kubernetes/pki/apiserver.crt: has the wrong usages for apiserver: it needs serverAuth (server) in extendedKeyUsage",
            ),
            (
                Error::slot(
                    p,
                    SlotProblem::SymlinkTo {
                        target: "/tmp/x".into(),
                        outside: true,
                    },
                ),
                "/etc/kubernetes/pki/apiserver.crt: is a symbolic link to /tmp/x, outside the certificate directories; kubepki only replaces regular files",
            ),
            (
                Error::Issue(IssueError::External {
                    cert: "ca.crt".into(),
                    key: "ca.key".into(),
                }),
                "cryptographic operation failed: ca.key: absent: the CA in ca.crt is external and cannot sign here",
            ),
            (
                Error::journal(
                    Path::new("j"),
                    JournalProblem::NeverWritten(Foreign::Transaction("x/..".into())),
                ),
                "j: names transaction \"x/..\", which kubepki never writes; not acting on it: inspect the journal, then remove it",
            ),
            (
                Error::Refused(Refusal::Renew),
                "refusing to renew: see the problems above; nothing was changed",
            ),
            (
                Error::Param(ParamError::DnsDomain("..".into()).in_field("networking.dnsDomain")),
                "networking.dnsDomain: invalid service DNS domain \"..\": must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')",
            ),
            (
                Error::Param(ParamError::UnknownCertificate {
                    given: "x".into(),
                    known: vec!["ca", "apiserver"],
                }),
                "unknown certificate \"x\"; expected one of: all, ca, apiserver",
            ),
            (
                Error::kubeconfig(Path::new("admin.conf"), KubeconfigProblem::NoCurrentContext),
                "admin.conf: no current-context set",
            ),
            (
                Error::journal(
                    Path::new("j"),
                    JournalProblem::ChangedOutside {
                        target: "t".into(),
                        operation: "renew".into(),
                        backup: Some("b".into()),
                        journal: "j".into(),
                    },
                ),
                "j: t changed outside kubepki during an interrupted renew (the previous files are in b); put the file you want in place, then remove j and rerun",
            ),
            (
                Error::BadKey {
                    path: "k".into(),
                    reason: KeyError::Rsa("malformed prime p"),
                },
                "k: invalid private key: bad RSA key: malformed prime p",
            ),
            (
                Error::BadCertificate {
                    path: "c".into(),
                    reason: CertError::TextDump(Box::new(CertError::InChain {
                        index: 2,
                        source: Box::new(CertError::from("malformed validity")),
                    })),
                },
                "c: invalid certificate: certificate #2 in chain: malformed validity (a text dump before the certificate: sign with openssl ca -notext)",
            ),
            (
                Error::slot(
                    p,
                    SlotProblem::Chain(ChainProblem::PathLen {
                        ca: ChainCa {
                            common_name: "inter".into(),
                            index: 2,
                        },
                        max: 0,
                        has: 1,
                    }),
                ),
                "/etc/kubernetes/pki/apiserver.crt: CA \"inter\" (certificate #2 of the chain) allows 0 intermediate(s) below it (pathLenConstraint), the chain has 1",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
