//! What a node's PKI is: the inventory, where its files live, the parameters and kubeadm config
//! that shape it, and whether an existing file fits its slot.

pub mod check;
pub mod config;
pub mod inventory;
pub mod kubeconfig;
pub mod layout;
pub mod params;
