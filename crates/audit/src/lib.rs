//! kubepki-audit: the checks behind `kubepki audit`, which compares a cluster with the
//! Kubernetes best-practice pages and reports what it finds. Everything here but `pki` and
//! `node` is pure: the command reads the cluster, these functions judge what was read; `pki`
//! reads the PKI's files itself, through kubepki-pki's inventory, and `node` the local node's
//! files below a root directory; neither changes anything.
//!
//! `finding` is the report every check shares; `pss` evaluates pods against the Pod Security
//! Standards, the same way on every API server, whether or not it has the PodSecurity admission
//! plugin, and `namespaces` judges each namespace's labels and the running pods they would
//! reject; `cluster` is the one module that talks to the API server (paginated LISTs fed page
//! by page into the accumulators); `scale` measures the cluster against the large-cluster limits and `zones` judges how
//! it is spread over zones; `pki` holds the certificates and keys to the PKI pages; `node`
//! checks the local node's prerequisites (kernel, cgroup controllers, swap, runtime socket) and
//! the kubelet's version skew. `report` gathers the findings and renders them as text, JSON or
//! SARIF.

/// An ordered enum of unit variants, each known by one name: as serialized, as `Display`s and as
/// `FromStr` takes it (exactly, so that flags and labels mean one thing), plus `ALL` in order
/// and an error type for an unknown name.
macro_rules! named_enum {
    (
        $(#[$doc:meta])*
        pub enum $name:ident ($what:literal, error $error:ident) {
            $($variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[doc = concat!("A name that is no ", $what, ".")]
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $error(pub String);

        impl std::fmt::Display for $error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let names = [$($text),+].join(", ");
                write!(f, concat!("unknown ", $what, " {:?} (one of: {})"), self.0, names)
            }
        }

        impl std::error::Error for $error {}

        impl std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $error(s.to_owned()))
            }
        }
    };
}

pub mod cluster;
pub mod finding;
pub mod namespaces;
pub mod node;
mod object;
pub mod pki;
pub mod pss;
pub mod report;
pub mod scale;
#[cfg(test)]
mod testing;
pub mod zones;

pub use finding::{Finding, Severity};
pub use report::{Report, exit_code};

#[cfg(test)]
mod tests {
    use super::pss::{Level, UnknownLevel};
    use super::*;

    /// Each variant's name parses back to it and serializes as itself; nothing else parses.
    fn round_trip<T>(all: &[T], wrong: &str)
    where
        T: Copy + std::fmt::Debug + PartialEq + std::fmt::Display + serde::Serialize,
        T: std::str::FromStr<Err: std::fmt::Debug>,
    {
        for &v in all {
            assert_eq!(v.to_string().parse::<T>().unwrap(), v);
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_string());
        }
        assert!(wrong.parse::<T>().is_err());
    }

    #[test]
    fn named_enums_round_trip_their_names_only() {
        round_trip(Severity::ALL, "Warning");
        round_trip(Level::ALL, "Baseline");
        assert_eq!(
            "Baseline".parse::<Level>().unwrap_err().to_string(),
            "unknown Pod Security Standards level \"Baseline\" (one of: privileged, baseline, restricted)"
        );
        assert_eq!("x".parse::<Level>(), Err(UnknownLevel("x".into())));
    }
}
