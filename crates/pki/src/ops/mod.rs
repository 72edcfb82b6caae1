//! What kubepki does with a PKI: init, renew and restore, the external CA workflow, the expiry
//! report.

pub mod expiry;
pub mod external;
pub mod init;
pub mod install;
pub mod renew;
pub mod restore;
pub mod rotate;
pub mod scan;
