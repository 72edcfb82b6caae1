//! PEM, DER, keys, certificates and requests, read exactly as Go reads them, and signing.

pub(crate) mod asn1;
pub mod cert;
pub mod csr;
pub mod issue;
pub mod key;
pub mod pem;
