//! What a node's PKI is: the inventory, where its files live, the credential slots of its
//! leaves and kubeconfigs (how each is read, checked and written), the parameters and kubeadm
//! config that shape it.

pub mod config;
pub mod inventory;
pub mod kubeconfig;
pub mod layout;
pub mod params;
pub mod slot;
