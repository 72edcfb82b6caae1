use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::files;
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::issuer::Issuer;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};
use kubepki_pki::fsio;
use kubepki_pki::model::inventory::{self, CaId, ServerRule};
use kubepki_pki::model::kubeconfig::{self, Kubeconfig};
use kubepki_pki::model::layout::Layout;
use kubepki_pki::model::params::{ClusterParams, DEFAULT_CLUSTER_NAME};
use time::OffsetDateTime;

use crate::cli::{KubeletArgs, UserArgs};
use crate::out::{errln, outln};

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

fn cluster_name(r: &super::Resolved) -> String {
    r.config
        .as_ref()
        .and_then(|c| c.cluster_name.clone())
        .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into())
}

fn algorithm(flag: Option<KeyAlgorithm>, r: &super::Resolved) -> KeyAlgorithm {
    flag.or(r.config.as_ref().and_then(|c| c.encryption_algorithm))
        .unwrap_or_default()
}

pub fn user(args: &UserArgs, now: OffsetDateTime) -> Result<ExitCode> {
    if args.client_name.is_empty() {
        bail!("--client-name must not be empty");
    }
    let r = super::resolve(&args.dirs)?;
    let layout = Layout::new(&r.cert_dir, &r.kubeconfig_dir);
    let server = match &args.server {
        Some(s) => s.clone(),
        None => server_url(&r, &layout, &["admin.conf"])?,
    };
    let template = CertTemplate {
        common_name: args.client_name.clone(),
        organizations: args.orgs.clone(),
        client_auth: true,
        ..Default::default()
    };
    let (cert, key, ca) = sign_client(
        &layout,
        &template,
        args.validity_period,
        algorithm(args.encryption_algorithm, &r),
        now,
    )?;
    let yaml = Kubeconfig::embedded(
        &cluster_name(&r),
        &server,
        &ca,
        &args.client_name,
        &cert,
        &key,
    )
    .to_yaml();
    crate::out::data(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// --config's endpoint, else the server of the first existing kubeconfig in `from`.
fn server_url(r: &super::Resolved, layout: &Layout, from: &[&str]) -> Result<String> {
    if let Some(c) = &r.config
        && (c.control_plane_endpoint.is_some() || c.advertise_address.is_some())
    {
        let mut p = ClusterParams::new(
            String::new(),
            c.advertise_address.unwrap_or([127, 0, 0, 1].into()),
        );
        c.apply_to(&mut p);
        return Ok(p.server_url(ServerRule::ControlPlaneEndpoint));
    }
    for name in from {
        let path = layout.kubeconfig(inventory::kubeconfig(name).expect("in the inventory"));
        if kubepki_pki::fsio::exists(&path)? {
            return Ok(kubeconfig::read_server(&path)?);
        }
    }
    bail!(
        "cannot tell the API server address: pass --server, or --config with controlPlaneEndpoint"
    )
}

pub fn kubelet(args: &KubeletArgs, now: OffsetDateTime) -> Result<ExitCode> {
    kubepki_pki::model::params::validate_node_name(&args.node_name).map_err(anyhow::Error::msg)?;
    let r = super::resolve(&args.dirs)?;
    // Writing: everything is read under the lock, after recovery of an interrupted run.
    let session = if args.write {
        Some(super::open_session(
            &Layout::new(&r.cert_dir, &r.kubeconfig_dir),
            args.wait,
            false,
        )?)
    } else {
        None
    };
    let layout = match &session {
        Some(s) => s.layout().clone(),
        None => Layout::new(&r.cert_dir, &r.kubeconfig_dir),
    };
    let user = format!("system:node:{}", args.node_name);
    let server = match &args.server {
        Some(s) => s.clone(),
        None => server_url(&r, &layout, &["kubelet.conf", "admin.conf"])?,
    };
    let yaml = if args.rotated {
        // The kubelet resolves relative paths against kubelet.conf's directory: write it absolute.
        let pem = std::path::absolute(args.kubelet_dir.join("pki/kubelet-client-current.pem"))?;
        check_rotated(&pem, &layout, &user, now)?;
        let ca = files::read_ca_bundle_pem(&layout.ca_cert(inventory::ca(CaId::Ca)))?;
        Kubeconfig::with_files(&cluster_name(&r), &server, &ca, &user, &pem, &pem).to_yaml()
    } else {
        let template = CertTemplate {
            common_name: user.clone(),
            organizations: vec!["system:nodes".into()],
            client_auth: true,
            ..Default::default()
        };
        let (cert, key, ca) = sign_client(
            &layout,
            &template,
            args.validity_period,
            algorithm(args.encryption_algorithm, &r),
            now,
        )?;
        Kubeconfig::embedded(&cluster_name(&r), &server, &ca, &user, &cert, &key).to_yaml()
    };
    let Some(session) = session else {
        crate::out::data(yaml.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    };
    let target = session
        .layout()
        .kubeconfig(inventory::kubeconfig("kubelet.conf").expect("in the inventory"));
    let mut t = session.transaction("kubeconfig kubelet")?;
    t.replace(&target, yaml.as_bytes(), fsio::KUBECONFIG_MODE)?;
    let mut backed_up = None;
    if kubepki_pki::fsio::exists(&target)? {
        let dir = args
            .backup_dir
            .clone()
            .unwrap_or_else(|| session.new_backup_dir(now));
        t.back_up(
            &dir,
            std::slice::from_ref(&target),
            session.layout(),
            &kubepki_pki::format::dates::rfc3339_utc(now),
        )?;
        backed_up = Some(dir);
    }
    t.commit()?;
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
    let ca = files::read_cert(&ca_path)?
        .with_context(|| format!("{}: no such file", ca_path.display()))?;
    if !c.is_signed_by(&ca) {
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
