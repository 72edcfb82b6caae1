//! Reading certificate and key files kubepki did not write: an absent file is `None`, anything
//! else wrong is an error that names the file.

use std::path::{Path, PathBuf};

use crate::crypto::cert::Certificate;
use crate::crypto::key::PrivateKey;
use crate::error::{CertError, Error, Result};

/// `parse` of the file at `path`, `None` when absent; a parse error is `bad` for the file.
fn read_parsed<T, E>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
    bad: fn(PathBuf, E) -> Error,
) -> Result<Option<T>> {
    if !crate::fsio::exists(path)? {
        return Ok(None);
    }
    let bytes = crate::fsio::read(path)?;
    parse(&bytes)
        .map(Some)
        .map_err(|reason| bad(path.to_path_buf(), reason))
}

fn bad_cert(path: PathBuf, reason: CertError) -> Error {
    Error::BadCertificate { path, reason }
}

/// Reads a certificate file (leaf first if it holds a chain); `None` when absent.
pub fn read_cert_chain(path: &Path) -> Result<Option<Vec<Certificate>>> {
    read_parsed(path, Certificate::from_pem_chain, bad_cert)
}

pub fn read_cert(path: &Path) -> Result<Option<Certificate>> {
    Ok(read_cert_chain(path)?.map(|mut chain| chain.swap_remove(0)))
}

/// The certificate of a file that holds a certificate and its key together (the kubelet's
/// rotated pair); `None` when absent.
pub fn read_cert_with_key(path: &Path) -> Result<Option<Certificate>> {
    let chain = read_parsed(path, Certificate::from_pem_with_key, bad_cert)?;
    Ok(chain.map(|mut chain| chain.swap_remove(0)))
}

/// A CA file as kubeconfigs embed it (`certificate-authority-data`): its certificates,
/// re-encoded, and nothing else from the file.
pub fn read_ca_bundle_pem(path: &Path) -> Result<String> {
    let chain =
        read_cert_chain(path)?.ok_or_else(|| Error::not_found(path, "CA certificate not found"))?;
    Ok(bundle_pem(&chain))
}

/// Certificates as one PEM text, in order.
pub fn bundle_pem(certs: &[Certificate]) -> String {
    certs.iter().map(Certificate::to_pem).collect()
}

pub fn read_key(path: &Path) -> Result<Option<PrivateKey>> {
    read_parsed(path, PrivateKey::from_pem, |path, reason| Error::BadKey {
        path,
        reason,
    })
}
