# shellcheck shell=bash
# Settings shared by up.sh, down.sh and the helpers (source it). Every value can be overridden from
# the environment; down.sh must see what up.sh saw, so up.sh records them in
# $KH_RUN/settings.env, which is read first here.
KH_HOME=${KH_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}  # the scripts (may be read-only)
# Everything the harness writes itself. Root's own directory, not /tmp: it holds the settings
# down.sh acts on, and whoever could write there could make root delete anything.
KH_WORK=${KH_WORK:-/var/lib/kubepki-harness}
KH_RUN=${KH_RUN:-$KH_WORK/run}                               # logs, pid files, generated configs
KH_LOCK=${KH_LOCK:-/run/kubepki-harness.lock}                # up.sh and down.sh never run at once
if [[ -e $KH_WORK ]]; then
  if [[ -L $KH_WORK || $(stat -c %u "$KH_WORK") != 0 || $(( 0$(stat -c %a "$KH_WORK") & 022 )) != 0 ]]; then
    echo "kubepki-harness: $KH_WORK must be a directory owned by root and writable by root only" >&2
    exit 1
  fi
fi
[[ -f $KH_RUN/settings.env ]] && . "$KH_RUN/settings.env"
KH_K8S_BIN=${KH_K8S_BIN:-/var/cache/kubepki-k8s/v1.20.2/bin} # kubeadm kubelet kube-* (static, v1.20.2)
KH_K8S_TOOL=${KH_K8S_TOOL:-$KH_HOME/../../shared/tools/k8s-test-binaries}
# The network namespace every harness process runs in: the node address, the CNI bridge, the
# control plane's ports and the pods' host network all live there, so nothing but loopback and
# this namespace is touched, and fixed ports (6443, 2379, 10250, ...) never collide with the host.
KH_NETNS=${KH_NETNS:-kubepki-harness}
KH_NS=/run/netns/$KH_NETNS
KH_NODE_IP=${KH_NODE_IP:-10.251.0.1}                         # lives on $KH_IFACE, inside $KH_NETNS
KH_IFACE=${KH_IFACE:-kp0}                                    # an empty bridge (this kernel has no dummy driver)
KH_POD_SUBNET=${KH_POD_SUBNET:-10.252.0.0/24}                # CNI bridge network for non-hostNetwork pods
KH_CNI_BRIDGE=${KH_CNI_BRIDGE:-kp-cni0}
KH_NODE_NAME=${KH_NODE_NAME:-kubepki-node}
KH_VAR=${KH_VAR:-$KH_WORK/var}       # containerd root (image cache, kept by down.sh unless --purge), etcd data
KH_STATE=${KH_STATE:-$KH_WORK/state} # containerd state, runc root, pod netns, CNI conf + IPAM (removed by down.sh)
KH_CTRD_ROOT=$KH_VAR/containerd
KH_ETCD_DIR=$KH_VAR/etcd
KH_SOCK=$KH_STATE/containerd/containerd.sock
KH_CNI_CONF_DIR=$KH_STATE/cni/net.d
export CONTAINERD_ADDRESS=$KH_SOCK CONTAINERD_NAMESPACE=k8s.io  # so plain `ctr ...` talks to the harness containerd
# Host directories the cluster writes. up.sh renames each that exists to <path>.kubepki-harness-saved
# (same parent, so one atomic rename) and down.sh renames it back; the cluster gets them empty.
KH_MOVED_PATHS=(/etc/kubernetes /var/lib/kubelet /var/log/pods /var/log/containers /usr/libexec/kubernetes /run/kubernetes)
# Directories other runtimes share (podman's CNI state, a host containerd's shim sockets): never
# moved; down.sh removes only the harness's own entries, and the directory if it created it and
# it is empty then.
KH_SHARED_PATHS=(/var/lib/cni /run/containerd)
# Global sysctls the kubelet changes (kernel tunables), as /proc/sys paths; down.sh restores
# them. Network sysctls (ip_forward, route_localnet) belong to $KH_NETNS and go with it.
KH_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

kh_log() { printf '%s kubepki-harness: %s\n' "$(date -u +%T)" "$*" >&2; }
# kh_in CMD...: runs CMD in the harness's network namespace (only the network: files and mounts
# are the host's, which the kubelet and containerd must share).
kh_in() { nsenter --net="$KH_NS" -- "$@"; }
# kh_alive PIDFILE: the process named in PIDFILE runs and is the harness's own: its command line
# names the harness's own config or script, so a stale PID file never makes anyone signal a
# recycled PID or a host daemon of the same name.
kh_alive() {
  local p mark
  case ${1##*/} in
    containerd.pid) mark="--config $KH_RUN/containerd.toml" ;;
    kube-proxy.pid) mark="--config $KH_RUN/kube-proxy.yaml" ;;
    kubelet-supervisor.pid) mark="kubelet-supervise.sh" ;;
    kubelet.pid) mark="--config=/var/lib/kubelet/config.yaml" ;;
    *) return 1 ;;
  esac
  [[ -f $1 ]] && p=$(cat "$1" 2>/dev/null) && [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null || return 1
  { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- "$mark"
}
# kh_lock: holds $KH_LOCK for the rest of this script (up.sh and down.sh; down.sh called by up.sh
# inherits it). Refuses at once when another run holds it.
kh_lock() {
  [[ -n ${KH_LOCK_HELD:-} ]] && return 0
  exec 9>"$KH_LOCK"
  flock -n 9 || { echo "kubepki-harness: another up.sh or down.sh is running (lock $KH_LOCK)" >&2; return 1; }
  export KH_LOCK_HELD=1
}
# The kubectl to use: v1.20.2 when it was built; else the oldest versioned kubectl beside the
# Cloud SDK's dispatcher (closest to v1.20; the dispatcher itself asks the server for its version
# before every call); else whatever `kubectl` is.
kh_kubectl() {
  local d v
  if [[ -x $KH_K8S_BIN/kubectl ]]; then echo "$KH_K8S_BIN/kubectl"; return; fi
  d=$(dirname "$(readlink -f "$(command -v kubectl)")")
  v=$(ls "$d" 2>/dev/null | sed -n 's/^kubectl\.1\.\([0-9]*\)$/\1/p' | sort -n | head -n1)
  if [[ -n $v ]]; then echo "$d/kubectl.1.$v"; else command -v kubectl; fi
}
