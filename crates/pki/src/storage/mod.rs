//! How the PKI is changed: the session (lock and recovery), journaled transactions, backups,
//! static pod manifests held out during a restart.

pub mod backup;
pub mod held;
pub mod session;
pub mod txn;
