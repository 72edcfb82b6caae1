//! PEM, DER, keys, certificates and requests, read exactly as Go reads them; whether a
//! certificate fits its slot; and signing, through one [`issuer::Issuer`].

pub(crate) mod asn1;
pub mod cert;
pub mod check;
pub mod csr;
pub mod files;
pub mod issue;
pub mod issuer;
pub mod key;
pub mod pem;
