use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kubepki_pki::inventory::{self, CaId, ServerRule};
use kubepki_pki::issue::{self, CertTemplate, Signer};
use kubepki_pki::key::PrivateKey;
use kubepki_pki::kubeconfig::{self, Kubeconfig};
use kubepki_pki::layout::{self, Layout};
use kubepki_pki::params::{BACKDATE, ClusterParams, DEFAULT_CLUSTER_NAME};
use time::OffsetDateTime;

use crate::cli::UserArgs;

pub fn user(args: &UserArgs, now: OffsetDateTime) -> Result<ExitCode> {
    if args.client_name.is_empty() {
        bail!("--client-name must not be empty");
    }
    let r = super::resolve(&args.dirs)?;
    let layout = Layout::new(&r.cert_dir, &r.kubeconfig_dir);
    let ca_spec = inventory::ca(CaId::Ca);
    let (crt_path, key_path) = (layout.ca_cert(ca_spec), layout.ca_key(ca_spec));
    let ca_cert = layout::read_cert(&crt_path)?
        .with_context(|| format!("{}: no such file; is --cert-dir right?", crt_path.display()))?;
    let Some(ca_key) = layout::read_key(&key_path)? else {
        bail!(
            "{}: no such file; the cluster CA is external, so kubepki cannot sign a user certificate",
            key_path.display()
        );
    };
    let found = kubepki_pki::check::check_ca(&ca_cert, &crt_path, Some((&ca_key, &key_path)), now);
    if let Some(p) = found.problems.into_iter().next() {
        return Err(p.into());
    }

    let server = server_url(args, &r, &layout)?;
    let cluster_name = r
        .config
        .as_ref()
        .and_then(|c| c.cluster_name.clone())
        .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into());
    let alg = args
        .encryption_algorithm
        .or(r.config.as_ref().and_then(|c| c.encryption_algorithm))
        .unwrap_or_default();

    let key = PrivateKey::generate(alg).map_err(anyhow::Error::msg)?;
    let template = CertTemplate {
        common_name: args.client_name.clone(),
        organizations: args.orgs.clone(),
        client_auth: true,
        ..Default::default()
    };
    let mut not_after = now + time::Duration::try_from(args.validity_period)?;
    if not_after > ca_cert.not_after {
        eprintln!(
            "[kubeconfig] WARNING: the CA expires {}; the certificate is cut off there",
            kubepki_pki::expiry::format_date(ca_cert.not_after)
        );
        not_after = ca_cert.not_after;
    }
    let cert = issue::issue(
        &template,
        key.public_key_der(),
        Signer::Ca {
            cert: &ca_cert,
            key: &ca_key,
        },
        now - BACKDATE,
        not_after,
    )
    .map_err(anyhow::Error::msg)?;
    let ca_pem =
        std::fs::read_to_string(&crt_path).with_context(|| crt_path.display().to_string())?;
    let yaml = Kubeconfig::embedded(
        &cluster_name,
        &server,
        &ca_pem,
        &args.client_name,
        &cert.to_pem(),
        &key.to_pem().map_err(anyhow::Error::msg)?,
    )
    .to_yaml();
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn server_url(args: &UserArgs, r: &super::Resolved, layout: &Layout) -> Result<String> {
    if let Some(s) = &args.server {
        return Ok(s.clone());
    }
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
    let admin = layout.kubeconfig(inventory::kubeconfig("admin.conf").expect("in the inventory"));
    if layout::exists(&admin)? {
        return Ok(kubeconfig::read_credentials(&admin)?.server);
    }
    bail!(
        "cannot tell the API server address: pass --server, or --config with controlPlaneEndpoint"
    )
}
