//! kubepki-controller: approves `kubernetes.io/kubelet-serving` certificate requests only for
//! the node that owns them.
//!
//! `rules` is the whole policy as pure functions; `facts` turns API objects into its inputs;
//! `controller` is the kube-rs runtime around them (watch, decide, record, optionally sign);
//! `lease` elects the one replica that acts.

pub mod controller;
pub mod facts;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod rules;
pub mod sign;
