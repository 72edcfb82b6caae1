//! kubepki-pki: the PKI of a kubeadm-style control-plane node as data, and the operations on it.
//!
//! The library decides nothing about output or prompts: it plans, issues, reads and writes, and
//! returns precise errors. Time is always passed in. Its layers, each using only those above:
//!
//! - [`error`] and [`fsio`]: errors that name their file; bounded reads of files kubepki did
//!   not write, directories with exact modes, durable renames;
//! - [`format`]: texts (durations, dates, YAML);
//! - [`crypto`]: PEM, DER, keys, certificates and requests, read exactly as Go reads them;
//!   whether a certificate fits its slot; signing, through one `Issuer` (a CA read and checked);
//! - [`model`]: what a node's PKI is (the inventory, where its files live, the credential slot
//!   of each leaf and kubeconfig, the parameters that shape it, kubeadm's config, kubeconfig
//!   files);
//! - [`storage`]: how it is changed: the session (lock and recovery), journaled transactions,
//!   backups;
//! - [`ops`]: what kubepki does with it: init, renew, the external CA workflow, the expiry report.

pub mod crypto;
pub mod error;
pub mod format;
pub mod fsio;
pub mod model;
pub mod ops;
pub mod storage;

pub use error::{Error, Result};
