//! Requests and Nodes for the rule and signing tests.
#![allow(dead_code)]

use kubepki_controller::rules::{
    self, NodeAddress, NodeInfo, Policy, Reason, Request, Verdict, decide,
};
use kubepki_pki::crypto::csr;
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub fn pem(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str], alg: KeyAlgorithm) -> Vec<u8> {
    let key = PrivateKey::generate(alg).unwrap();
    let t = CertTemplate {
        common_name: cn.into(),
        organizations: s(orgs),
        dns_names: s(dns),
        ip_addresses: ips.iter().map(|i| i.parse().unwrap()).collect(),
        ..Default::default()
    };
    csr::build(&t, &key).unwrap().into_bytes()
}

pub fn node() -> NodeInfo {
    NodeInfo {
        name: "n1".into(),
        addresses: vec![
            NodeAddress {
                kind: "InternalIP".into(),
                address: "10.0.0.1".into(),
            },
            NodeAddress {
                kind: "ExternalIP".into(),
                address: "203.0.113.7".into(),
            },
            NodeAddress {
                kind: "InternalIP".into(),
                address: "fd00::1".into(),
            },
            NodeAddress {
                kind: "Hostname".into(),
                address: "n1.lan".into(),
            },
            NodeAddress {
                kind: "InternalDNS".into(),
                address: "n1.internal.example".into(),
            },
        ],
        being_deleted: false,
    }
}

/// A request as n1's kubelet sends it; `f` changes what a case needs.
pub struct Case {
    pub signer: String,
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    pub pem: Vec<u8>,
    pub expiration: Option<i64>,
}

impl Case {
    pub fn valid() -> Case {
        Case {
            signer: rules::KUBELET_SERVING.into(),
            username: "system:node:n1".into(),
            groups: s(&["system:nodes", "system:authenticated"]),
            usages: s(&["digital signature", "key encipherment", "server auth"]),
            pem: pem(
                "system:node:n1",
                &["system:nodes"],
                &["n1"],
                &["10.0.0.1"],
                KeyAlgorithm::EcdsaP256,
            ),
            expiration: None,
        }
    }

    pub fn with_pem(mut self, p: Vec<u8>) -> Case {
        self.pem = p;
        self
    }

    pub fn request(&self) -> Request<'_> {
        Request {
            name: "csr-1",
            signer_name: &self.signer,
            username: &self.username,
            groups: &self.groups,
            usages: &self.usages,
            pem: &self.pem,
            expiration_seconds: self.expiration,
        }
    }

    pub fn verdict(&self) -> Verdict {
        decide(&self.request(), Some(&node()), &Policy::default())
    }
}

pub fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub fn denied(v: Verdict) -> Reason {
    match v {
        Verdict::Deny(r) => r,
        other => panic!("expected a denial, got {other:?}"),
    }
}
