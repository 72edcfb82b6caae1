//! Restarting static pods the way the kubeadm docs describe: move the manifest out of the
//! kubelet's manifest directory for longer than its fileCheckFrequency, move it back, then wait
//! until the component answers the liveness probe its manifest declares.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::out::outln;
use anyhow::{Context, Result, bail};
use kubepki_pki::renew::Component;
use kubepki_pki::txn;

pub struct Options {
    pub manifests_dir: PathBuf,
    /// Where manifests wait while their pod is down; outside the manifests directory so the
    /// kubelet does not see them.
    pub hold_dir: PathBuf,
    pub file_check_frequency: Duration,
    pub timeout: Duration,
}

pub fn hold_dir(kubeconfig_dir: &Path) -> PathBuf {
    kubeconfig_dir.join("kubepki-held-manifests")
}

/// Puts back manifests an interrupted run left in the hold directory.
pub fn recover_held(opts: &Options) -> Result<Vec<PathBuf>> {
    let mut back = Vec::new();
    if !opts.hold_dir.is_dir() {
        return Ok(back);
    }
    for e in
        std::fs::read_dir(&opts.hold_dir).with_context(|| opts.hold_dir.display().to_string())?
    {
        let e = e?;
        let dest = opts.manifests_dir.join(e.file_name());
        if dest.exists() {
            bail!(
                "{} is held by an interrupted kubepki run, but {} exists too; keep one and remove the other",
                e.path().display(),
                dest.display()
            );
        }
        std::fs::rename(e.path(), &dest).with_context(|| dest.display().to_string())?;
        back.push(dest);
    }
    txn::sync_dir(&opts.manifests_dir)?;
    let _ = std::fs::remove_dir(&opts.hold_dir);
    Ok(back)
}

/// The httpGet liveness probe of a static pod manifest, as a URL.
pub fn probe_url(manifest: &Path) -> Result<Option<String>> {
    let text = std::fs::read_to_string(manifest).with_context(|| manifest.display().to_string())?;
    let v: serde_json::Value = serde_saphyr::from_str(&text)
        .with_context(|| format!("{}: not a valid pod manifest", manifest.display()))?;
    let Some(get) = v
        .pointer("/spec/containers/0/livenessProbe/httpGet")
        .or_else(|| v.pointer("/spec/containers/0/startupProbe/httpGet"))
    else {
        return Ok(None);
    };
    let host = get
        .get("host")
        .and_then(|h| h.as_str())
        .unwrap_or("127.0.0.1");
    let port = match get.get("port") {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) if s.parse::<u16>().is_ok() => s.clone(),
        _ => return Ok(None),
    };
    let path = get.get("path").and_then(|p| p.as_str()).unwrap_or("/");
    let scheme = get
        .get("scheme")
        .and_then(|s| s.as_str())
        .unwrap_or("HTTP")
        .to_lowercase();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(Some(format!("{scheme}://{host}:{port}{path}")))
}

/// One probe, as the kubelet judges it: any status from 200 to 399 is healthy. Like the
/// kubelet, it sends no credentials and does not verify the serving certificate.
pub fn healthy(url: &str) -> bool {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .disable_verification(true)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(r) => (200..400).contains(&r.status().as_u16()),
        Err(_) => false,
    }
}

pub fn restart(c: Component, opts: &Options) -> Result<()> {
    let file = format!("{}.yaml", c.name());
    let manifest = opts.manifests_dir.join(&file);
    if !manifest.is_file() {
        bail!(
            "{}: no such static pod manifest; restart {} yourself",
            manifest.display(),
            c.name()
        );
    }
    let probe = probe_url(&manifest)?;
    std::fs::create_dir_all(&opts.hold_dir).with_context(|| opts.hold_dir.display().to_string())?;
    let held = opts.hold_dir.join(&file);
    std::fs::rename(&manifest, &held)
        .with_context(|| format!("moving {} out", manifest.display()))?;
    txn::sync_dir(&opts.manifests_dir)?;
    let pause = opts.file_check_frequency + Duration::from_secs(2);
    outln!(
        "[restart] {}: manifest moved out; waiting {}s for the kubelet to stop it",
        c.name(),
        pause.as_secs()
    );
    std::thread::sleep(pause);
    std::fs::rename(&held, &manifest)
        .with_context(|| format!("moving {} back", manifest.display()))?;
    txn::sync_dir(&opts.manifests_dir)?;
    let _ = std::fs::remove_dir(&opts.hold_dir);
    let Some(url) = probe else {
        outln!(
            "[restart] {}: manifest restored; it declares no HTTP liveness probe, so check yourself that it is running",
            c.name()
        );
        return Ok(());
    };
    outln!(
        "[restart] {}: manifest restored; waiting for {url}",
        c.name()
    );
    let start = Instant::now();
    while start.elapsed() < opts.timeout {
        if healthy(&url) {
            outln!(
                "[restart] {} is healthy again after {}s",
                c.name(),
                start.elapsed().as_secs()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!(
        "{} did not answer {url} within {}s of its manifest being restored; check the kubelet's logs",
        c.name(),
        opts.timeout.as_secs()
    )
}
