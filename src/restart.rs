//! Restarting static pods the way the kubeadm docs describe: move the manifest out of the
//! kubelet's manifest directory for longer than its fileCheckFrequency, move it back, then wait
//! until the component answers the HTTP probes its manifest declares, sent as the kubelet
//! sends them. Holding the manifest safely (a record of where it goes back, signals) is
//! `held.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Container, Pod, Probe as ProbeSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubepki_pki::ops::renew::Component;
use ureq::http::{HeaderName, HeaderValue, Uri};

use crate::out::{errln, outln};

/// A progress line: stdout, or stderr when the command's stdout is its report.
macro_rules! progress {
    ($opts:expr, $($arg:tt)*) => {
        if $opts.progress_to_stderr {
            errln!($($arg)*)
        } else {
            outln!($($arg)*)
        }
    };
}
use crate::signals::{Guard, signal_name};
use kubepki_pki::storage::held;
pub use kubepki_pki::storage::held::hold_dir;

pub struct Options {
    /// Progress goes to stderr (the command's stdout is a JSON or YAML report).
    pub progress_to_stderr: bool,
    pub manifests_dir: PathBuf,
    /// Where manifests wait while their pod is down (see [`hold_dir`]).
    pub hold_dir: PathBuf,
    pub file_check_frequency: Duration,
    pub timeout: Duration,
}

/// One HTTP probe of a container, as the kubelet would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub container: String,
    /// startupProbe, livenessProbe or readinessProbe.
    pub kind: &'static str,
    pub url: String,
    /// The manifest's httpHeaders.
    pub headers: Vec<(String, String)>,
    /// timeoutSeconds (the kubelet's default: 1 s).
    pub timeout: Duration,
}

/// What a manifest lets kubepki check once its pod is back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Probes {
    pub http: Vec<Probe>,
    /// Probes kubepki cannot send, e.g. "livenessProbe of container etcd (exec)".
    pub unchecked: Vec<String>,
}

impl Probes {
    /// Why nothing can be checked, when nothing can.
    fn why_unchecked(&self) -> String {
        if self.unchecked.is_empty() {
            "it declares no probe".into()
        } else {
            format!("kubepki cannot send its {}", self.unchecked.join(", "))
        }
    }
}

/// The probes of a static pod manifest.
pub fn probes(manifest: &Path) -> Result<Probes> {
    let text = kubepki_pki::fsio::read_to_string(manifest)?;
    probes_of(&text, manifest)
}

/// The probes of a manifest's text; `manifest` names it in errors.
pub fn probes_of(text: &str, manifest: &Path) -> Result<Probes> {
    let pod: Pod = serde_saphyr::from_str(text).map_err(|e| {
        anyhow!(
            "{}: not a valid pod manifest: {}",
            manifest.display(),
            kubepki_pki::format::yaml::YamlError::new(&e)
        )
    })?;
    let Some(spec) = pod.spec else {
        bail!("{}: the pod has no spec", manifest.display());
    };
    // A static pod on the host network has the node's address; kubeadm's manifests name the
    // host anyway, and where they do not the component listens on loopback too.
    let host_network = spec.host_network == Some(true);
    let mut out = Probes::default();
    for c in &spec.containers {
        for (kind, p) in [
            ("startupProbe", &c.startup_probe),
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
        ] {
            let Some(p) = p else { continue };
            let what = format!("{kind} of container {}", c.name);
            match http_probe(p, c, kind, host_network) {
                Ok(Some(probe)) => out.http.push(probe),
                Ok(None) => out.unchecked.push(format!("{what} ({})", action_of(p))),
                Err(e) => bail!("{}: {what}: {e}", manifest.display()),
            }
        }
    }
    Ok(out)
}

fn action_of(p: &ProbeSpec) -> &'static str {
    if p.exec.is_some() {
        "exec"
    } else if p.tcp_socket.is_some() {
        "tcpSocket"
    } else if p.grpc.is_some() {
        "grpc"
    } else if p.http_get.is_some() {
        "httpGet on the pod IP, which only the kubelet knows"
    } else {
        "no action"
    }
}

/// An httpGet probe as a URL, resolved as the kubelet resolves it; None for other actions, or
/// one aimed at the IP of a pod that is not on the host network.
fn http_probe(
    p: &ProbeSpec,
    c: &Container,
    kind: &'static str,
    host_network: bool,
) -> std::result::Result<Option<Probe>, String> {
    let Some(get) = &p.http_get else {
        return Ok(None);
    };
    let port = resolve_port(&get.port, c)?;
    let host = match get.host.as_deref() {
        Some(h) if !h.is_empty() => h,
        _ if host_network => "127.0.0.1",
        _ => return Ok(None),
    };
    let scheme = match get.scheme.as_deref().unwrap_or("HTTP") {
        "HTTP" => "http",
        "HTTPS" => "https",
        s => return Err(format!("scheme {s:?} is neither HTTP nor HTTPS")),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    // As Go's url.URL prints it: a path that does not start with "/" gets one.
    let path = get.path.as_deref().unwrap_or("");
    let slash = if path.starts_with('/') { "" } else { "/" };
    let url = format!("{scheme}://{host}:{port}{slash}{path}");
    Uri::try_from(url.as_str()).map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    let mut headers = Vec::new();
    for h in get.http_headers.iter().flatten() {
        HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("httpHeaders: {:?} is not a header name", h.name))?;
        HeaderValue::from_str(&h.value)
            .map_err(|_| format!("httpHeaders: {:?} is not a header value", h.value))?;
        headers.push((h.name.clone(), h.value.clone()));
    }
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).clamp(1, 3600) as u64);
    Ok(Some(Probe {
        container: c.name.clone(),
        kind,
        url,
        headers,
        timeout,
    }))
}

/// A probe's port as the kubelet resolves it (`ResolveContainerPort`): a number, or the name
/// of one of the container's ports, or, failing that, a number written as a string.
fn resolve_port(port: &IntOrString, c: &Container) -> std::result::Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()));
            match (named, name.parse::<i64>()) {
                (Some(p), _) => i64::from(p.container_port),
                (None, Ok(n)) => n,
                (None, Err(_)) => {
                    let names: Vec<&str> = c
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| p.name.as_deref())
                        .collect();
                    return Err(format!(
                        "port {name:?} is not the name of one of the container's ports ({})",
                        if names.is_empty() {
                            "it names none".to_string()
                        } else {
                            format!("it names {}", names.join(", "))
                        }
                    ));
                }
            }
        }
    };
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("port {n} is not a port number (1-65535)")),
    }
}

/// Sends one probe. Like the kubelet: no credentials, the serving certificate is not
/// verified, any status from 200 to 399 is success. The error says what came back.
fn check(p: &Probe) -> std::result::Result<(), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .disable_verification(true)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(p.timeout))
        .build()
        .into();
    let mut req = agent
        .get(&p.url)
        .header("User-Agent", "kube-probe/kubepki")
        .header("Accept", "*/*");
    for (k, v) in &p.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.call() {
        Ok(r) if (200..400).contains(&r.status().as_u16()) => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// How a static pod's restart went.
#[derive(Debug)]
pub enum Outcome {
    /// Back, and every HTTP probe answered.
    Healthy,
    /// Back; nothing kubepki can probe (the reason).
    Unverified(String),
    /// Left alone: the error came before its manifest moved.
    NotRestarted(anyhow::Error),
    /// Back, but its probes did not answer in time.
    NotHealthy(anyhow::Error),
    /// Its manifest could not be put back; the next kubepki run does it.
    StillHeld(anyhow::Error),
    /// A signal stopped the wait; the manifest went back first (unless `still_held`).
    Interrupted {
        signal: i32,
        still_held: Option<anyhow::Error>,
    },
    /// Not tried: an earlier restart failed or was interrupted.
    Skipped,
}

/// How long a component may take to stop once the kubelet has noticed its manifest is gone:
/// the kubelet's default termination grace period (30 s) and a margin.
const STOP_GRACE: Duration = Duration::from_secs(45);

/// The addresses a manifest's HTTP probes connect to.
fn probe_addrs(probes: &Probes) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for p in &probes.http {
        let Ok(uri) = Uri::try_from(p.url.as_str()) else {
            continue;
        };
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        for a in (host, port).to_socket_addrs().into_iter().flatten() {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// Whether something accepts connections on one of `addrs`.
fn listening(addrs: &[std::net::SocketAddr]) -> bool {
    addrs
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
}

/// Whether every one of `addrs` refuses connections: nothing listens there any more. A timeout
/// is not a refusal (a busy server can be slow to accept): it does not count as stopped.
fn refused(addrs: &[std::net::SocketAddr]) -> bool {
    addrs.iter().all(|a| {
        matches!(
            std::net::TcpStream::connect_timeout(a, Duration::from_millis(500)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
}

/// Waits, after the manifest moved out, until the kubelet is stopping the component. When its
/// probe ports were accepting connections, that is when they refuse them (a component keeps its
/// ports open while it runs and closes them when the kubelet's SIGTERM arrives; the kubelet then
/// finishes the stop before it starts the pod again), at most
/// fileCheckFrequency plus [`STOP_GRACE`]; otherwise (nothing to watch), fileCheckFrequency plus
/// 2 s, as the kubeadm docs advise. A caught signal ends the wait.
fn wait_for_stop(c: Component, probes: &Probes, opts: &Options, guard: &Guard, watch: bool) {
    let addrs = probe_addrs(probes);
    let started = Instant::now();
    if watch {
        let limit = opts.file_check_frequency + STOP_GRACE;
        progress!(
            opts,
            "[restart] {}: manifest moved out; waiting for the kubelet to stop it (its probe ports refusing connections; at most {}s)",
            c.name(),
            limit.as_secs()
        );
        while guard.caught().is_none() {
            if refused(&addrs) {
                progress!(
                    opts,
                    "[restart] {}: stopping (its probe ports refuse connections) after {}s",
                    c.name(),
                    started.elapsed().as_secs()
                );
                return;
            }
            if started.elapsed() >= limit {
                errln!(
                    "[restart] {}: still answering after {}s; putting its manifest back anyway (check that the kubelet restarted it)",
                    c.name(),
                    limit.as_secs()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        return;
    }
    let pause = opts.file_check_frequency + Duration::from_secs(2);
    progress!(
        opts,
        "[restart] {}: manifest moved out; waiting {}s for the kubelet to stop it",
        c.name(),
        pause.as_secs()
    );
    let until = started + pause;
    while guard.caught().is_none() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Restarts one static pod; prints its progress.
pub fn restart(c: Component, opts: &Options) -> Outcome {
    let manifest = opts.manifests_dir.join(format!("{}.yaml", c.name()));
    if !manifest.is_file() {
        return Outcome::NotRestarted(anyhow!(
            "{}: no such static pod manifest; restart {} yourself",
            manifest.display(),
            c.name()
        ));
    }
    // Read before the pod goes down: a manifest kubepki cannot probe is refused up front.
    let probes = match probes(&manifest) {
        Ok(p) => p,
        Err(e) => return Outcome::NotRestarted(e),
    };
    // Whether its probe ports answer now: then their closing says that the kubelet stopped it.
    let listening_before = listening(&probe_addrs(&probes));
    let guard = match Guard::arm() {
        Ok(g) => g,
        Err(e) => return Outcome::NotRestarted(e),
    };
    if let Some(signal) = guard.caught() {
        return Outcome::Interrupted {
            signal,
            still_held: None,
        };
    }
    let held = match held::hold(&manifest, &opts.hold_dir) {
        Ok(h) => h,
        Err(e) => {
            return match guard.disarm() {
                Some(signal) => Outcome::Interrupted {
                    signal,
                    still_held: None,
                },
                None => Outcome::NotRestarted(e.into()),
            };
        }
    };
    wait_for_stop(c, &probes, opts, &guard, listening_before);
    let back = held.put_back();
    if let Some(signal) = guard.disarm() {
        let still_held = back.err().map(anyhow::Error::from);
        if still_held.is_none() {
            errln!(
                "[restart] {}: caught {}; its manifest is back in place",
                c.name(),
                signal_name(signal)
            );
        }
        return Outcome::Interrupted { signal, still_held };
    }
    if let Err(e) = back {
        return Outcome::StillHeld(e.into());
    }
    if probes.http.is_empty() {
        let why = probes.why_unchecked();
        progress!(
            opts,
            "[restart] {}: manifest restored; {why}, so check yourself that it is running",
            c.name()
        );
        return Outcome::Unverified(why);
    }
    let mut urls: Vec<&str> = Vec::new();
    for p in &probes.http {
        if !urls.contains(&p.url.as_str()) {
            urls.push(&p.url);
        }
    }
    progress!(
        opts,
        "[restart] {}: manifest restored; waiting for {}",
        c.name(),
        urls.join(", ")
    );
    let start = Instant::now();
    loop {
        // Healthy once every probe passes in the same round.
        let failing = probes
            .http
            .iter()
            .find_map(|p| check(p).err().map(|e| (p, e)));
        let Some((p, why)) = failing else {
            progress!(
                opts,
                "[restart] {} is healthy again after {}s",
                c.name(),
                start.elapsed().as_secs()
            );
            return Outcome::Healthy;
        };
        if start.elapsed() >= opts.timeout {
            return Outcome::NotHealthy(anyhow!(
                "{} did not answer {} (the {} of container {}) within {}s of its manifest being restored (last: {why}); check the kubelet's logs",
                c.name(),
                p.url,
                p.kind,
                p.container,
                opts.timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Restarts `comps` one at a time; errors are printed as they happen. After one that was
/// stopped and did not come back healthy, or was interrupted, the rest are `Skipped` (one
/// that could not be stopped at all does not stop the others).
pub fn restart_all(comps: &[Component], opts: &Options) -> Vec<(Component, Outcome)> {
    let mut out: Vec<(Component, Outcome)> = Vec::new();
    for &c in comps {
        if out.iter().any(|(_, o)| {
            matches!(
                o,
                Outcome::NotHealthy(_) | Outcome::StillHeld(_) | Outcome::Interrupted { .. }
            )
        }) {
            out.push((c, Outcome::Skipped));
            continue;
        }
        let o = restart(c, opts);
        match &o {
            Outcome::NotRestarted(e) | Outcome::NotHealthy(e) | Outcome::StillHeld(e) => {
                errln!("error: {e:#}")
            }
            Outcome::Interrupted {
                still_held: Some(e),
                ..
            } => errln!("error: {e:#}"),
            _ => {}
        }
        out.push((c, o));
    }
    out
}

/// The exit status after restarts: 128+n if a signal stopped them, 1 if one failed.
pub fn exit_code(results: &[(Component, Outcome)]) -> std::process::ExitCode {
    for (_, o) in results {
        if let Outcome::Interrupted { signal, .. } = o {
            return std::process::ExitCode::from(u8::try_from(128 + signal).unwrap_or(255));
        }
    }
    if results
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Healthy | Outcome::Unverified(_)))
    {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn names(cs: &[Component]) -> String {
    cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// The last words of a renewal with `--restart-static-pods`: what was restarted, what was not
/// and why, and what still needs a restart by hand. `others` are the components that are not
/// static pods (the kubelet); `etcd_renewed` whether etcd's serving or peer certificate was.
pub fn summary(
    results: &[(Component, Outcome)],
    others: &[Component],
    etcd_renewed: bool,
) -> Vec<String> {
    let of = |f: fn(&Outcome) -> bool| -> Vec<Component> {
        results
            .iter()
            .filter(|(_, o)| f(o))
            .map(|(c, _)| *c)
            .collect()
    };
    let mut lines = Vec::new();
    let healthy = of(|o| matches!(o, Outcome::Healthy));
    if !healthy.is_empty() {
        lines.push(format!(
            "[renew] restarted {}: {} healthy again",
            names(&healthy),
            if healthy.len() == 1 {
                "it is"
            } else {
                "each is"
            }
        ));
    }
    for (c, o) in results {
        let n = c.name();
        match o {
            Outcome::Healthy | Outcome::Skipped => {}
            Outcome::Unverified(why) => lines.push(format!(
                "[renew] restarted {n}, not verified: {why}; check yourself that it is running"
            )),
            Outcome::NotRestarted(_) => lines.push(format!(
                "[renew] {n} was not restarted (see the error above); it must restart to load the renewed certificates"
            )),
            Outcome::NotHealthy(_) => lines.push(format!(
                "[renew] restarted {n}, but it is not healthy (see the error above)"
            )),
            Outcome::StillHeld(_) => lines.push(format!(
                "[renew] {n} is stopped: its manifest could not be put back (see the error above); the next kubepki run puts it back"
            )),
            Outcome::Interrupted {
                signal,
                still_held: None,
            } => lines.push(format!(
                "[renew] the restart of {n} was interrupted by {}: its manifest is back in place; check that {n} runs the renewed certificates, or restart it yourself",
                signal_name(*signal)
            )),
            Outcome::Interrupted {
                signal,
                still_held: Some(_),
            } => lines.push(format!(
                "[renew] the restart of {n} was interrupted by {}, and its manifest could not be put back (see the error above); the next kubepki run puts it back",
                signal_name(*signal)
            )),
        }
    }
    let skipped = of(|o| matches!(o, Outcome::Skipped));
    if !skipped.is_empty() {
        lines.push(format!(
            "[renew] not restarted: {}; {} restart to load the renewed certificates",
            names(&skipped),
            if skipped.len() == 1 {
                "it must"
            } else {
                "they must"
            }
        ));
    }
    if others.contains(&Component::Kubelet) {
        lines.push(
            "[renew] not restarted: the kubelet, which is not a static pod; it must restart to load the new kubelet.conf: systemctl restart kubelet"
                .into(),
        );
    }
    if etcd_renewed {
        lines.push(
            "[renew] etcd was not restarted: it reads its serving and peer certificates on every new connection"
                .into(),
        );
    }
    if lines.is_empty() {
        lines.push(
            "[renew] no component needs a restart: these certificates are read when used".into(),
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeadm v1.20 kube-apiserver manifest's probe part, with `port` and `ports` as given.
    fn manifest(port: &str, ports: &str, host: &str) -> String {
        let probe = |kind: &str, path: &str, timeout: &str| {
            format!(
                "    {kind}:\n      httpGet:\n{host}        path: {path}\n        port: {port}\n        scheme: HTTPS\n{timeout}"
            )
        };
        [
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\n",
            "spec:\n  hostNetwork: true\n  containers:\n  - name: kube-apiserver\n",
            "    image: k8s.gcr.io/kube-apiserver:v1.20.2\n",
            ports,
            &probe("livenessProbe", "/livez", "      timeoutSeconds: 15\n"),
            &probe("readinessProbe", "/readyz", ""),
            &probe("startupProbe", "livez", "      timeoutSeconds: 15\n"),
        ]
        .concat()
    }

    const HOST: &str = "        host: 10.0.0.5\n";
    const NAMED: &str =
        "    ports:\n    - containerPort: 6443\n      name: probe-port\n      protocol: TCP\n";

    /// A component is seen stopped when its probe ports refuse connections, not before.
    #[test]
    fn a_stop_is_seen_when_the_probe_port_refuses_connections() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let text = manifest(&port.to_string(), "", "        host: 127.0.0.1\n");
        let probes = probes_of(&text, Path::new("m.yaml")).unwrap();
        let addrs = probe_addrs(&probes);
        assert_eq!(addrs, vec![l.local_addr().unwrap()]);
        assert!(listening(&addrs) && !refused(&addrs));
        drop(l);
        assert!(!listening(&addrs) && refused(&addrs));
        // Nothing to connect to: never "stopped" by accident.
        assert!(probe_addrs(&Probes::default()).is_empty());
    }

    fn urls(p: &Probes) -> Vec<(&str, &str)> {
        p.http.iter().map(|p| (p.kind, p.url.as_str())).collect()
    }

    const EXPECTED: [(&str, &str); 3] = [
        ("startupProbe", "https://10.0.0.5:6443/livez"),
        ("livenessProbe", "https://10.0.0.5:6443/livez"),
        ("readinessProbe", "https://10.0.0.5:6443/readyz"),
    ];

    #[test]
    fn numeric_and_named_ports_give_the_same_probes() {
        let m = Path::new("/m/kube-apiserver.yaml");
        let numeric = probes_of(&manifest("6443", "", HOST), m).unwrap();
        let named = probes_of(&manifest("probe-port", NAMED, HOST), m).unwrap();
        assert_eq!(urls(&numeric), EXPECTED);
        assert_eq!(numeric, named);
        assert!(numeric.unchecked.is_empty());
        assert_eq!(numeric.http[1].timeout, Duration::from_secs(15));
        assert_eq!(numeric.http[2].timeout, Duration::from_secs(1));
        // A number written as a string, as the kubelet's last resort.
        let quoted = probes_of(&manifest("\"6443\"", "", HOST), m).unwrap();
        assert_eq!(numeric, quoted);
    }

    #[test]
    fn an_unknown_port_name_is_an_error_naming_the_manifest() {
        let m = Path::new("/etc/kubernetes/manifests/kube-apiserver.yaml");
        let e = probes_of(&manifest("other-port", NAMED, HOST), m)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/kubernetes/manifests/kube-apiserver.yaml: startupProbe of container \
             kube-apiserver: port \"other-port\" is not the name of one of the container's \
             ports (it names probe-port)"
        );
        let e = probes_of(&manifest("probe-port", "", HOST), m)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("(it names none)"), "{e}");
        for bad in ["0", "70000", "-1"] {
            let e = probes_of(&manifest(bad, "", HOST), m)
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not a port number (1-65535)"), "{bad}: {e}");
        }
    }

    #[test]
    fn host_defaults_to_loopback_on_the_host_network() {
        let m = Path::new("m.yaml");
        let p = probes_of(&manifest("6443", "", ""), m).unwrap();
        assert_eq!(p.http[0].url, "https://127.0.0.1:6443/livez");
        // Not on the host network: the pod IP, which only the kubelet knows.
        let text = manifest("6443", "", "").replace("  hostNetwork: true\n", "");
        let p = probes_of(&text, m).unwrap();
        assert!(p.http.is_empty());
        assert_eq!(p.unchecked.len(), 3);
        assert!(
            p.why_unchecked().contains("pod IP"),
            "{}",
            p.why_unchecked()
        );
        // IPv6 hosts are bracketed; HTTP is the default scheme.
        let text = manifest("6443", "", "        host: \"::1\"\n")
            .replace("scheme: HTTPS", "scheme: HTTP");
        assert_eq!(
            probes_of(&text, m).unwrap().http[0].url,
            "http://[::1]:6443/livez"
        );
        let text = manifest("6443", "", HOST).replace("        scheme: HTTPS\n", "");
        assert_eq!(
            probes_of(&text, m).unwrap().http[0].url,
            "http://10.0.0.5:6443/livez"
        );
    }

    #[test]
    fn other_actions_and_bad_fields() {
        let m = Path::new("/m/etcd.yaml");
        let etcd = "apiVersion: v1\nkind: Pod\nspec:\n  hostNetwork: true\n  containers:\n  - name: etcd\n    livenessProbe:\n      exec:\n        command: [etcdctl, endpoint, health]\n";
        let p = probes_of(etcd, m).unwrap();
        assert!(p.http.is_empty());
        assert_eq!(
            p.why_unchecked(),
            "kubepki cannot send its livenessProbe of container etcd (exec)"
        );
        let none = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: x\n";
        assert_eq!(
            probes_of(none, m).unwrap().why_unchecked(),
            "it declares no probe"
        );
        let e = probes_of(&manifest("6443", "", HOST).replace("HTTPS", "FTP"), m)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("scheme \"FTP\" is neither HTTP nor HTTPS"),
            "{e}"
        );
        let e = probes_of("spec: [", m).unwrap_err().to_string();
        assert!(
            e.starts_with("/m/etcd.yaml: not a valid pod manifest"),
            "{e}"
        );
        let e = probes_of("apiVersion: v1\nkind: Pod\n", m)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "/m/etcd.yaml: the pod has no spec");
        let headers = manifest("6443", "", HOST).replace(
            "        path: /livez\n",
            "        path: /livez\n        httpHeaders:\n        - name: \"bad header\"\n          value: x\n",
        );
        let e = probes_of(&headers, m).unwrap_err().to_string();
        assert!(e.contains("\"bad header\" is not a header name"), "{e}");
    }

    fn err() -> anyhow::Error {
        anyhow!("x")
    }

    #[test]
    fn summary_says_what_was_restarted_and_what_was_not() {
        use Component::*;
        let all = [
            (KubeApiserver, Outcome::Healthy),
            (KubeControllerManager, Outcome::Healthy),
            (KubeScheduler, Outcome::Healthy),
        ];
        assert_eq!(
            summary(&all, &[], true),
            [
                "[renew] restarted kube-apiserver, kube-controller-manager, kube-scheduler: each is healthy again",
                "[renew] etcd was not restarted: it reads its serving and peer certificates on every new connection",
            ]
        );
        let failed = [
            (KubeApiserver, Outcome::NotHealthy(err())),
            (KubeControllerManager, Outcome::Skipped),
            (KubeScheduler, Outcome::Skipped),
        ];
        assert_eq!(
            summary(&failed, &[Kubelet], false),
            [
                "[renew] restarted kube-apiserver, but it is not healthy (see the error above)",
                "[renew] not restarted: kube-controller-manager, kube-scheduler; they must restart to load the renewed certificates",
                "[renew] not restarted: the kubelet, which is not a static pod; it must restart to load the new kubelet.conf: systemctl restart kubelet",
            ]
        );
        assert_eq!(exit_code(&failed), std::process::ExitCode::FAILURE);
        let stopped = [
            (KubeApiserver, Outcome::Healthy),
            (
                KubeScheduler,
                Outcome::Interrupted {
                    signal: 15,
                    still_held: None,
                },
            ),
        ];
        assert_eq!(
            summary(&stopped, &[], false),
            [
                "[renew] restarted kube-apiserver: it is healthy again",
                "[renew] the restart of kube-scheduler was interrupted by SIGTERM: its manifest is back in place; check that kube-scheduler runs the renewed certificates, or restart it yourself",
            ]
        );
        assert_eq!(exit_code(&stopped), std::process::ExitCode::from(143));
        assert_eq!(
            summary(&[], &[], false),
            ["[renew] no component needs a restart: these certificates are read when used"]
        );
        assert_eq!(
            summary(&[], &[], true),
            [
                "[renew] etcd was not restarted: it reads its serving and peer certificates on every new connection"
            ]
        );
        assert_eq!(exit_code(&all), std::process::ExitCode::SUCCESS);
    }
}
