//! kubepki-agent: runs on every node. It serves metrics for every certificate there, records
//! Events on the Node when one nears expiry, and (opt-in, control-plane nodes) renews what is
//! due with `kubepki certs renew`, one node of the cluster at a time.
//!
//! `decide` holds every decision, pure; `metrics` the /metrics series; `run` is the loop of
//! file reads and API calls around them.

pub mod decide;
pub mod metrics;
pub mod run;
