//! kubepki-pki: the PKI of a kubeadm-style control-plane node as data, and the operations on it.
//!
//! The library decides nothing about output or prompts: it plans, issues, reads and writes, and
//! returns precise errors. Time is always passed in.

mod asn1;
pub mod backup;
pub mod cert;
pub mod check;
pub mod config;
pub mod csr;
pub mod duration;
pub mod error;
pub mod expiry;
pub mod external;
pub mod fsio;
pub mod init;
pub mod inventory;
pub mod issue;
pub mod key;
pub mod kubeconfig;
pub mod layout;
pub mod params;
pub mod pem;
pub mod renew;
pub mod session;
pub mod txn;
pub mod yaml;

pub use error::{Error, Result};
