//! What kubepki does with a PKI: init, renew, the external CA workflow, the expiry report.

pub mod expiry;
pub mod external;
pub mod init;
pub mod renew;
