//! How the PKI is changed: the session (lock and recovery), journaled transactions, backups.

pub mod backup;
pub mod session;
pub mod txn;
