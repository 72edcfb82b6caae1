//! Why bytes are not the PEM, key, certificate or request kubepki accepts, why a chain does
//! not verify, and why signing failed. Parse diagnostics keep Go's wording where kubepki reads
//! as Go reads, so a user can match them with what the components say.

use std::borrow::Cow;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::format::dates::format_date;

/// Why input is not the plain PEM kubepki accepts. Each says where, so the message can name
/// the spot in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no PEM block found")]
    NoBlock,
    /// Where, by line and byte; not what: the text could be part of a damaged key.
    #[error(
        "text that is not part of a PEM block at line {line} (byte {offset}); only whitespace may surround PEM blocks"
    )]
    TextOutside { offset: usize, line: usize },
    #[error("PEM block #{index} ({label}) has headers; encrypted or annotated PEM is not accepted")]
    Headers { index: usize, label: String },
    #[error("PEM block #{index} is {found:?}, expected {expected}")]
    UnexpectedLabel {
        index: usize,
        found: String,
        expected: String,
    },
    #[error("{count} PEM blocks, expected exactly one")]
    NotSingle { count: usize },
}

/// Why a private (or `sa.pub` public) key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Pem(#[from] PemError),
    #[error("PEM block #{index} is {label:?}, expected a private key")]
    NotAKey { index: usize, label: String },
    #[error("no PRIVATE KEY PEM block found")]
    NoKey,
    #[error("{0} private keys, expected one")]
    SeveralKeys(usize),
    #[error("unsupported PEM block {0:?}")]
    UnsupportedLabel(String),
    /// PKCS#1 that Go's x509.ParsePKCS1PrivateKey would refuse (Go's reason).
    #[error("bad RSA key: {0}")]
    Rsa(&'static str),
    /// PKCS#1 that Go reads but aws-lc refuses as inconsistent.
    #[error("bad RSA key: {0}")]
    RsaRejected(aws_lc_rs::error::KeyRejected),
    /// SEC1 that Go's x509.ParseECPrivateKey would refuse (Go's reason).
    #[error("bad EC key: {0}")]
    Ec(&'static str),
    #[error("bad EC key: curve {0} (only P-256 and P-384 are supported)")]
    Curve(String),
    /// PKCS#8 that Go's x509.ParsePKCS8PrivateKey would refuse (Go's reason).
    #[error("bad PKCS#8 key: {0}")]
    Pkcs8(&'static str),
    /// The OID, dotted.
    #[error("unsupported key algorithm {0}")]
    Algorithm(String),
    #[error("unsupported RSA key size {0} bits")]
    RsaSize(usize),
    /// A `PUBLIC KEY` block that is not a DER SubjectPublicKeyInfo.
    #[error("{0}")]
    PublicKey(der::Error),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// Why a certificate file or block cannot be read as Go's x509 reads it.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Pem(PemError),
    #[error("no CERTIFICATE PEM block found")]
    NoBlock,
    #[error("PEM block #{index} is {label:?}, expected CERTIFICATE{}", if *private_key {
        "; a certificate file must not hold a private key (it would be published with the certificate)"
    } else {
        ""
    })]
    NotACertificate {
        index: usize,
        label: String,
        private_key: bool,
    },
    #[error("certificate #{index} in chain: {source}")]
    InChain {
        index: usize,
        source: Box<CertError>,
    },
    /// The DER is not a certificate Go accepts; Go's diagnostic.
    #[error("{0}")]
    Der(Cow<'static, str>),
    /// `openssl ca` without -notext puts a text dump before the PEM.
    #[error("{0} (a text dump before the certificate: sign with openssl ca -notext)")]
    TextDump(Box<CertError>),
}

impl From<&'static str> for CertError {
    fn from(s: &'static str) -> Self {
        CertError::Der(Cow::Borrowed(s))
    }
}

impl From<String> for CertError {
    fn from(s: String) -> Self {
        CertError::Der(Cow::Owned(s))
    }
}

/// Why a request is refused before its contents are judged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not exactly one `CERTIFICATE REQUEST` block with only whitespace around it.
    #[error("{0}")]
    Pem(#[from] PemError),
    /// Not a DER-encoded PKCS#10 request.
    #[error("not a valid certificate request: {0}")]
    Der(String),
    /// Well-formed, but built so that two parsers could read it differently (two common
    /// names, several extension requests, a subject attribute Go does not read as text, ...).
    #[error("the request is ambiguous: {0}")]
    Ambiguous(String),
    #[error("the request's signature does not verify: {0}")]
    Signature(String),
}

/// Which CA of a chain (its CN and its 1-based place in the chain), for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCa {
    pub common_name: String,
    pub index: usize,
}

impl std::fmt::Display for ChainCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CA {:?} (certificate #{} of the chain)",
            self.common_name, self.index
        )
    }
}

/// Why a chain does not verify, as Go's Verify would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    /// No path from the leaf to the CA.
    #[error("not signed by the CA")]
    NotSignedByCa,
    #[error("{ca} allows {max} intermediate(s) below it (pathLenConstraint), the chain has {has}")]
    PathLen { ca: ChainCa, max: u64, has: usize },
    #[error("{ca} {NAME_CONSTRAINED}")]
    NameConstrained { ca: ChainCa },
    #[error("{ca} is not valid now (valid {} to {})", format_date(*not_before), format_date(*not_after))]
    NotValidNow {
        ca: ChainCa,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error(
        "{ca} limits its extended key usages and does not allow {}; Go refuses the chain",
        lacks.join(" and ")
    )]
    UsageLimited {
        ca: ChainCa,
        lacks: Vec<&'static str>,
    },
}

/// Why a CA with name constraints is refused, in one sentence.
pub const NAME_CONSTRAINED: &str = "is a name-constrained CA; kubepki does not accept those: the names a control plane needs (kubernetes, kubernetes.default.svc, the node's) would have to pass its constraints, or Go refuses the certificates it signs";

/// A cryptographic primitive or an encoder failed: not the input's fault.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{0}")]
    Unspecified(#[from] aws_lc_rs::error::Unspecified),
    #[error("{0}")]
    Rejected(#[from] aws_lc_rs::error::KeyRejected),
    #[error("{0}")]
    Der(#[from] der::Error),
    #[error("{0}")]
    Spki(#[from] spki::Error),
    #[error("{0}")]
    Builder(#[from] x509_cert::builder::Error),
    /// A key just generated that kubepki cannot use (a defect, not the input's fault).
    #[error("{0}")]
    Generated(Box<KeyError>),
}

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(
        "{}: the CA ends {}, so a certificate it signs from {} would never be valid",
        ca.display(), format_date(*not_after), format_date(*not_before)
    )]
    NeverValid {
        ca: PathBuf,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error("{}: absent: the CA in {} is external and cannot sign here", key.display(), cert.display())]
    External { cert: PathBuf, key: PathBuf },
    #[error("the CA's subject name does not survive re-encoding; cannot sign with it")]
    SubjectNotReencodable,
    #[error("CA subject name: {0}")]
    CaSubject(der::Error),
    #[error("public key: {0}")]
    PublicKey(der::Error),
    #[error("DNS name {0:?} is not ASCII")]
    DnsNotAscii(String),
    /// A name attribute's value that does not encode.
    #[error("{value:?}: {source}")]
    Attribute { value: String, source: der::Error },
    /// `field` is "organization" or "common name".
    #[error("{field} {value:?}: {source}")]
    Name {
        field: &'static str,
        value: String,
        source: der::Error,
    },
    #[error("time {time}: {source}")]
    Time {
        time: OffsetDateTime,
        source: der::Error,
    },
    /// The issued certificate does not read back (a defect, not the input's fault).
    #[error("{0}")]
    Reread(CertError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

impl From<der::Error> for IssueError {
    fn from(e: der::Error) -> Self {
        IssueError::Crypto(CryptoError::Der(e))
    }
}
