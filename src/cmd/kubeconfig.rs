use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::files;
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::issuer::Issuer;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};
use kubepki_pki::fsio;
use kubepki_pki::model::inventory::{self, CaId};
use kubepki_pki::model::kubeconfig::{self, Kubeconfig};
use kubepki_pki::model::layout::Layout;
use time::OffsetDateTime;

use crate::out::{errln, outln};
use crate::settings::kubeconfig::{Kubelet, Server, User};

/// A client certificate signed by the cluster CA, as PEM: (cert, key, ca.crt file).
fn sign_client(
    layout: &Layout,
    template: &CertTemplate,
    validity: std::time::Duration,
    alg: KeyAlgorithm,
    now: OffsetDateTime,
) -> Result<(String, String, String)> {
    let ca_spec = inventory::ca(CaId::Ca);
    let (crt_path, key_path) = (layout.ca_cert(ca_spec), layout.ca_key(ca_spec));
    let ca = Issuer::read(&crt_path, &key_path)?
        .with_context(|| format!("{}: no such file; is --cert-dir right?", crt_path.display()))?;
    if !ca.can_sign() {
        bail!(
            "{}: no such file; the cluster CA is external, so kubepki cannot sign a client certificate",
            key_path.display()
        );
    }
    if let Some(p) = ca.check(now).first_problem() {
        return Err(p.into());
    }
    kubepki_pki::format::duration::check_validity(validity, "--validity-period")
        .map_err(anyhow::Error::msg)?;
    let key = PrivateKey::generate(alg).map_err(anyhow::Error::msg)?;
    let issued = ca
        .sign(template, key.public_key_der(), now, validity)
        .map_err(anyhow::Error::msg)?;
    if let Some(end) = issued.cut_at {
        errln!(
            "[kubeconfig] WARNING: the CA expires {}; the certificate is cut off there",
            kubepki_pki::format::dates::format_date(end)
        );
    }
    Ok((
        issued.cert.to_pem(),
        key.to_pem().map_err(anyhow::Error::msg)?,
        ca.bundle_pem(),
    ))
}

/// Writes kubelet.conf with the client certificate `cert_pem` and key `key_pem` embedded (the
/// kubelet's current ones: what it authenticates with when it asks for new ones) and ca.crt as
/// its CA, keeping its cluster name and server; returns where the old one was backed up.
pub(super) fn write_embedded_kubelet_conf(
    session: &kubepki_pki::storage::session::Session,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
    now: OffsetDateTime,
) -> Result<Option<std::path::PathBuf>> {
    let layout = session.layout();
    let target =
        layout.kubeconfig(inventory::kubeconfig("kubelet.conf").expect("in the inventory"));
    let creds = kubeconfig::read_credentials(&target)?;
    let ca = files::read_ca_bundle_pem(&layout.ca_cert(inventory::ca(CaId::Ca)))?;
    let yaml = Kubeconfig::embedded(
        &creds.cluster_name,
        &creds.server,
        &ca,
        user,
        cert_pem,
        key_pem,
    )
    .to_yaml();
    Ok(kubepki_pki::ops::install::install(
        session,
        "ca rotate kubelet",
        &target,
        yaml.as_bytes(),
        fsio::KUBECONFIG_MODE,
        None,
        now,
    )?)
}

pub fn user(args: &User, now: OffsetDateTime) -> Result<ExitCode> {
    let c = &args.client;
    let server = server_url(&c.server, &c.layout)?;
    let template = CertTemplate {
        common_name: args.name.clone(),
        organizations: args.orgs.clone(),
        client_auth: true,
        ..Default::default()
    };
    let (cert, key, ca) = sign_client(&c.layout, &template, c.validity, c.key_algorithm, now)?;
    let yaml =
        Kubeconfig::embedded(&c.cluster_name, &server, &ca, &args.name, &cert, &key).to_yaml();
    crate::out::data(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The server the settings give, else that of the first existing kubeconfig they name.
fn server_url(server: &Server, layout: &Layout) -> Result<String> {
    let from = match server {
        Server::Url(url) => return Ok(url.clone()),
        Server::FromKubeconfigs(from) => from,
    };
    for name in *from {
        let path = layout.kubeconfig(inventory::kubeconfig(name).expect("in the inventory"));
        if kubepki_pki::fsio::exists(&path)? {
            return Ok(kubeconfig::read_server(&path)?);
        }
    }
    bail!(
        "cannot tell the API server address: pass --server, or --config with controlPlaneEndpoint"
    )
}

pub fn kubelet(args: &Kubelet, now: OffsetDateTime) -> Result<ExitCode> {
    let c = &args.client;
    // Writing: everything is read under the lock, after recovery of an interrupted run.
    let write = match &args.write {
        Some(backup_dir) => Some((
            super::open_session(&c.layout, args.wait, false)?,
            backup_dir,
        )),
        None => None,
    };
    let layout = match &write {
        Some((s, _)) => s.layout().clone(),
        None => c.layout.clone(),
    };
    let user = format!("system:node:{}", args.node_name);
    let server = server_url(&c.server, &layout)?;
    let yaml = if let Some(kubelet_dir) = &args.rotated {
        // The kubelet resolves relative paths against kubelet.conf's directory: write it absolute.
        let pem = std::path::absolute(kubelet_dir.join("pki/kubelet-client-current.pem"))?;
        check_rotated(&pem, &layout, &user, now)?;
        let ca = files::read_ca_bundle_pem(&layout.ca_cert(inventory::ca(CaId::Ca)))?;
        Kubeconfig::with_files(&c.cluster_name, &server, &ca, &user, &pem, &pem).to_yaml()
    } else {
        let template = CertTemplate {
            common_name: user.clone(),
            organizations: vec!["system:nodes".into()],
            client_auth: true,
            ..Default::default()
        };
        let (cert, key, ca) = sign_client(&layout, &template, c.validity, c.key_algorithm, now)?;
        Kubeconfig::embedded(&c.cluster_name, &server, &ca, &user, &cert, &key).to_yaml()
    };
    let Some((session, backup_dir)) = write else {
        crate::out::data(yaml.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    };
    let target = session
        .layout()
        .kubeconfig(inventory::kubeconfig("kubelet.conf").expect("in the inventory"));
    let backed_up = kubepki_pki::ops::install::install(
        &session,
        "kubeconfig kubelet",
        &target,
        yaml.as_bytes(),
        fsio::KUBECONFIG_MODE,
        Some(&backup_dir.path(&session, now)),
        now,
    )?;
    if let Some(dir) = backed_up {
        outln!(
            "[kubeconfig] backed up {} to {}",
            target.display(),
            dir.display()
        );
    }
    outln!(
        "[kubeconfig] wrote {}; restart the kubelet: systemctl restart kubelet",
        target.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The rotated certificate must be this node's, from the cluster CA, and current.
fn check_rotated(pem: &Path, layout: &Layout, user: &str, now: OffsetDateTime) -> Result<()> {
    if pem.to_str().is_none() {
        bail!(
            "{}: the path is not UTF-8, and a kubeconfig names files as text; use another --kubelet-dir",
            pem.display()
        );
    }
    if !kubepki_pki::fsio::exists(pem)? {
        bail!(
            "{}: no such file; the kubelet has not rotated its certificate yet",
            pem.display()
        );
    }
    let bytes = kubepki_pki::fsio::read(pem)?;
    let chain = Certificate::from_pem_with_key(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", pem.display()))?;
    let key =
        PrivateKey::from_pem(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", pem.display()))?;
    let c = &chain[0];
    if !key.matches_public_key(c.public_key_der()) {
        bail!(
            "{}: the key in the file does not match its certificate",
            pem.display()
        );
    }
    if c.common_name != user {
        bail!(
            "{}: the certificate is for {:?}, not {user:?}",
            pem.display(),
            c.common_name
        );
    }
    let ca_path = layout.ca_cert(inventory::ca(CaId::Ca));
    // Any CA of ca.crt: during a CA rotation it holds the old and the new one.
    let cas = files::read_cert_chain(&ca_path)?
        .with_context(|| format!("{}: no such file", ca_path.display()))?;
    if !cas.iter().any(|ca| c.is_signed_by(ca)) {
        bail!(
            "{}: not signed by the CA in {}",
            pem.display(),
            ca_path.display()
        );
    }
    if now > c.not_after {
        bail!(
            "{}: expired on {}",
            pem.display(),
            kubepki_pki::format::dates::format_date(c.not_after)
        );
    }
    Ok(())
}
