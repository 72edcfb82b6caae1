//! The decision rules for `kubernetes.io/kubelet-serving` requests: pure functions of the
//! request, the Node it names and the policy. No I/O, no clock: everything comes in as data, so
//! the controller, `kubepki csr list` and the tests all judge a request the same way.

use std::fmt;
use std::net::IpAddr;

use kubepki_pki::crypto::csr::{self, CsrError, CsrInfo};
use regex::Regex;

pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// The two usage sets the built-in kubelet-serving signer accepts (as sets: order and
/// repetition do not matter to it either).
const USAGES_RSA: [&str; 3] = ["digital signature", "key encipherment", "server auth"];
const USAGES_ANY: [&str; 2] = ["digital signature", "server auth"];

/// What the rules need from a CertificateSigningRequest.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub name: &'a str,
    pub signer_name: &'a str,
    pub username: &'a str,
    pub groups: &'a [String],
    pub usages: &'a [String],
    /// `spec.request`: the PEM-encoded PKCS#10 request.
    pub pem: &'a [u8],
    /// `spec.expirationSeconds` (Kubernetes 1.22+; absent on older API servers).
    pub expiration_seconds: Option<i64>,
}

/// One entry of a Node's `status.addresses`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub kind: String,
    pub address: String,
}

/// What the rules need from the Node object the request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub addresses: Vec<NodeAddress>,
    /// `metadata.deletionTimestamp` is set: the Node is going away (finalizers may keep it a
    /// while), and its name and addresses may soon belong to another machine.
    pub being_deleted: bool,
}

/// Operator-tunable limits.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Longest `spec.expirationSeconds` approved.
    pub max_expiration_seconds: i64,
    /// Extra DNS SANs allowed beyond the node's own names: anchored regular expressions in
    /// which `{node}` stands for the (escaped) node name.
    pub extra_dns_patterns: Vec<String>,
    /// Smallest RSA modulus accepted.
    pub min_rsa_bits: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_expiration_seconds: 365 * 24 * 3600,
            extra_dns_patterns: Vec::new(),
            min_rsa_bits: 2048,
        }
    }
}

impl Policy {
    /// Checks the patterns compile, so a bad flag fails at start-up and not per request.
    pub fn validate(&self) -> Result<(), String> {
        for p in &self.extra_dns_patterns {
            compile_pattern(p, "node-name")
                .map_err(|e| format!("--allowed-dns-pattern {p:?}: {e}"))?;
        }
        Ok(())
    }
}

fn compile_pattern(pattern: &str, node: &str) -> Result<Regex, regex::Error> {
    let expanded = pattern.replace("{node}", &regex::escape(node));
    Regex::new(&format!("^(?:{expanded})$"))
}

/// Why a request is refused. Each has a stable short code (a metric label, an Event reason)
/// and a sentence for humans (`Display`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The request is not a well-formed, self-signed PKCS#10 request.
    Malformed(String),
    /// `spec.request` is not exactly one `CERTIFICATE REQUEST` PEM block with only whitespace
    /// around it: Go's decoder (the signer's) could read another block than ours.
    PemEnvelope(String),
    /// The request could read differently in two parsers (two common names, several extension
    /// requests, a subject attribute that is not text, ...).
    Ambiguous(String),
    /// The requester is not a node (username or group).
    RequesterNotNode {
        username: String,
    },
    /// The request's CN is not the requester's username.
    CommonNameMismatch {
        cn: String,
        username: String,
    },
    /// Subject O is not exactly [system:nodes].
    Organization {
        orgs: Vec<String>,
    },
    /// Usages are not one of the sets the kubelet-serving signer accepts.
    Usages {
        usages: Vec<String>,
    },
    NoSubjectAltNames,
    EmailSan {
        emails: Vec<String>,
    },
    UriSan {
        uris: Vec<String>,
    },
    KeyTooWeak {
        key: String,
        min_bits: usize,
    },
    KeyType {
        key: String,
    },
    ExpirationTooLong {
        requested: i64,
        max: i64,
    },
    NodeNotFound {
        node: String,
    },
    NodeBeingDeleted {
        node: String,
    },
    IpNotNodeAddress {
        ip: IpAddr,
        node: String,
    },
    DnsNotNodeName {
        dns: String,
        node: String,
    },
    /// An older pending request from the same node would be approved: one at a time.
    Duplicate {
        of: String,
    },
}

impl Reason {
    /// Stable code for metrics labels.
    pub fn code(&self) -> &'static str {
        self.names().0
    }

    /// The reason of a Denied condition: CamelCase, as condition reasons are.
    pub fn condition_reason(&self) -> &'static str {
        self.names().1
    }

    /// One table for both names, so they cannot drift apart.
    fn names(&self) -> (&'static str, &'static str) {
        match self {
            Reason::Malformed(_) => ("malformed_request", "KubepkiMalformedRequest"),
            Reason::PemEnvelope(_) => ("pem_envelope", "KubepkiPemEnvelope"),
            Reason::Ambiguous(_) => ("ambiguous_request", "KubepkiAmbiguousRequest"),
            Reason::RequesterNotNode { .. } => ("requester_not_node", "KubepkiRequesterNotNode"),
            Reason::CommonNameMismatch { .. } => ("cn_mismatch", "KubepkiCommonNameMismatch"),
            Reason::Organization { .. } => ("organization", "KubepkiOrganization"),
            Reason::Usages { .. } => ("usages", "KubepkiUsages"),
            Reason::NoSubjectAltNames => ("no_sans", "KubepkiNoSubjectAltNames"),
            Reason::EmailSan { .. } => ("email_san", "KubepkiEmailSAN"),
            Reason::UriSan { .. } => ("uri_san", "KubepkiURISAN"),
            Reason::KeyTooWeak { .. } => ("key_too_weak", "KubepkiKeyTooWeak"),
            Reason::KeyType { .. } => ("key_type", "KubepkiKeyType"),
            Reason::ExpirationTooLong { .. } => ("expiration_too_long", "KubepkiExpirationTooLong"),
            Reason::NodeNotFound { .. } => ("node_not_found", "KubepkiNodeNotFound"),
            Reason::NodeBeingDeleted { .. } => ("node_being_deleted", "KubepkiNodeBeingDeleted"),
            Reason::IpNotNodeAddress { .. } => ("ip_not_node_address", "KubepkiIPNotNodeAddress"),
            Reason::DnsNotNodeName { .. } => ("dns_not_node_name", "KubepkiDNSNotNodeName"),
            Reason::Duplicate { .. } => ("duplicate", "KubepkiDuplicate"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(e) => {
                write!(f, "the request is not a valid certificate request: {e}")
            }
            Reason::PemEnvelope(e) => write!(
                f,
                "spec.request must be exactly one CERTIFICATE REQUEST PEM block with only whitespace around it: {e}"
            ),
            Reason::Ambiguous(e) => write!(f, "{e}"),
            Reason::RequesterNotNode { username } => write!(
                f,
                "requester {username:?} is not a node (a node is user \"{NODE_USER_PREFIX}<name>\" in group {NODES_GROUP:?})"
            ),
            Reason::CommonNameMismatch { cn, username } => write!(
                f,
                "the request's common name {cn:?} is not the requester's name {username:?}"
            ),
            Reason::Organization { orgs } => write!(
                f,
                "the request's organization is {orgs:?}; a kubelet serving certificate must have exactly [{NODES_GROUP:?}]"
            ),
            Reason::Usages { usages } => write!(
                f,
                "usages {usages:?} are not what the kubelet-serving signer issues: [\"digital signature\", \"key encipherment\", \"server auth\"] or [\"digital signature\", \"server auth\"]"
            ),
            Reason::NoSubjectAltNames => write!(
                f,
                "the request has no DNS or IP subject alternative names; a serving certificate needs at least one"
            ),
            Reason::EmailSan { emails } => {
                write!(
                    f,
                    "the request asks for email addresses {emails:?}; a kubelet serving certificate has none"
                )
            }
            Reason::UriSan { uris } => {
                write!(
                    f,
                    "the request asks for URIs {uris:?}; a kubelet serving certificate has none"
                )
            }
            Reason::KeyTooWeak { key, min_bits } => {
                write!(
                    f,
                    "the request's key is {key}; RSA keys need at least {min_bits} bits"
                )
            }
            Reason::KeyType { key } => write!(
                f,
                "the request's key is {key}; accepted are RSA (2048 bits or more), ECDSA P-256 or P-384, and Ed25519"
            ),
            Reason::ExpirationTooLong { requested, max } => write!(
                f,
                "the request asks for a certificate valid {requested}s; at most {max}s is approved"
            ),
            Reason::NodeNotFound { node } => {
                write!(f, "no Node object named {node:?} exists")
            }
            Reason::NodeBeingDeleted { node } => write!(
                f,
                "Node {node:?} is being deleted (metadata.deletionTimestamp is set)"
            ),
            Reason::IpNotNodeAddress { ip, node } => write!(
                f,
                "IP address {ip} is not one of Node {node:?}'s status.addresses"
            ),
            Reason::DnsNotNodeName { dns, node } => write!(
                f,
                "DNS name {dns:?} is neither Node {node:?}'s name nor one of its Hostname/InternalDNS/ExternalDNS addresses"
            ),
            Reason::Duplicate { of } => write!(
                f,
                "the node already has a pending request ({of}); it is decided first"
            ),
        }
    }
}

/// What the rules say about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a `kubernetes.io/kubelet-serving` request: none of our business.
    NotOurs,
    Approve,
    Deny(Reason),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::NotOurs => "ignore",
            Verdict::Approve => "approve",
            Verdict::Deny(_) => "deny",
        }
    }
}

/// The node a request names, from its requester: `system:node:<name>` → `<name>`.
pub fn node_name_of(username: &str) -> Option<&str> {
    username
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

/// Checks that need no Node object: identity, subject, usages, SAN kinds, key, lifetime.
/// Returns the parsed request for the node checks.
pub fn check_request(req: &Request<'_>, policy: &Policy) -> Result<CsrInfo, Reason> {
    let parsed = csr::parse_pem_unverified(req.pem).map_err(reason_of)?;
    let info = &parsed.info;
    if node_name_of(req.username).is_none() || !req.groups.iter().any(|g| g == NODES_GROUP) {
        return Err(Reason::RequesterNotNode {
            username: req.username.to_string(),
        });
    }
    if info.common_name != req.username {
        return Err(Reason::CommonNameMismatch {
            cn: info.common_name.clone(),
            username: req.username.to_string(),
        });
    }
    if info.organizations != [NODES_GROUP] {
        return Err(Reason::Organization {
            orgs: info.organizations.clone(),
        });
    }
    if !usages_ok(req.usages) {
        return Err(Reason::Usages {
            usages: req.usages.to_vec(),
        });
    }
    if !info.emails.is_empty() {
        return Err(Reason::EmailSan {
            emails: info.emails.clone(),
        });
    }
    if !info.uris.is_empty() {
        return Err(Reason::UriSan {
            uris: info.uris.clone(),
        });
    }
    if info.dns_names.is_empty() && info.ip_addresses.is_empty() {
        return Err(Reason::NoSubjectAltNames);
    }
    if info.is_rsa {
        if info.key_bits < policy.min_rsa_bits {
            return Err(Reason::KeyTooWeak {
                key: info.key_description.clone(),
                min_bits: policy.min_rsa_bits,
            });
        }
    } else if !matches!(info.ec_curve, Some("P-256" | "P-384")) && info.key_description != "Ed25519"
    {
        return Err(Reason::KeyType {
            key: info.key_description.clone(),
        });
    }
    // After the key check: the verifier refuses weak keys with a vaguer message.
    parsed.verify().map_err(reason_of)?;
    if let Some(s) = req.expiration_seconds
        && s > policy.max_expiration_seconds
    {
        return Err(Reason::ExpirationTooLong {
            requested: s,
            max: policy.max_expiration_seconds,
        });
    }
    Ok(parsed.info)
}

fn reason_of(e: CsrError) -> Reason {
    match e {
        CsrError::Pem(p) => Reason::PemEnvelope(p.to_string()),
        a @ CsrError::Ambiguous(_) => Reason::Ambiguous(a.to_string()),
        other => Reason::Malformed(other.to_string()),
    }
}

fn usages_ok(usages: &[String]) -> bool {
    let mut got: Vec<&str> = usages.iter().map(String::as_str).collect();
    got.sort_unstable();
    got.dedup();
    let set = |s: &[&'static str]| {
        let mut v = s.to_vec();
        v.sort_unstable();
        v
    };
    got == set(&USAGES_RSA) || got == set(&USAGES_ANY)
}

/// Checks that bind the request to its Node: every IP SAN is one of the Node's addresses,
/// every DNS SAN is the Node's name or one of its DNS-type addresses (exactly), or matches an
/// operator's extra pattern.
pub fn check_node(info: &CsrInfo, node: &NodeInfo, policy: &Policy) -> Result<(), Reason> {
    for ip in &info.ip_addresses {
        let known = node
            .addresses
            .iter()
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
            .any(|a| canonical(a) == canonical(*ip));
        if !known {
            return Err(Reason::IpNotNodeAddress {
                ip: *ip,
                node: node.name.clone(),
            });
        }
    }
    for dns in &info.dns_names {
        let own = *dns == node.name
            || node.addresses.iter().any(|a| {
                matches!(a.kind.as_str(), "Hostname" | "InternalDNS" | "ExternalDNS")
                    && a.address == *dns
            });
        // Patterns were validated at start-up; one that fails for this node name allows nothing.
        let extra = || {
            policy.extra_dns_patterns.iter().any(|p| {
                compile_pattern(p, &node.name)
                    .map(|r| r.is_match(dns))
                    .unwrap_or(false)
            })
        };
        if !own && !extra() {
            return Err(Reason::DnsNotNodeName {
                dns: dns.clone(),
                node: node.name.clone(),
            });
        }
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Every check a request must pass to get a certificate, given the Node its requester names
/// (None: no such Node): the request's own checks (the built-in signer's among them), then the
/// binding to a live Node. Returns the parsed request. `decide` approves exactly what passes, and
/// `--sign` signs nothing else, whoever approved it.
pub fn check_bound(
    req: &Request<'_>,
    node: Option<&NodeInfo>,
    policy: &Policy,
) -> Result<CsrInfo, Reason> {
    let info = check_request(req, policy)?;
    let Some(node) = node else {
        return Err(Reason::NodeNotFound {
            node: node_name_of(req.username).unwrap_or_default().to_string(),
        });
    };
    if node.being_deleted {
        return Err(Reason::NodeBeingDeleted {
            node: node.name.clone(),
        });
    }
    check_node(&info, node, policy)?;
    Ok(info)
}

/// The verdict on one request, given the Node its requester names (None: no such Node).
pub fn decide(req: &Request<'_>, node: Option<&NodeInfo>, policy: &Policy) -> Verdict {
    if req.signer_name != KUBELET_SERVING {
        return Verdict::NotOurs;
    }
    match check_bound(req, node, policy) {
        Ok(_) => Verdict::Approve,
        Err(r) => Verdict::Deny(r),
    }
}

/// Verdicts for all pending requests of one requester, oldest first (the caller sorts by
/// creation time, then name). The oldest approvable request is approved; every later one that
/// would also be approved is a duplicate of it. Deciding the group at once keeps the answer the
/// same whichever of its requests a controller happens to look at first.
pub fn decide_group(
    reqs: &[Request<'_>],
    node: Option<&NodeInfo>,
    policy: &Policy,
) -> Vec<Verdict> {
    let mut first: Option<&str> = None;
    reqs.iter()
        .map(|r| match decide(r, node, policy) {
            Verdict::Approve => match first {
                None => {
                    first = Some(r.name);
                    Verdict::Approve
                }
                Some(of) => Verdict::Deny(Reason::Duplicate { of: of.to_string() }),
            },
            v => v,
        })
        .collect()
}
