//! What the Node cache keeps of a Node is what the rules read.

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kubepki_controller::facts::{node_info, strip_node};

fn node(deleting: bool) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            resource_version: Some("7".into()),
            finalizers: Some(vec!["example.com/keep".into()]),
            labels: Some([("a".to_string(), "b".to_string())].into()),
            deletion_timestamp: deleting
                .then(|| Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "10.0.0.1".into(),
            }]),
            node_info: Some(NodeSystemInfo {
                kubelet_version: "v1.20.2".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[test]
fn the_cache_keeps_name_addresses_and_deletion() {
    for deleting in [false, true] {
        let full = node(deleting);
        let mut stripped = full.clone();
        strip_node(&mut stripped);
        // The rules see the same Node through the cache as through a direct read.
        assert_eq!(node_info(&stripped), node_info(&full));
        assert_eq!(node_info(&stripped).being_deleted, deleting);
        assert_eq!(node_info(&stripped).addresses.len(), 1);
        // And the rest is gone.
        assert!(stripped.metadata.labels.is_none());
        assert!(stripped.metadata.finalizers.is_none());
        assert!(stripped.status.unwrap().node_info.is_none());
    }
}
