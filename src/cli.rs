//! Command-line surface. Flag names and defaults follow kubeadm where kubeadm has them.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kubepki_pki::crypto::key::KeyAlgorithm;

#[derive(Parser, Debug)]
#[command(
    name = "kubepki",
    version,
    about = "Owns the certificate lifecycle of a kubeadm-style Kubernetes cluster",
    long_about = "kubepki creates a kubeadm-compatible control-plane PKI, reports certificate \
expiry exactly as `kubeadm certs check-expiration` does, and issues user kubeconfigs.\n\n\
Every command that writes takes a lock on the cert dir, first finishes or undoes an interrupted \
run, backs up what it replaces, and puts its files in place as one journaled transaction (all \
or nothing, even if killed). Private keys are mode 0600.",
    after_help = "Exit status: 0 success, 1 error (the message names the file and the problem), \
2 usage error, 128+n when signal n stopped a static pod restart (its manifest was put back first)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Pretend the current time is this RFC 3339 instant (for tests and what-if reports).
    #[arg(long, global = true, hide = true, env = "KUBEPKI_NOW", value_parser = parse_now)]
    pub now: Option<time::OffsetDateTime>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create every missing certificate, key and kubeconfig of a control-plane node.
    #[command(
        long_about = "Create every missing certificate, key and kubeconfig of a \
control-plane node, as `kubeadm init phase certs all` and `kubeadm init phase kubeconfig all` \
would: three CAs (ca, front-proxy-ca, etcd-ca), seven leaf certificates, the service-account \
key pair, and admin.conf, super-admin.conf, controller-manager.conf, scheduler.conf and \
kubelet.conf.\n\n\
Existing files are never replaced. An existing CA signs what is missing. A file that exists but \
is unfit for its slot (corrupt, wrong CA, wrong key, expired, lacking SANs) is reported and \
nothing is written. If ca.crt is present without ca.key, the CA is external: what it must sign \
and is missing is reported as an error, and everything else is still created.\n\n\
Settings come from --config (a kubeadm InitConfiguration/ClusterConfiguration, v1beta2-v1beta4), \
then flags, which win."
    )]
    Init(InitArgs),

    /// Certificate operations (check-expiration).
    #[command(subcommand)]
    Certs(CertsCommand),

    /// Certificate authority operations (rotate).
    #[command(subcommand)]
    Ca(CaCommand),

    /// Kubeconfig operations (user).
    #[command(subcommand)]
    Kubeconfig(KubeconfigCommand),

    /// Run the in-cluster controller that approves kubelet serving certificates.
    #[command(
        long_about = "Run the in-cluster controller that decides CertificateSigningRequests for the signer kubernetes.io/kubelet-serving (kubelets with serverTLSBootstrap: true).\n\nA request is approved only when it is bound to the node that owns it: the requester is system:node:<name> in group system:nodes and is the request's CN; O is exactly [system:nodes]; the usages are what the built-in signer issues; the Node object exists and is not being deleted; every IP SAN is one of its status.addresses; every DNS SAN is its name or one of its Hostname/InternalDNS/ExternalDNS addresses (exactly; --allowed-dns-pattern adds more); no email or URI SANs; at least one SAN; RSA keys of at least 2048 bits, ECDSA P-256/P-384 or Ed25519; expirationSeconds within --max-expiration; and no older pending request from the same node. Anything else is denied with a reason (or left pending with --no-deny). Every decision is also recorded as an Event.\n\nCredentials: --kubeconfig, else $KUBECONFIG or ~/.kube/config, else the in-cluster service account. With --leader-elect (the default) only the holder of a Lease reconciles, and only while it renews it within --leader-elect-renew-deadline, so several replicas are safe; every decision is also written with the request's resourceVersion as a precondition.\n\nWith --sign, an approved request (whoever approved it) is signed only if it passes the same rules; one that does not is marked Failed, as the built-in signer does, and nothing is signed while the CA is expired.",
        after_help = "Endpoints: /metrics (Prometheus), /healthz, /readyz on --metrics-bind-address and --health-probe-bind-address. Logs: RUST_LOG (default info), --log-format json|text."
    )]
    Controller(ControllerArgs),

    /// Inspect and approve CertificateSigningRequests with the controller's rules.
    #[command(subcommand)]
    Csr(CsrCommand),

    /// Run the node agent: metrics and Events for every certificate, opt-in renewal.
    #[command(
        long_about = "Run the node agent (a DaemonSet on every node, see deploy/).\n\n\
Metrics: every certificate on the node (the kubeadm inventory, every certificate of every \
bundle, every kubeconfig's embedded client certificate and CA, the kubelet's client and serving \
certificates, --watch-file and --watch-dir) as x509-certificate-exporter's x509_cert_not_after, \
x509_cert_not_before and x509_cert_expired series with the same labels, plus \
kubepki_certificate_info{name,ca,externally_managed,renewable} and kubepki_read_errors{reason}. \
A file is read again only when it changed; an unreadable, corrupt, huge or endless file is \
reported by reason and the rest is still served.\n\n\
Events on the Node: when a certificate crosses one of --event-thresholds, when it expires, \
when it is renewed and when renewal fails.\n\n\
Renewal (off unless --renew-before or the ConfigMap's renewBefore sets it): on a node with the \
CA keys, what expires within the window is renewed by `kubepki certs renew all \
--expiring-within` (journaled, backed up) and the static pods whose certificates changed are \
restarted one at a time, each waited for until healthy. Only the holder of the Lease renews, \
so at most one node of the cluster renews at a time. A failure stops renewal on every node: it \
is recorded on the Lease (annotation kubepki.io/renewal-failed), as an Event and in \
kubepki_agent_renewal_stopped, and the failed node's backup is kept. --pause-renewal, the \
ConfigMap's paused: \"true\" or the Node annotation kubepki.io/renewal-paused=true pause it.",
        after_help = "Endpoints: /metrics, /healthz, /readyz on --metrics-bind-address. Logs: RUST_LOG (default info), --log-format json|text. Exit status: 0 after SIGTERM, 1 on a start-up error."
    )]
    Agent(AgentArgs),

    /// Audit the cluster and this node against the Kubernetes best-practice pages (reads only).
    #[command(
        long_about = "Audit the cluster and this node against the Kubernetes best-practice pages, reading only (nothing in the cluster or on disk is changed).\n\n\
Checks (--checks, default all):\n\
  scale  the large-cluster limits: Pods per node, nodes, Pods and containers against 110, 5,000, 150,000 and 300,000 (lower them with the --max-* flags), with the headroom left; kubelets admitting more than 110 Pods; addons (every DaemonSet, the Deployments of kube-system) without CPU/memory requests and limits\n\
  zones  nodes without topology.kubernetes.io/zone; control plane, API servers and etcd not spread over three zones; multi-replica Deployments and StatefulSets that do not spread over zones; PersistentVolumes without a zone\n\
  pss    Pod Security Standards: namespaces without an enforce label, enforcing privileged, without warn/audit at the enforced level, pinned to an old version; and which running Pods each namespace would reject at baseline and at restricted, evaluated by kubepki itself (the same answer on API servers without the PodSecurity admission plugin)\n\
  pki    the certificates of --cert-dir and --kubeconfig-dir: every one present, usages and SANs, no leaf outliving its CA, validity and key size against --max-leaf-validity and --min-rsa-bits, expiry within --expiring-within, the kubelet's serving certificate, key file modes and owners, kubeconfigs trusting another CA\n\
  node   this machine as a node: kernel version, cgroup controllers, swap, the container runtime answering, the kubelet's version skew against the API server\n\n\
scale, zones and pss read the cluster with paginated LISTs (--page-size) through --kubeconfig, $KUBECONFIG, ~/.kube/config or the in-cluster service account; they need list on nodes, namespaces, pods, daemonsets, deployments, statefulsets and persistentvolumes. pki and node read this machine's files; by default each is skipped, and the report says so, where its directory (the cert dir, the kubelet dir) does not exist.\n\n\
Every finding has a stable id, a severity (info, warning, error, critical), the object or file, what is wrong, what the page says and the fix.",
        after_help = "Exit status: 0 when no finding is at or above --fail-on (always without it), 1 when one is, 2 when the audit could not be made (unreadable config, API server unreachable, a LIST refused)."
    )]
    Audit(AuditArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(long_about = "Print a shell completion script for kubepki.\n\n\
bash: `kubepki completion bash > /etc/bash_completion.d/kubepki`, or `source <(kubepki completion bash)` in ~/.bashrc.\n\
zsh: `kubepki completion zsh > \"${fpath[1]}/_kubepki\"`.\n\
fish: `kubepki completion fish > ~/.config/fish/completions/kubepki.fish`.")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff), or write one page per command into --dir.
    Man {
        /// Write kubepki.1 and kubepki-<command>.1 for every command here instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This node's name (its Node object) [default: $NODE_NAME, else the hostname]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    #[command(flatten)]
    pub dirs: DirArgs,

    /// The kubelet's certificate directory
    #[arg(long, value_name = "DIR", default_value = "/var/lib/kubelet/pki")]
    pub kubelet_pki_dir: PathBuf,

    /// Also watch this certificate, bundle or kubeconfig file (repeatable)
    #[arg(long = "watch-file", value_name = "FILE")]
    pub watch_files: Vec<PathBuf>,

    /// Also watch the *.crt, *.pem, *.cer, *.conf and *.kubeconfig files of this directory (not
    /// recursive; repeatable)
    #[arg(long = "watch-dir", value_name = "DIR")]
    pub watch_dirs: Vec<PathBuf>,

    /// Where /metrics, /healthz and /readyz are served ("0" to disable)
    #[arg(long, value_name = "ADDR", default_value = ":9794")]
    pub metrics_bind_address: String,

    /// How often Events and renewal are decided
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub check_interval: std::time::Duration,

    /// Record an Event when a certificate has less than each of these left
    #[arg(long, value_name = "DURATIONS", default_value = "720h,168h", value_delimiter = ',', value_parser = parse_duration)]
    pub event_thresholds: Vec<std::time::Duration>,

    /// Renew what expires within this (turns renewal on; the ConfigMap's renewBefore wins)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub renew_before: Option<std::time::Duration>,

    /// Pause renewal on this node
    #[arg(long)]
    pub pause_renewal: bool,

    /// Validity of renewed certificates [default: as `certs renew`, one year]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub validity: Option<std::time::Duration>,

    /// After a renewal and its restarts, keep the Lease this long before another node may renew
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub settle_time: std::time::Duration,

    /// Restart the static pods whose certificates were renewed, one at a time
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub restart_static_pods: bool,

    /// The kubelet's static pod manifest directory
    #[arg(long, value_name = "DIR", default_value = "/etc/kubernetes/manifests")]
    pub manifests_dir: PathBuf,

    /// Longest a renewal (with its restarts) may take before it counts as failed
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub renew_timeout: std::time::Duration,

    #[command(flatten)]
    pub client: KubeClientArgs,

    /// Serve metrics only: no Events, no renewal, no API server needed
    #[arg(long, conflicts_with_all = ["renew_before", "kubeconfig"])]
    pub no_api: bool,

    /// Namespace of the ConfigMap and the Lease [default: $POD_NAMESPACE, else kubepki-system]
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// The ConfigMap with renewBefore and paused
    #[arg(long, value_name = "NAME", default_value = "kubepki-agent")]
    pub config_map: String,

    /// The Lease that lets one node renew at a time
    #[arg(long, value_name = "NAME", default_value = "kubepki-renewal")]
    pub lease_name: String,

    /// How long the renewal Lease lasts without being renewed: a node waits this long before
    /// taking over from one that stopped renewing it. Longer than an API server restart, so
    /// that a node whose own restart cuts it off the API server still holds it.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub lease_duration: std::time::Duration,

    /// Also export x509_cert_expires_in_seconds and x509_cert_valid_since_seconds
    #[arg(long)]
    pub expose_relative_metrics: bool,

    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Args, Debug, Clone)]
pub struct KubeClientArgs {
    /// Kubeconfig to reach the API server [default: $KUBECONFIG, ~/.kube/config, or in-cluster]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Longest certificate lifetime a request may ask for (spec.expirationSeconds)
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration)]
    pub max_expiration: std::time::Duration,

    /// Also allow DNS SANs matching this regular expression (anchored; `{node}` stands for the
    /// node name), e.g. '{node}\.example\.com'; repeat for several
    #[arg(long = "allowed-dns-pattern", value_name = "REGEX")]
    pub allowed_dns_patterns: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub client: KubeClientArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Leave requests the rules reject pending instead of denying them
    #[arg(long)]
    pub no_deny: bool,

    /// Also sign approved requests (for clusters whose controller-manager does not)
    #[arg(long, requires_all = ["ca_cert", "ca_key"])]
    pub sign: bool,

    /// CA certificate for --sign (e.g. /etc/kubernetes/pki/ca.crt)
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// CA key for --sign (e.g. /etc/kubernetes/pki/ca.key)
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,

    /// Lifetime of certificates issued with --sign (as kube-controller-manager's
    /// --cluster-signing-duration)
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration)]
    pub signing_duration: std::time::Duration,

    /// Requests decided at once (API writes in flight); 0 means unbounded
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: u16,

    /// Where /metrics, /healthz and /readyz are served ("0" to disable)
    #[arg(long, value_name = "ADDR", default_value = ":8080")]
    pub metrics_bind_address: String,

    /// Where /healthz and /readyz are served too ("0" to disable)
    #[arg(long, value_name = "ADDR", default_value = ":8081")]
    pub health_probe_bind_address: String,

    /// Elect a leader on a Lease so that only one replica acts
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,

    /// Name of the leader election Lease
    #[arg(long, value_name = "NAME", default_value = "kubepki-controller")]
    pub leader_elect_resource_name: String,

    /// Namespace of the leader election Lease [default: $POD_NAMESPACE, else kube-system]
    #[arg(long, value_name = "NAMESPACE")]
    pub leader_elect_resource_namespace: Option<String>,

    /// How long a standby waits, after it last saw the Lease renewed, before taking it over
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: std::time::Duration,

    /// How long the leader keeps acting without a successful renewal (shorter than the lease
    /// duration, so that it has stopped before a standby can take over)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: std::time::Duration,

    /// How often the leader renews and a standby looks at the Lease
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: std::time::Duration,

    /// This replica's identity in the Lease and in Events [default: $POD_NAME, else the hostname
    /// and process ID]
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,

    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum CsrCommand {
    /// List CertificateSigningRequests with the verdict the controller's rules give and why.
    #[command(
        long_about = "List CertificateSigningRequests with the verdict the controller's rules would give and why. By default only pending requests; --all shows decided ones too. Requests for other signers are listed with the verdict \"-\" (not the controller's business)."
    )]
    List(CsrListArgs),

    /// Approve a request, refusing one the rules reject unless --force.
    Approve(CsrApproveArgs),
}

#[derive(Args, Debug)]
pub struct CsrListArgs {
    #[command(flatten)]
    pub client: KubeClientArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Also list approved and denied requests
    #[arg(long)]
    pub all: bool,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct CsrApproveArgs {
    #[command(flatten)]
    pub client: KubeClientArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// The CertificateSigningRequests to approve
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,

    /// Approve even if the rules reject the request (the reason is still printed; `kubepki
    /// controller --sign` still will not sign it)
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DirArgs {
    /// Where certificates are stored [default: /etc/kubernetes/pki, or certificatesDir from --config]
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Where kubeconfig files are stored [default: /etc/kubernetes]
    #[arg(long, value_name = "DIR")]
    pub kubeconfig_dir: Option<PathBuf>,

    /// A kubeadm configuration file (InitConfiguration and/or ClusterConfiguration)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Validity of new leaf certificates, e.g. 8760h [default: 8760h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub cert_validity: Option<std::time::Duration>,

    /// Validity of new CA certificates, e.g. 87600h [default: 87600h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ca_validity: Option<std::time::Duration>,

    /// Print what would be written; write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,
}

/// The cluster's names that the API server's certificate carries: kubeadm init's flags.
#[derive(Args, Debug, Clone, Default)]
pub struct SanArgs {
    /// A stable address for the control plane: host or host:port (a DNS name or IP)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub control_plane_endpoint: Option<String>,

    /// The Service CIDR; its first address becomes a SAN of apiserver [default: 10.96.0.0/12]
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Option<String>,

    /// The Service DNS domain [default: cluster.local]
    #[arg(long, value_name = "DOMAIN")]
    pub service_dns_domain: Option<String>,

    /// Extra SANs for the apiserver certificate (IPs or DNS names), comma-separated
    #[arg(long, value_name = "SANS", value_delimiter = ',')]
    pub apiserver_cert_extra_sans: Vec<String>,
}

/// What a node's certificates must say: kubeadm init's flags.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// This node's name: CN of the etcd certificates, a SAN of apiserver [default: hostname]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// The IP address the API server advertises [default: the address of the default route]
    #[arg(long, value_name = "IP")]
    pub apiserver_advertise_address: Option<IpAddr>,

    /// The port the API server binds to [default: 6443]
    #[arg(long, value_name = "PORT")]
    pub apiserver_bind_port: Option<u16>,

    #[command(flatten)]
    pub sans: SanArgs,

    /// Key algorithm for every new key [default: RSA-2048]
    #[arg(long, value_name = "ALG", value_parser = parse_alg)]
    pub encryption_algorithm: Option<KeyAlgorithm>,

    /// Target Kubernetes version; before v1.29 admins are in system:masters and there is no
    /// super-admin.conf [default: a current version]
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Report when each certificate expires, exactly as kubeadm prints it.
    #[command(
        long_about = "Report when each certificate expires, exactly as `kubeadm certs \
check-expiration` prints it: the leaf certificates and the client certificates embedded in \
kubeconfig files, then the CAs. A CA whose certificate is present without its key is reported \
as externally managed. Missing files are listed as !MISSING!.\n\n\
-o json and -o yaml print kubeadm's output.kubeadm.k8s.io/v1alpha3 CertificateExpirationInfo."
    )]
    CheckExpiration(CheckExpirationArgs),

    /// Renew certificates with the existing CAs, backing up the old files first.
    #[command(
        long_about = "Renew certificates as `kubeadm certs renew` does (CN, O, SANs and \
usages from the existing certificate; fresh keys; kubeconfigs get a new client certificate and \
the CA from ca.crt), safely:\n\n- the old files are copied to a backup directory first (printed; restore it with `kubepki certs \
restore DIR`);\n- new files are staged and swapped in all at once; a run killed at any point is completed or \
rolled back by the next kubepki run;\n- a lock keeps two runs apart;\n- --expiring-within renews only what expires within that window (for timers);\n- --add-sans and --config add SANs to apiserver and the etcd server/peer certificates;\n- a certificate whose CA key is absent (external CA) is reported and skipped.\n\nNAMES: all, or any of admin.conf, apiserver, apiserver-etcd-client, apiserver-kubelet-client, \
controller-manager.conf, etcd-healthcheck-client, etcd-peer, etcd-server, front-proxy-client, \
scheduler.conf, super-admin.conf, kubelet.conf (never part of `all`).\n\nAfterwards it says which control-plane components must restart; --restart-static-pods restarts \
them the way the kubeadm docs describe (manifest moved out of the manifests directory until the \
kubelet is stopping the component, which its probe ports refusing connections shows, or for \
longer than the kubelet's fileCheckFrequency when nothing answered on them, then back) and waits for each to answer the httpGet \
startup, liveness and readiness probes its manifest declares, as the kubelet sends them. SIGINT, \
SIGTERM or SIGHUP while a manifest is out puts it back, then exits with 128+n; a manifest left out \
by a killed run is put back by the next kubepki run that writes."
    )]
    Renew(RenewArgs),

    /// Put the files of a backup (made by renew, import or restore) back in place.
    #[command(
        long_about = "Put the files of a backup (made by renew, import, kubeconfig kubelet --write or restore) back in place, all at once, after backing up what they replace (<backup>.before-restore-<UTC time>, printed).\n\nOnly the certificates, keys and kubeconfigs kubepki manages in --cert-dir and --kubeconfig-dir are restored, with the modes kubepki gives them (certificates 0644, keys and kubeconfigs 0600); the backup must be of that PKI (its MANIFEST.json records which), else nothing is restored and the error names the directories to pass."
    )]
    Restore(RestoreArgs),

    /// Finish or undo a kubepki run that was interrupted (killed, power loss).
    #[command(
        long_about = "Finish or undo a kubepki run that was interrupted (killed, power loss): a transaction whose journal was committed is completed (the new files are put in place), one that was not is undone (its temporary files and half-made backup are removed), and static pod manifests held by an interrupted restart are put back.\n\nEvery kubepki command that writes does this first; this command does only this. Temporary files that no journal accounts for are reported and kept."
    )]
    Recover(RecoverArgs),

    /// Write a key and a CSR for each certificate an external CA must sign.
    #[command(
        long_about = "Write a private key and a certificate signing request for each \
certificate an external CA must sign, as `kubeadm certs generate-csr` does: \
<cert-dir>/<name>.key + <name>.csr for certificates, and a partial kubeconfig (key, no \
certificate) + <name>.csr in --kubeconfig-dir for kubeconfigs. The CSRs carry the subject and \
SANs; the CA decides usages. Give the signed certificate back as <name>.crt beside its CSR, then \
run `kubepki certs import`.\n\nNothing is overwritten. For certificates that already exist (renewal through the external CA), \
pass --csr-dir: the request copies the existing certificate's names, and `import --csr-dir` \
swaps the result in with a backup."
    )]
    GenerateCsr(GenerateCsrArgs),

    /// Check certificates returned by an external CA and install them.
    #[command(
        long_about = "Check the certificates an external CA returned for the CSRs \
written by generate-csr (<name>.crt beside <name>.csr) and install them all at once: the \
chain must lead to the CA in --cert-dir, the key must match, subject and SANs must be the \
requested ones, and the usages must suit the slot (serverAuth for apiserver, both for etcd \
server and peer, clientAuth for clients). Any failure installs nothing."
    )]
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct GenerateCsrArgs {
    /// Which certificates: `all` or names (kubeadm's, plus kubelet.conf)
    #[arg(value_name = "NAME", default_value = "all")]
    pub names: Vec<String>,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Write keys, CSRs and partial kubeconfigs here instead of the cert and kubeconfig dirs
    #[arg(long, value_name = "DIR")]
    pub csr_dir: Option<PathBuf>,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// Where generate-csr wrote the requests [default: the cert and kubeconfig dirs]
    #[arg(long, value_name = "DIR")]
    pub csr_dir: Option<PathBuf>,

    /// Where to copy files that get replaced [default: <kubeconfig-dir>/kubepki-backups/<UTC time>]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,

    /// Check only; install nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RenewArgs {
    /// What to renew: `all` or certificate names
    #[arg(value_name = "NAME", required = true, num_args = 1..)]
    pub names: Vec<String>,

    #[command(flatten)]
    pub dirs: DirArgs,

    /// Renew only certificates that expire within this window, e.g. 720h or 30d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expiring_within: Option<std::time::Duration>,

    /// Validity of the renewed certificates [default: certificateValidityPeriod from --config, else 8760h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub validity: Option<std::time::Duration>,

    /// SANs (IPs or DNS names, comma-separated) to add to apiserver, etcd-server and etcd-peer
    #[arg(long, value_name = "SANS", value_delimiter = ',')]
    pub add_sans: Vec<String>,

    /// Key algorithm for the new keys [default: encryptionAlgorithm from --config, else each certificate's current one]
    #[arg(long, value_name = "ALG", value_parser = parse_alg)]
    pub encryption_algorithm: Option<KeyAlgorithm>,

    /// Where to copy the old files [default: <kubeconfig-dir>/kubepki-backups/<UTC time>]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,

    /// Print what would be renewed; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub restart: RestartArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RestartArgs {
    /// Restart the static pods whose certificates changed, one at a time
    #[arg(long)]
    pub restart_static_pods: bool,

    /// The kubelet's static pod manifest directory
    #[arg(long, value_name = "DIR", default_value = "/etc/kubernetes/manifests")]
    pub manifests_dir: PathBuf,

    /// How often the kubelet rescans the manifests directory (its fileCheckFrequency)
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub file_check_frequency: std::time::Duration,

    /// How long to wait for a restarted component to answer its probes
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub restart_timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A backup directory (it holds MANIFEST.json)
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,

    /// The PKI to restore into: it must be the one the backup was made of
    #[command(flatten)]
    pub dirs: DirArgs,

    /// Where the current files are first backed up [default: <backup>.before-restore-<UTC time>]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,

    /// Print what would be restored; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct CheckExpirationArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Also report the kubelet's certificates in this directory (e.g. /var/lib/kubelet):
    /// pki/kubelet-client-current.pem, its serving certificate, and kubelet.conf's own
    #[arg(long, value_name = "DIR")]
    pub kubelet_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub client: KubeClientArgs,

    #[command(flatten)]
    pub dirs: DirArgs,

    /// Checks to run, comma-separated [default: all]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CHECKS")]
    pub checks: Vec<AuditCheck>,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = AuditFormat::Text)]
    pub output: AuditFormat,

    /// Exit 1 when a finding is at this severity or worse: info, warning, error, critical
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<kubepki_audit::Severity>,

    /// Objects per LIST request (a larger page means fewer requests but more memory: the audit
    /// keeps about three pages in flight)
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,

    /// Most Pods a node should run
    #[arg(long, value_name = "N", default_value_t = kubepki_audit::scale::Limits::PAGE.pods_per_node)]
    pub max_pods_per_node: u64,

    /// Most nodes a cluster should have
    #[arg(long, value_name = "N", default_value_t = kubepki_audit::scale::Limits::PAGE.nodes)]
    pub max_nodes: u64,

    /// Most Pods a cluster should have
    #[arg(long, value_name = "N", default_value_t = kubepki_audit::scale::Limits::PAGE.pods)]
    pub max_pods: u64,

    /// Most containers a cluster should have
    #[arg(long, value_name = "N", default_value_t = kubepki_audit::scale::Limits::PAGE.containers)]
    pub max_containers: u64,

    /// Warn when less than this percentage of a scale limit is left
    #[arg(long, value_name = "PERCENT", default_value_t = kubepki_audit::scale::Limits::PAGE.warn_headroom_percent, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub headroom_warn: u64,

    /// Longest validity a leaf certificate may have
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration)]
    pub max_leaf_validity: std::time::Duration,

    /// Smallest RSA key a certificate may have
    #[arg(long, value_name = "BITS", default_value_t = 2048)]
    pub min_rsa_bits: u32,

    /// Report certificates that expire within this long
    #[arg(long, value_name = "DURATION", default_value = "720h", value_parser = parse_duration)]
    pub expiring_within: std::time::Duration,

    /// This node's name, for the node checks and the SANs its certificates need [default: hostname]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// The IP address the API server advertises: with it (or --config), the pki check requires
    /// every SAN kubeadm gives this node's certificates; without, only those every node's have
    #[arg(long, value_name = "IP")]
    pub apiserver_advertise_address: Option<std::net::IpAddr>,

    #[command(flatten)]
    pub sans: SanArgs,

    /// The kubelet's directory: its config.yaml, kubeadm-flags.env and pki/ [default: /var/lib/kubelet]
    #[arg(long, value_name = "DIR")]
    pub kubelet_dir: Option<PathBuf>,

    /// The container runtime's endpoint [default: the kubelet's, else unix:///run/containerd/containerd.sock]
    #[arg(long, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    /// Read the node's /proc and /sys below this directory (for tests and chroots)
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub node_root: PathBuf,
}

/// A part of `kubepki audit`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuditCheck {
    Scale,
    Zones,
    Pss,
    Pki,
    Node,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditFormat {
    Text,
    Json,
    Sarif,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum KubeconfigCommand {
    /// Print a kubeconfig for another user, signed by the cluster CA.
    #[command(
        long_about = "Print a kubeconfig for another user, with a client certificate \
signed by the cluster CA (ca.crt/ca.key in --cert-dir), as `kubeadm kubeconfig user` does. \
The user's name is the certificate's CN and each --org is a group (O).\n\n\
The API server address comes from --server, else from --config (controlPlaneEndpoint or the \
advertise address), else from the existing admin.conf in --kubeconfig-dir."
    )]
    User(UserArgs),

    /// Rebuild a node's kubelet.conf (recovery when its client certificate expired).
    #[command(
        long_about = "Rebuild a node's kubelet.conf: the documented recovery for a kubelet \
whose client certificate expired, automated.\n\n1. On a control-plane node (it needs ca.key): `kubepki kubeconfig kubelet --node-name N > \
kubelet.conf` makes a kubeconfig with a fresh client certificate for system:node:N (group \
system:nodes). Copy it to the node as /etc/kubernetes/kubelet.conf and restart the kubelet.\n2. Once the kubelet has rotated its certificate into /var/lib/kubelet/pki/kubelet-client-current.pem, \
run on the node `kubepki kubeconfig kubelet --node-name N --rotated --write` to point kubelet.conf \
at that file again, then restart the kubelet.\n\n--write installs the result as <kubeconfig-dir>/kubelet.conf (backing up the old one) instead of \
printing it."
    )]
    Kubelet(KubeletArgs),
}

#[derive(Args, Debug)]
pub struct KubeletArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// The node's name (the certificate is for system:node:<NAME>)
    #[arg(long, value_name = "NAME")]
    pub node_name: String,

    /// The API server URL [default: the server in the existing kubelet.conf or admin.conf]
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// How long the new client certificate is valid
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration)]
    pub validity_period: std::time::Duration,

    /// Key algorithm [default: encryptionAlgorithm from --config, else RSA-2048]
    #[arg(long, value_name = "ALG", value_parser = parse_alg)]
    pub encryption_algorithm: Option<KeyAlgorithm>,

    /// Point at the kubelet's rotated certificate file instead of embedding a new one
    #[arg(long)]
    pub rotated: bool,

    /// The kubelet's directory (for --rotated)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,

    /// Install as <kubeconfig-dir>/kubelet.conf (with a backup) instead of printing
    #[arg(long)]
    pub write: bool,

    /// Where to back up the replaced kubelet.conf [default: <kubeconfig-dir>/kubepki-backups/<UTC time>]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// The user name (certificate CN)
    #[arg(long, value_name = "NAME")]
    pub client_name: String,

    /// A group (certificate O); repeat for several
    #[arg(long = "org", value_name = "ORG")]
    pub orgs: Vec<String>,

    /// How long the client certificate is valid
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration)]
    pub validity_period: std::time::Duration,

    /// The API server URL, e.g. https://10.0.0.1:6443
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// Key algorithm for the user's key [default: encryptionAlgorithm from --config, else RSA-2048]
    #[arg(long, value_name = "ALG", value_parser = parse_alg)]
    pub encryption_algorithm: Option<KeyAlgorithm>,
}

fn parse_duration(
    s: &str,
) -> Result<std::time::Duration, kubepki_pki::format::duration::DurationError> {
    kubepki_pki::format::duration::parse(s)
}

fn parse_alg(s: &str) -> Result<KeyAlgorithm, kubepki_pki::error::ParamError> {
    s.parse()
}

fn parse_now(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("invalid RFC 3339 time {s:?}: {e}"))
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Rotate CAs and the service-account key without downtime, in overlap phases.
    #[command(subcommand)]
    #[command(
        long_about = "Rotate ca, front-proxy-ca, etcd-ca and the service-account key \
pair (sa) without a moment where a component trusts neither side, in three steps run on every \
control-plane node in turn, restarting what each step lists before the next node:\n\n\
  trust    the new CA is trusted beside the old (ca.crt holds old+new; kubeconfigs embed both; \
sa.pub holds both keys); the old CA still signs.\n\
  switch   the new CA signs: ca.key is the new key, every leaf and kubeconfig client \
certificate is re-issued by it (attributes kept); the old CA is still trusted.\n\
  finish   the old CA is dropped everywhere. Refused while a certificate here (or under \
--kubelet-dir) is still signed by it, unless --force.\n\n\
rollback steps back one phase (switch -> trust -> none); the old CA stays trusted until finish, \
so stepping back is safe. status shows where each rotation is.\n\n\
While ca rotates, ca.crt holds two certificates, which kube-controller-manager refuses as its \
signing certificate; it signs from ca-signer.crt/ca-signer.key instead, and kubepki points the \
two --cluster-signing-* flags of its manifest there at trust and back at finish or rollback.\n\n\
The first node's trust step makes the new CAs; --export writes them encrypted to a file and \
prints the key once; the other control-plane nodes run trust with --import and \
--certificate-key. Worker nodes run trust, switch and finish with --ca-bundle (the control \
plane's current ca.crt): kubepki sets their ca.crt and kubelet.conf's CA and says when the kubelet \
must restart.\n\n\
Every step is one journaled transaction with a backup: killed, the next kubepki command that \
writes finishes or undoes it."
    )]
    Rotate(RotateCommand),
}

#[derive(Subcommand, Debug)]
pub enum RotateCommand {
    /// Trust a new CA beside the old one (the first step).
    Trust(RotateArgs),
    /// Sign with the new CA and re-issue everything it signs (the second step).
    Switch(RotateArgs),
    /// Drop the old CA (the last step).
    Finish(RotateArgs),
    /// Step back one phase: switch -> trust, trust -> none.
    Rollback(RotateArgs),
    /// Where each rotation is on this node, and what still depends on the old CA.
    Status(RotateStatusArgs),
    /// After switch: make the kubelet request new certificates from the new CA through its own
    /// CSRs.
    #[command(
        long_about = "After switch (the controller-manager signs with the new CA), make \
this node's kubelet request new client and serving certificates through its own \
CertificateSigningRequests: kubelet.conf gets an embedded client certificate from the new CA \
(what the kubelet authenticates its request with), and the kubelet's current certificates \
(pki/kubelet-client-current.pem, pki/kubelet-server-current.pem) move into the backup. Restart \
the kubelet: it then requests a client certificate at once (approved by the controller-manager \
as a node's own client certificate) and a serving certificate (approved by `kubepki controller` \
with serverTLSBootstrap). Once it has them, `kubepki kubeconfig kubelet --node-name <name> --rotated \
--write` points kubelet.conf at its rotating files again."
    )]
    Kubelet(RotateKubeletArgs),
    /// After switch of sa: re-issue the legacy service-account token Secrets signed by the old
    /// key, in place.
    #[command(
        long_about = "After switch of sa (the controller-manager signs tokens with the \
new sa.key: restart it first), empty the token of every service-account token Secret whose \
token the old key signed; the controller-manager's tokens controller puts a new token, signed by \
the new key, into the same Secret. This command waits until it has. Pods receive the new token \
through their Secret volume at the kubelet's next sync (about a minute); until then the API \
server refuses their old token (it compares a legacy token with the Secret's), and clients that \
read their token only at start must restart. finish then drops the old key; with --kubeconfig it \
refuses while a token Secret signed by the old key remains."
    )]
    Tokens(RotateTokensArgs),
}

#[derive(Args, Debug)]
pub struct RotateTokensArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// Kubeconfig to reach the API server
    #[arg(long, value_name = "FILE", required = true)]
    pub kubeconfig: PathBuf,

    /// How long to wait for the new tokens
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,

    /// List the Secrets that would be re-issued; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RotateKubeletArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// The kubelet's directory
    #[arg(long, value_name = "DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// What to rotate: `all`, or any of ca, front-proxy-ca, etcd-ca, sa
    #[arg(value_name = "TARGET", required = true, num_args = 1..)]
    pub targets: Vec<String>,

    #[command(flatten)]
    pub dirs: DirArgs,

    /// trust: the new CA's certificate, instead of generating one (one target only)
    #[arg(long, value_name = "FILE")]
    pub new_ca_cert: Option<PathBuf>,

    /// trust: the new CA's key (without it, the new CA is external)
    #[arg(long, value_name = "FILE", requires = "new_ca_cert")]
    pub new_ca_key: Option<PathBuf>,

    /// trust: also write the new CAs, encrypted, to this file for the other control-plane
    /// nodes; the key is printed once
    #[arg(long, value_name = "FILE", conflicts_with = "import")]
    pub export: Option<PathBuf>,

    /// trust: take the new CAs from a file another node's --export wrote
    #[arg(
        long,
        value_name = "FILE",
        requires = "certificate_key",
        conflicts_with = "new_ca_cert"
    )]
    pub import: Option<PathBuf>,

    /// The key --export printed (64 hexadecimal digits)
    #[arg(
        long,
        value_name = "HEX",
        env = "KUBEPKI_CERTIFICATE_KEY",
        hide_env_values = true
    )]
    pub certificate_key: Option<String>,

    /// A worker node: set ca.crt and kubelet.conf's CA to this bundle (the control plane's
    /// current ca.crt)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["new_ca_cert", "import", "export"])]
    pub ca_bundle: Option<PathBuf>,

    /// Validity of certificates re-issued at switch [default: certificateValidityPeriod from --config, else 8760h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub validity: Option<std::time::Duration>,

    /// Validity of a generated CA [default: caCertificateValidityPeriod from --config, else 87600h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ca_validity: Option<std::time::Duration>,

    /// finish: drop the old CA even though something here is still signed by it; any step:
    /// go on although another node has not finished the previous step
    #[arg(long)]
    pub force: bool,

    /// Also act through the API server: check and record every control-plane node's phase
    /// (ConfigMap kube-system/kubepki-ca-rotation), keep kube-public/cluster-info trusting
    /// what ca.crt trusts, and name webhooks and APIServices whose caBundle embeds the old CA
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// This node's name in that record [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// The kubelet's directory: finish checks that its certificates are no longer signed
    /// by the old CA
    #[arg(long, value_name = "DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,

    /// Where to copy the files the step replaces [default: <kubeconfig-dir>/kubepki-backups/<UTC time>]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Wait for another kubepki run to finish instead of failing
    #[arg(long)]
    pub wait: bool,

    /// Print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub restart: RestartArgs,
}

#[derive(Args, Debug)]
pub struct RotateStatusArgs {
    #[command(flatten)]
    pub dirs: DirArgs,

    /// The kubelet's directory, whose certificates are checked too
    #[arg(long, value_name = "DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,

    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}
