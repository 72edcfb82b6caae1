//! Defaults kubeadm detects from the machine: node name and advertise address.

use std::net::{IpAddr, UdpSocket};

/// The hostname, lowercased, as kubeadm's default node name.
pub fn node_name() -> anyhow::Result<String> {
    let h = nix::unistd::gethostname()?;
    let h = h
        .into_string()
        .map_err(|_| anyhow::anyhow!("hostname is not UTF-8; pass --node-name"))?;
    Ok(h.trim().to_lowercase())
}

/// The source address the kernel would use for the default route. Connecting a UDP socket
/// sends nothing; it only selects a route.
pub fn advertise_address() -> anyhow::Result<IpAddr> {
    for (bind, target) in [("0.0.0.0:0", "192.0.2.1:9"), ("[::]:0", "[2001:db8::1]:9")] {
        if let Ok(s) = UdpSocket::bind(bind)
            && s.connect(target).is_ok()
            && let Ok(a) = s.local_addr()
            && !a.ip().is_unspecified()
        {
            return Ok(a.ip());
        }
    }
    anyhow::bail!(
        "cannot find this machine's default-route address; pass --apiserver-advertise-address"
    )
}
