//! What is wrong with a file in its place, with a parameter, a kubeconfig, a kubeadm config,
//! a journal or a held manifest: one variant per problem, carrying what the message needs.

use std::path::PathBuf;

use super::crypto::{CertError, ChainProblem, CsrError, KeyError, NAME_CONSTRAINED};
use crate::format::duration::DurationError;
use crate::format::yaml::YamlError;

fn show(p: &std::path::Path) -> std::path::Display<'_> {
    p.display()
}

/// Why an existing file cannot serve in its slot (the place the inventory gives it), or why
/// kubepki will not write it.
#[derive(Debug, thiserror::Error)]
pub enum SlotProblem {
    /// A certificate kubeadm's checks would find without the SANs this node needs.
    #[error("lacks SANs this node needs: {}", .0.join(", "))]
    MissingSans(Vec<String>),
    /// Usages the slot needs (e.g. "serverAuth", "digitalSignature").
    #[error("lacks {}", .0.join(" and "))]
    LacksUsage(Vec<&'static str>),
    #[error("exists, but the CA that should have signed it does not")]
    SignerAbsent,
    /// A key whose certificate is gone.
    #[error("exists without {}; restore the certificate or remove the key", show(.0))]
    KeyWithoutCert(PathBuf),
    /// One file of a pair whose other file is gone.
    #[error("exists without {}; kubepki will not pair it with a new file", show(.0))]
    Unpaired(PathBuf),
    /// `sa.pub` without `sa.key`.
    #[error("exists without {}", show(.0))]
    PublicWithoutPrivate(PathBuf),
    #[error("already exists; kubepki does not overwrite it{}", if *.external_ca_hint { "; to renew through the external CA, pass --csr-dir" } else { "" })]
    AlreadyExists { external_ca_hint: bool },
    #[error("is a symbolic link to {}{}; kubepki only replaces regular files", show(target), if *outside { ", outside the certificate directories" } else { "" })]
    SymlinkTo { target: PathBuf, outside: bool },
    #[error("is a symbolic link; kubepki only replaces regular files")]
    Symlink,
    #[error(
        "is not a file kubepki manages in {} or {}; it is never replaced",
        show(cert_dir),
        show(kubeconfig_dir)
    )]
    NotManaged {
        cert_dir: PathBuf,
        kubeconfig_dir: PathBuf,
    },
    #[error("has a key type kubepki cannot generate; pass --encryption-algorithm")]
    KeyTypeNotGenerable,
    #[error("{NAME_CONSTRAINED}")]
    NameConstrained,
    /// A request in the CSR directory that does not read.
    #[error("{0}")]
    Request(CsrError),
    // What the external CA returned, against the request, the key and the slot.
    #[error("cannot be checked: {} does not exist", show(.0))]
    CaAbsent(PathBuf),
    #[error("is not for the key in {}", show(.0))]
    NotForKey(PathBuf),
    #[error("{0}")]
    Chain(ChainProblem),
    #[error("CN is {found:?}, the request asked for {asked:?}")]
    CommonName { found: String, asked: String },
    #[error("O is {found:?}, the request asked for {asked:?}")]
    Organizations {
        found: Vec<String>,
        asked: Vec<String>,
    },
    #[error("lacks requested SANs: {}", .0.join(", "))]
    MissingRequestedSans(Vec<String>),
    #[error("is a CA certificate (basicConstraints CA:TRUE); a leaf is expected")]
    IsCa,
    /// `usage` describes what the slot needs, e.g. "serving and client".
    #[error("has the wrong usages for {slot}: it needs {} ({usage}) in extendedKeyUsage", lacks.join(" and "))]
    WrongUsages {
        slot: &'static str,
        lacks: Vec<&'static str>,
        usage: String,
    },
    #[error("keyUsage lacks digitalSignature, which TLS needs")]
    NoDigitalSignature,
}

/// A parameter (flag or config value) kubeadm would refuse, or that cannot shape a PKI.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("invalid node name {0:?}: must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')")]
    NodeName(String),
    /// Options that do not go together.
    #[error("{0}")]
    Usage(String),
    #[error(
        "invalid service DNS domain {0:?}: must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')"
    )]
    DnsDomain(String),
    #[error("invalid service CIDR {0:?}: at most two (one IPv4, one IPv6)")]
    ServiceCidrCount(String),
    #[error("invalid service CIDR {0:?}: couldn't parse subnet")]
    ServiceCidrSyntax(String),
    #[error("invalid service CIDR {0:?}: it must hold at least 10 addresses")]
    ServiceCidrTooSmall(String),
    #[error(
        "invalid service CIDR {cidr:?}: too large; at most 2^20 addresses (a /{min_prefix} or longer prefix)"
    )]
    ServiceCidrTooLarge { cidr: String, min_prefix: u8 },
    #[error("invalid service CIDR {0:?}: two CIDRs must be one IPv4 and one IPv6")]
    ServiceCidrFamilies(String),
    #[error("invalid service CIDR {0:?}")]
    ServiceCidr(String),
    #[error("service CIDR {0:?} has no room for a ClusterIP")]
    NoClusterIp(String),
    #[error("invalid control-plane endpoint {0:?} (expected host or host:port)")]
    Endpoint(String),
    #[error("the API server bind port must be between 1 and 65535")]
    BindPort,
    #[error("localAPIEndpoint.bindPort {0} out of range")]
    BindPortRange(i64),
    #[error("localAPIEndpoint.advertiseAddress {0:?} is not an IP")]
    AdvertiseAddress(String),
    #[error("{0:?} is neither an IP address nor a valid DNS name")]
    San(String),
    #[error("invalid Kubernetes version {0:?} (expected e.g. v1.31.2)")]
    KubeVersion(String),
    #[error("unknown encryption algorithm {given:?}; expected one of {}", known.join(", "))]
    Algorithm {
        given: String,
        known: Vec<&'static str>,
    },
    #[error("unknown certificate {given:?}; expected one of: all, {}", known.join(", "))]
    UnknownCertificate {
        given: String,
        known: Vec<&'static str>,
    },
    #[error("{0}")]
    Duration(#[from] DurationError),
    /// A problem with one field of a kubeadm config (its YAML path, e.g. `networking.dnsDomain`).
    #[error("{field}: {source}")]
    Field {
        field: &'static str,
        source: Box<ParamError>,
    },
}

impl ParamError {
    /// This problem, as found in the config field `field`.
    pub fn in_field(self, field: &'static str) -> ParamError {
        ParamError::Field {
            field,
            source: Box::new(self),
        }
    }
}

/// Why an operation wrote nothing after listing the problems it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("existing files are unfit for their slots; nothing was written")]
    Init,
    #[error("refusing to renew: see the problems above; nothing was changed")]
    Renew,
    #[error("refusing to import: see the problems above; nothing was installed")]
    Import,
    #[error("refusing to rotate: see the problems above; nothing was changed")]
    Rotate,
}

/// Why a kubeconfig cannot be read or used as kubepki and client-go read it.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigProblem {
    #[error("not a valid kubeconfig: {0}")]
    Yaml(YamlError),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("duplicate name {0:?} in list")]
    DuplicateName(String),
    /// `what` is "client-certificate" or "client-key".
    #[error("{what}-data and {what} are both specified for user {user:?}")]
    UserDataAndFile { what: &'static str, user: String },
    #[error(
        "certificate-authority-data and certificate-authority are both specified for cluster {0:?}"
    )]
    ClusterDataAndFile(String),
    #[error("no current-context set")]
    NoCurrentContext,
    #[error("current-context {0:?} is not defined")]
    ContextUndefined(String),
    #[error("cluster {0:?} is not defined")]
    ClusterUndefined(String),
    #[error("cluster {0:?} has no server")]
    NoServer(String),
    #[error("cluster {0:?} has no certificate-authority-data")]
    NoCaData(String),
    #[error("no users")]
    NoUsers,
    #[error("user {0:?} is not defined")]
    UserUndefined(String),
    #[error("user {0:?} has no credentials")]
    NoCredentials(String),
    #[error("user {0:?} has no client certificate")]
    NoClientCert(String),
    #[error("user {0:?} has no embedded client key")]
    NoEmbeddedKey(String),
    #[error("client-key-data is not base64: {0}")]
    KeyNotBase64(base64::DecodeError),
    #[error("certificate-authority-data of cluster {cluster:?} is not base64: {source}")]
    ClusterCaNotBase64 {
        cluster: String,
        source: base64::DecodeError,
    },
    #[error("{what}-data of user {user:?} is not base64: {source}")]
    NotBase64 {
        what: &'static str,
        user: String,
        source: base64::DecodeError,
    },
    #[error(
        "user {0:?} reads its certificate from a file, not embedded data; kubepki does not rewrite such files"
    )]
    FileCredentials(String),
    #[error("client certificate: {0}")]
    ClientCert(CertError),
    #[error("has no client key")]
    NoClientKey,
    #[error("the client certificate has no client key")]
    CertWithoutKey,
    #[error("client key: {0}")]
    ClientKey(KeyError),
    #[error("invalid client key: {0}")]
    InvalidClientKey(KeyError),
    #[error("client key does not match the client certificate")]
    KeyMismatch,
    #[error("certificate-authority-data is not the CA in {}", show(.0))]
    OtherCa(PathBuf),
    #[error(
        "cluster {0:?} names its CA in a file (certificate-authority), not embedded data; kubepki does not rewrite such files"
    )]
    CaFile(String),
    #[error("{0}")]
    Serialize(serde_saphyr::ser::Error),
}

/// Why a kubeadm configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("{0}")]
    Yaml(YamlError),
    /// A document (1-based) whose apiVersion/kind or fields do not decode.
    #[error("document {document}{}: {source}", kind.map(|k| format!(" ({k})")).unwrap_or_default())]
    Decode {
        document: usize,
        kind: Option<&'static str>,
        source: serde_json::Error,
    },
    #[error("document {document}: unsupported apiVersion {found:?} (supported: {})", supported.join(", "))]
    ApiVersion {
        document: usize,
        found: String,
        supported: Vec<String>,
    },
    #[error("document {document}: {source}")]
    Value { document: usize, source: ParamError },
    #[error("no kubeadm InitConfiguration or ClusterConfiguration document found")]
    NoKubeadmDocument,
}

/// Why a journal or a backup manifest cannot be acted on.
#[derive(Debug, thiserror::Error)]
pub enum JournalProblem {
    #[error(
        "unreadable ({0}); the files it names may be half-swapped: inspect it and the newest backup before removing it"
    )]
    Unreadable(serde_json::Error),
    #[error(
        "was written by an interrupted {operation} of the PKI in {} and {}, not this one: the PKI was copied or moved before that run was finished; finish it where it ran (`kubepki certs recover --cert-dir {} --kubeconfig-dir {}`), or restore this copy from its newest backup and remove this journal",
        show(cert_dir),
        show(kubeconfig_dir),
        show(cert_dir),
        show(kubeconfig_dir)
    )]
    OtherPki {
        operation: String,
        cert_dir: PathBuf,
        kubeconfig_dir: PathBuf,
    },
    /// A journal whose contents kubepki could not have written.
    #[error(
        "{0}, which kubepki never writes; not acting on it: inspect the journal, then remove it"
    )]
    NeverWritten(Foreign),
    #[error(
        "{} appeared while an interrupted {operation} was placing it; move it away, then run `kubepki certs recover --cert-dir {}` to finish",
        show(target),
        show(cert_dir)
    )]
    TargetAppeared {
        target: PathBuf,
        operation: String,
        cert_dir: PathBuf,
    },
    #[error(
        "{} changed outside kubepki during an interrupted {operation}{}; put the file you want in place, then remove {} and rerun",
        show(target),
        backup.as_ref().map(|b| format!(" (the previous files are in {})", b.display())).unwrap_or_default(),
        show(journal)
    )]
    ChangedOutside {
        target: PathBuf,
        operation: String,
        backup: Option<PathBuf>,
        journal: PathBuf,
    },
    #[error("not a kubepki backup manifest: {0}")]
    NotAManifest(serde_json::Error),
    #[error("stored path {} escapes the backup", show(.0))]
    EscapesBackup(PathBuf),
    #[error(
        "names {}, which is not a file kubepki manages in {} or {}; nothing was restored",
        show(file),
        show(cert_dir),
        show(kubeconfig_dir)
    )]
    Unmanaged {
        file: PathBuf,
        cert_dir: PathBuf,
        kubeconfig_dir: PathBuf,
    },
    #[error("names {} twice", show(.0))]
    Twice(PathBuf),
    #[error("does not match the checksum in the backup manifest")]
    Checksum,
    #[error("is a symbolic link inside the backup; a backup holds regular files only")]
    Symlink,
}

/// The part of a journal kubepki could not have written.
#[derive(Debug, thiserror::Error)]
pub enum Foreign {
    #[error("names transaction {0:?}")]
    Transaction(String),
    /// A staged file that is not a kubepki temp file of this transaction beside its target, or
    /// a target kubepki does not manage.
    #[error("pairs {} with {}", show(staged), show(target))]
    Pair { staged: PathBuf, target: PathBuf },
    #[error("names the backup {} staged in {}", show(dir), show(staging))]
    Backup { dir: PathBuf, staging: PathBuf },
}

/// Why a static-pod manifest held away by an interrupted run cannot be put back (or a new one
/// held).
#[derive(Debug, thiserror::Error)]
pub enum HeldProblem {
    #[error("is not a file name")]
    NotAFileName,
    #[error("exists: a manifest an interrupted kubepki run held is still there; put it back first")]
    StillHeld,
    #[error(
        "is held by an interrupted kubepki run, but {} exists too; keep one and remove the other",
        show(.0)
    )]
    BothExist(PathBuf),
    #[error(
        "is held by an interrupted kubepki run, but {} (where it came from) cannot be read ({source}); move it back into the manifests directory yourself",
        show(record)
    )]
    RecordUnreadable {
        record: PathBuf,
        source: Box<crate::error::Error>,
    },
    #[error(
        "is not the absolute path of {} (corrupt?); move the manifest back yourself",
        show(.0)
    )]
    RecordCorrupt(PathBuf),
}

/// Why a CA rotation step refuses, about the file it names.
#[derive(Debug, thiserror::Error)]
pub enum RotationProblem {
    #[error("not a kubepki rotation record: {0}")]
    Unreadable(serde_json::Error),
    #[error("kubepki-rotation format {0} is newer than this kubepki understands")]
    Format(u32),
    #[error("{target} is in phase {phase}; {wanted}")]
    OutOfOrder {
        target: &'static str,
        phase: &'static str,
        wanted: &'static str,
    },
    #[error(
        "holds {found} of the rotation of {target} where the rotation record ({state}) says it holds {expected}; it was changed outside kubepki. Restore it from the backup of the last rotation step, or restore the rotation record that matches"
    )]
    Disagrees {
        target: &'static str,
        found: String,
        expected: String,
        state: PathBuf,
    },
    #[error(
        "holds {0} certificates or keys but no rotation of it is recorded; a rotation begun by hand or by another tool must be finished first"
    )]
    UnrecordedBundle(usize),
    #[error("the new CA is the CA being rotated")]
    SameCa,
    #[error(
        "{target} is already in trust with another new CA ({have}) than the one given ({given}); every node must rotate to the same one: roll this node back first (ca rotate rollback {target})"
    )]
    OtherNewCa {
        target: &'static str,
        have: String,
        given: String,
    },
    #[error(
        "{target} signed as the new CA (or key) from {switched}: what it signed since (kubelet certificates the controller-manager issued on any node, service-account tokens re-issued by `ca rotate tokens`) is not trusted once it is dropped; make sure nothing uses it"
    )]
    SwitchedBefore {
        target: &'static str,
        switched: String,
    },
    #[error(
        "is signed by the new {target}, which rolling back drops (pass --force to roll back anyway)"
    )]
    SignedByNew { target: &'static str },
    #[error("holds {0} certificates; the new CA is one certificate")]
    NotOneCertificate(usize),
    #[error(
        "the new CA expires on {}, before certificates issued now for {} would; give a CA valid for longer",
        crate::format::dates::format_date(*not_after),
        humantime::format_duration(*validity)
    )]
    NewCaTooShort {
        not_after: time::OffsetDateTime,
        validity: std::time::Duration,
    },
    #[error(
        "embeds a CA ({subject}) that is neither the old nor the new {target}; kubepki will not decide what this file should trust"
    )]
    ForeignCa {
        target: &'static str,
        subject: String,
    },
    #[error(
        "is still signed by the old {target} (pass --force to finish anyway; it will stop being trusted)"
    )]
    SignedByOld { target: &'static str },
    #[error("{0}")]
    Archive(&'static str),
    #[error(
        "the archive rotates a different {target} than this node has ({found}); was it made on another cluster?"
    )]
    ArchiveOtherCa { target: &'static str, found: String },
    #[error(
        "mentions the controller-manager's signing flag in a form kubepki does not edit ({line:?}); write it as `- --cluster-signing-cert-file=<path>` (and the key flag likewise), or point both flags at {} and its key yourself",
        .signer.display()
    )]
    ManifestFlag { line: String, signer: PathBuf },
    #[error(
        "the flag {flag} is {found:?}, not {expected:?}; the manifest was changed outside kubepki during the rotation"
    )]
    ManifestChanged {
        flag: &'static str,
        found: String,
        expected: String,
    },
}
