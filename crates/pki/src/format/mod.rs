//! Texts: durations and dates as Kubernetes writes them, YAML as sigs.k8s.io/yaml writes it.

pub mod dates;
pub mod duration;
pub mod yaml;
