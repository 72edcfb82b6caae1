#!/usr/bin/env bash
# up.sh: a real, throwaway single-node Kubernetes v1.20.2 cluster: kubeadm init, a real kubelet
# (supervised by kubelet-supervise.sh: there is no systemd), containerd + runc, the control plane
# as static pods, a bridge CNI; no registry (images.sh builds every image here). Everything runs
# inside the network namespace $KH_NETNS (default kubepki-harness), which holds the node address
# 10.251.0.1 and every port the cluster listens on.
#
#   sudo harness/up.sh        # about 40 s warm, 2 min cold (plus building kubelet once)
#   sudo harness/exec.sh kubectl get nodes
#   sudo harness/down.sh      # leaves nothing behind; --purge drops the image cache too
#
# Idempotent: when the cluster is already up it says so and exits 0; leftovers of a killed run are
# cleaned (down.sh) first.
#
# Knobs (environment):
#   KH_KUBEPKI=path/to/kubepki  run `kubepki init --config <the kubeadm config>` before `kubeadm init`,
#                               so that kubeadm uses kubepki's PKI (sha256 of every file kubepki
#                               wrote is kept in $KH_RUN/kubepki-init.sha256)
#   KH_SIGNING_DURATION=10m     controller-manager --cluster-signing-duration (default one year)
#   KH_SERVER_TLS_BOOTSTRAP=true|false  the kubelet's serving certificate from a CSR (default true)
#   KH_APPROVE_SERVING=1        approve the first serving CSR with kubectl (else: the tool under test)
#   KH_KUBE_PROXY=1             run kube-proxy too (Service IPs work; needs kube-proxy built)
#   KH_KUBELET_SYNC_FREQUENCY=10s, KH_KUBEADM_CONFIG=file, KH_TIMEOUT=900 (seconds)
#   and the names, paths and addresses in lib.sh.
set -euo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export KH_HOME=$H
. "$H/lib.sh"
T0=$(date +%s)
step() { kh_log "[$(( $(date +%s) - T0 ))s] $*"; }
deadline=$(( T0 + ${KH_TIMEOUT:-900} ))  # set again after any build of the binaries
until_ok() { # until_ok WHAT CMD...: retry CMD every second until it succeeds or the deadline passes
  local what=$1; shift
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || { kh_log "timed out waiting for $what"; diagnose; exit 1; }
    sleep 1
  done
}
diagnose() {
  kh_log "--- last kubelet errors ($KH_RUN/kubelet.log):"; grep -E '^[EF][0-9]{4}' "$KH_RUN/kubelet.log" 2>/dev/null | tail -n 15 | cut -c1-400 >&2 || true
  kh_log "--- last containerd errors ($KH_RUN/containerd.log):"; grep 'level=error' "$KH_RUN/containerd.log" 2>/dev/null | tail -n 8 | cut -c1-400 >&2 || true
  kh_log "--- containers:"; ctr containers ls 2>&1 | tail -n +2 >&2 || true
  kh_log "run $H/down.sh to clean up"
}

# Exit codes: 0 up (or already up), 1 failed (down.sh cleans what it left), 3 refused before
# anything was changed (another cluster on this machine, or another harness run).
[[ $(id -u) == 0 ]] || { echo "up.sh: must run as root" >&2; exit 3; }
umask 022
mkdir -p "$KH_WORK" && chmod 755 "$KH_WORK"
kh_lock || exit 3
if [[ -e $KH_RUN/up.state ]]; then
  if grep -q '^up ' "$KH_RUN/up.state" && kh_alive "$KH_RUN/containerd.pid" && kh_alive "$KH_RUN/kubelet-supervisor.pid"; then
    kh_log "already up ($KH_RUN/up.state)"; exit 0
  fi
  kh_log "leftovers of an earlier run (killed, or it failed): cleaning them with down.sh"
  "$H/down.sh" || exit 1
fi
refuse() { echo "up.sh: $*; nothing was changed" >&2; exit 3; }
for f in /etc/kubernetes/manifests /var/lib/kubelet/config.yaml /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/kubepods; do
  [[ -e $f ]] && refuse "$f exists: another kubelet or cluster runs on this machine"
done
[[ -e $KH_NS ]] && refuse "network namespace $KH_NETNS exists (not this harness's: it has no record of it)"
for p in "${KH_MOVED_PATHS[@]}"; do
  [[ -e $p.kubepki-harness-saved ]] && refuse "$p.kubepki-harness-saved exists: a copy of $p from an earlier run; put it back or remove it"
done

# ---- 0. packages and binaries ---------------------------------------------------------------
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v etcd >/dev/null || need+=(etcd-server etcd-client)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v gcc >/dev/null || [[ -x $KH_WORK/build/pause ]] || need+=(gcc libc6-dev)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v nsenter >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
[[ ${KH_KUBE_PROXY:-0} == 1 ]] && ! command -v iptables >/dev/null && need+=(iptables)
if (( ${#need[@]} )); then
  step "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
missing=
extra="kubeadm kubelet kube-scheduler kubectl"
if [[ ${KH_KUBE_PROXY:-0} == 1 ]]; then extra+=" kube-proxy"; fi
for b in kube-apiserver kube-controller-manager $extra; do [[ -x $KH_K8S_BIN/$b ]] || missing+=" $b"; done
if [[ -n $missing ]]; then
  step "building Kubernetes binaries:$missing (the kubelet takes 10-25 min once)"
  K8S_TEST_EXTRA="$extra" "$KH_K8S_TOOL" >&2
  deadline=$(( $(date +%s) + ${KH_TIMEOUT:-900} ))
fi
export PATH=$KH_K8S_BIN:$PATH
KUBECTL=$(kh_kubectl)

mkdir -p "$KH_RUN" "$KH_STATE/containerd" "$KH_STATE/cni/net.d" "$KH_STATE/cni/networks" "$KH_VAR"
# What down.sh needs to know: the settings, what existed before, the original sysctls.
{
  for v in KH_K8S_BIN KH_NETNS KH_NODE_IP KH_IFACE KH_POD_SUBNET KH_CNI_BRIDGE KH_NODE_NAME KH_VAR KH_STATE; do printf '%s=%q\n' "$v" "${!v}"; done
} >"$KH_RUN/settings.env"
[[ -e $KH_RUN/up.state ]] && { echo "up.sh: $KH_RUN/up.state is still there after down.sh" >&2; exit 1; }
: >"$KH_RUN/up.state"
for s in "${KH_SYSCTLS[@]}"; do
  v=$(cat "/proc/sys/$s") || { echo "up.sh: cannot read /proc/sys/$s" >&2; exit 1; }
  echo "sysctl $s=$v" >>"$KH_RUN/up.state"
done
for p in "${KH_MOVED_PATHS[@]}" "${KH_SHARED_PATHS[@]}"; do
  if [[ ! -e $p ]]; then
    echo "created $p" >>"$KH_RUN/up.state"
  elif [[ " ${KH_MOVED_PATHS[*]} " == *" $p "* ]]; then
    # A user's files (an earlier cluster, a PKI): renamed aside in the same parent (one atomic
    # rename), put back by down.sh. Recorded first: a crash in between leaves a record of a
    # copy that does not exist, which down.sh reads as "nothing was moved, touch nothing".
    echo "saved $p $p.kubepki-harness-saved" >>"$KH_RUN/up.state"
    mv -T "$p" "$p.kubepki-harness-saved"
    kh_log "moved $p aside to $p.kubepki-harness-saved (down.sh puts it back)"
  fi
done

# ---- 1. network namespace and node address ---------------------------------------------------
step "network namespace $KH_NETNS with $KH_NODE_IP/32 on $KH_IFACE"
ip netns add "$KH_NETNS"
echo "netns $KH_NETNS" >>"$KH_RUN/up.state"
ip -n "$KH_NETNS" link set lo up
# The kernel here has no dummy driver ("Unknown device type"): the address lives on an empty bridge.
ip -n "$KH_NETNS" link add "$KH_IFACE" type bridge
ip -n "$KH_NETNS" addr add "$KH_NODE_IP/32" dev "$KH_IFACE"
ip -n "$KH_NETNS" link set "$KH_IFACE" up
# A route for the Service CIDR, as a real node's default route gives: host-network pods (the
# kubepki agent) reach the API server at 10.96.0.1, which kube-proxy rewrites; without a route
# the connect fails before any rewriting.
ip -n "$KH_NETNS" route add 10.96.0.0/12 dev "$KH_IFACE"

# ---- 2. containerd ---------------------------------------------------------------------------
step "containerd"
cat >"$KH_RUN/containerd.toml" <<TOML
version = 2
root = "$KH_CTRD_ROOT"
state = "$KH_STATE/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$KH_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$KH_CTRD_ROOT/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  # Root here lacks CAP_SYS_RESOURCE, so runc cannot set the negative oom_score_adj CRI asks for
  # (-998, -997): without this every RunPodSandbox fails ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$KH_STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$KH_CNI_CONF_DIR"
TOML
# In the namespace (its shims, the pods' host network and the CNI bridge follow it), without the
# lock's file descriptor (9; its shims and containers would inherit it and hold the lock); setsid, so
# the caller's process-group signals do not reach it; `echo $$; exec` records the real PID. A
# plain command, not the kh_in function: a backgrounded function keeps a copy of this shell (and
# the caller's stdout) alive as long as the daemon runs.
nsenter --net="$KH_NS" -- setsid bash -c 'echo $$ >"$0/containerd.pid"; exec containerd --config "$0/containerd.toml" >>"$0/containerd.log" 2>&1' "$KH_RUN" </dev/null >/dev/null 2>&1 9>&- &
until_ok "containerd" ctr version

# ---- 3. images --------------------------------------------------------------------------------
step "images"
"$H/images.sh"

# ---- 4. CNI -----------------------------------------------------------------------------------
cat >"$KH_CNI_CONF_DIR/10-kubepki.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "kubepki",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$KH_CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$KH_STATE/cni/networks",
        "ranges": [[{"subnet": "$KH_POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON

# ---- 5. kubeadm config ------------------------------------------------------------------------
CFG=${KH_KUBEADM_CONFIG:-$KH_RUN/kubeadm.yaml}
if [[ -z ${KH_KUBEADM_CONFIG:-} ]]; then
  cat >"$CFG" <<YAML
apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $KH_NODE_IP
  bindPort: 6443
nodeRegistration:
  name: $KH_NODE_NAME
  criSocket: $KH_SOCK
  kubeletExtraArgs:
    node-ip: $KH_NODE_IP
  taints: []
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
clusterName: kubernetes
controlPlaneEndpoint: "$KH_NODE_IP:6443"
imageRepository: k8s.gcr.io
etcd:
  local:
    dataDir: $KH_ETCD_DIR
networking:
  serviceSubnet: 10.96.0.0/12
  dnsDomain: cluster.local
apiServer:
  extraArgs:
    bind-address: $KH_NODE_IP
    # logs, exec and port-forward verify the kubelet's serving certificate against the cluster CA
    kubelet-certificate-authority: /etc/kubernetes/pki/ca.crt
$( if [[ -n ${KH_SIGNING_DURATION:-} ]]; then printf 'controllerManager:\n  extraArgs:\n    cluster-signing-duration: %s\n' "$KH_SIGNING_DURATION"; else echo 'controllerManager: {}'; fi )
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
address: $KH_NODE_IP
readOnlyPort: 0
rotateCertificates: true
serverTLSBootstrap: ${KH_SERVER_TLS_BOOTSTRAP:-true}
makeIPTablesUtilChains: false
failSwapOn: false
# default 1m: static pods' mirror pods appear ~75 s after the node registers, and their Ready lags
# a kubelet restart by 1-2 min; 10s shortens both.
syncFrequency: ${KH_KUBELET_SYNC_FREQUENCY:-10s}
volumePluginDir: /var/lib/kubelet/volume-plugins
# The node's disk is the host's, shared with cargo's target/; on a fuller machine (CI) the default
# thresholds (nodefs.available<10%, imagefs.available<15%, image GC at 85%) set DiskPressure, taint
# the node NoSchedule and delete the locally built images, which no registry can give back. "0%"
# switches a signal off; with a map given, the kubelet uses only its entries.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
YAML
fi

# ---- 6. kubepki's PKI first (optional), then the kubelet (supervised) and kubeadm init -------
if [[ -n ${KH_KUBEPKI:-} ]]; then
  step "kubepki init"
  kh_in "$KH_KUBEPKI" init --config "$CFG" >"$KH_RUN/kubepki-init.log" 2>&1 || {
    kh_log "kubepki init failed; $KH_RUN/kubepki-init.log:"; tail -n 25 "$KH_RUN/kubepki-init.log" >&2; exit 1; }
  (cd /etc/kubernetes && find . -type f | sort | xargs sha256sum) >"$KH_RUN/kubepki-init.sha256"
fi
step "kubelet supervisor"
KH_RUN=$KH_RUN KH_KUBELET=$KH_K8S_BIN/kubelet nsenter --net="$KH_NS" -- setsid "$H/kubelet-supervise.sh" </dev/null >/dev/null 2>&1 9>&- &
until_ok "kubelet supervisor" test -s "$KH_RUN/kubelet-supervisor.pid"
step "kubeadm init"
# preflight is skipped: it needs crictl (not packaged in Debian 12) and would try to pull images.
if ! (cd / && kh_in timeout 600 kubeadm init --config "$CFG" --skip-phases=preflight,addon/coredns,addon/kube-proxy) >"$KH_RUN/kubeadm-init.log" 2>&1; then
  kh_log "kubeadm init failed; $KH_RUN/kubeadm-init.log:"; tail -n 25 "$KH_RUN/kubeadm-init.log" >&2; diagnose; exit 1
fi

# ---- 7. wait until usable ---------------------------------------------------------------------
export KUBECONFIG=/etc/kubernetes/admin.conf
k() { kh_in "$KUBECTL" --request-timeout=5s --cache-dir="$KH_STATE/kube-cache" "$@"; }
step "waiting for node $KH_NODE_NAME Ready and the 4 control-plane (mirror) pods Ready"
until_ok "node Ready" k wait --for=condition=Ready "node/$KH_NODE_NAME" --timeout=5s
cp_ready() { [[ $(k -n kube-system get pods -l tier=control-plane -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True) -ge 4 ]]; }
until_ok "4 control-plane pods Ready" cp_ready
if [[ ${KH_APPROVE_SERVING:-0} == 1 && ${KH_SERVER_TLS_BOOTSTRAP:-true} == true ]]; then
  serving_csrs() { k get csr -o jsonpath='{range .items[?(@.spec.signerName=="kubernetes.io/kubelet-serving")]}{.metadata.name}{"\n"}{end}'; }
  have_serving_csr() { [[ -n $(serving_csrs) ]]; }
  until_ok "kubelet-serving CSR" have_serving_csr
  serving_csrs | xargs -r nsenter --net="$KH_NS" -- "$KUBECTL" --cache-dir="$KH_STATE/kube-cache" certificate approve >&2
  until_ok "kubelet serving certificate" test -e /var/lib/kubelet/pki/kubelet-server-current.pem
fi

# ---- 8. optional: kube-proxy (iptables mode, inside the namespace) ---------------------------
if [[ ${KH_KUBE_PROXY:-0} == 1 ]]; then
  step "kube-proxy"
  cat >"$KH_RUN/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: /etc/kubernetes/admin.conf
mode: iptables
bindAddress: $KH_NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $KH_POD_SUBNET
hostnameOverride: $KH_NODE_NAME
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  nsenter --net="$KH_NS" -- setsid bash -c 'echo $$ >"$0/kube-proxy.pid"; exec "$1/kube-proxy" --config "$0/kube-proxy.yaml" >>"$0/kube-proxy.log" 2>&1' "$KH_RUN" "$KH_K8S_BIN" </dev/null >/dev/null 2>&1 9>&- &
  svc_rules() { kh_in iptables-save -t nat | grep -q -- '-d 10.96.0.1/32 .*--dport 443'; }
  until_ok "kube-proxy rules for 10.96.0.1:443" svc_rules
fi

cat >"$KH_RUN/env.sh" <<ENV
export KUBECONFIG=/etc/kubernetes/admin.conf
export PATH=$KH_K8S_BIN:\$PATH
export CONTAINERD_ADDRESS=$KH_SOCK CONTAINERD_NAMESPACE=k8s.io
export KH_RUN=$KH_RUN KH_NETNS=$KH_NETNS KUBECTL=$KUBECTL
ENV
echo "up $(date -u +%FT%TZ) in $(( $(date +%s) - T0 ))s" >>"$KH_RUN/up.state"
step "cluster up: sudo $H/exec.sh kubectl get nodes"
