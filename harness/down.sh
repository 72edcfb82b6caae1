#!/usr/bin/env bash
# down.sh [--purge]: tears down what up.sh started, so that up.sh can run again.
# Stops the kubelet (supervisor), kills and removes every container of the harness containerd,
# stops containerd (each by its recorded PID), unmounts, kubeadm reset, deletes the network
# namespace (with the node address and the CNI bridge in it), restores the sysctls the kubelet
# changed, removes the kubelet's cgroups, and puts back what up.sh moved aside.
# Keeps the containerd image store ($KH_VAR/containerd) for a fast next up.sh; --purge removes it
# and the built image archives too. Exit status 0 only when nothing is left behind.
set -uo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export KH_HOME=$H
. "$H/lib.sh"
export PATH=$KH_K8S_BIN:$PATH
PURGE=0; [[ ${1:-} == --purge ]] && PURGE=1
T0=$(date +%s)
step() { kh_log "[down $(( $(date +%s) - T0 ))s] $*"; }
stop_pid() { # stop_pid PIDFILE NAME [TERM-WAIT-SECONDS]
  local f=$1 n=$2 w=${3:-30} p i
  kh_alive "$f" || { rm -f "$f"; return 0; }
  p=$(cat "$f"); kill -TERM "$p" 2>/dev/null
  for ((i = 0; i < w * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then kh_log "$n ($p) ignored TERM, killing"; kill -KILL "$p" 2>/dev/null; sleep 0.5; fi
  rm -f "$f"
}
mounts_under() { awk -v b="$1" '$5 == b || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r; }
# PIDs of the shims of *this* containerd (their command line names its socket) and of processes
# left in the kubelet's cgroups: nothing else is ever signalled.
harness_pids() {
  local d
  for d in /proc/[0-9]*; do
    { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -q -- "containerd-shim.* -address $KH_SOCK\b" && echo "${d#/proc/}"
  done
  find /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null
}

# 1. kubelet: first, so that it does not restart what we stop
step "stopping kubelet"
stop_pid "$KH_RUN/kubelet-supervisor.pid" kubelet-supervise.sh
stop_pid "$KH_RUN/kubelet.pid" kubelet
rm -f "$KH_RUN/kubelet.hold"

stop_pid "$KH_RUN/kube-proxy.pid" kube-proxy

# 2. containers (through containerd, so the shims clean up), then containerd
remove_containers() {
  local ids id
  ids=$(ctr tasks ls -q 2>/dev/null)
  step "killing $(echo $ids | wc -w) container tasks, removing $(ctr containers ls -q 2>/dev/null | wc -l) containers"
  for id in $ids; do ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
  for _ in $(seq 1 100); do ctr tasks ls 2>/dev/null | grep -q RUNNING || break; sleep 0.2; done
  for id in $ids; do ctr tasks rm -f "$id" >/dev/null 2>&1; done
  for id in $(ctr containers ls -q 2>/dev/null); do ctr containers rm "$id" >/dev/null 2>&1; done
}
cleaned=0
if kh_alive "$KH_RUN/containerd.pid"; then
  remove_containers; cleaned=1
  step "stopping containerd"
  stop_pid "$KH_RUN/containerd.pid" containerd
fi
left=$(harness_pids | sort -u)
if [[ -n $left ]]; then step "killing leftover harness processes: $(echo $left)"; kill -KILL $left 2>/dev/null; sleep 1; fi
# containerd was gone (killed test run, reboot) but its metadata may still list containers: start
# it once more, only to delete them, so that the next cluster does not inherit dead pods.
if (( !cleaned )) && [[ -f $KH_RUN/containerd.toml && -e $KH_CTRD_ROOT/io.containerd.metadata.v1.bolt/meta.db ]]; then
  step "starting containerd once more to delete the containers it still lists"
  mkdir -p "$KH_STATE/containerd"
  setsid bash -c 'echo $$ >"$0/containerd.pid"; exec containerd --config "$0/containerd.toml" >>"$0/containerd.log" 2>&1' "$KH_RUN" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  if [[ -n $(ctr containers ls -q 2>/dev/null) ]]; then remove_containers; fi
  stop_pid "$KH_RUN/containerd.pid" containerd
  left=$(harness_pids | sort -u)
  if [[ -n $left ]]; then kill -KILL $left 2>/dev/null; sleep 1; fi
fi

# 3. unmount (pod volumes, rootfs overlays, shm, netns)
step "unmounting"
for base in /var/lib/kubelet "$KH_STATE" "$KH_VAR"; do
  for m in $(mounts_under "$base"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || kh_log "cannot unmount $m"; done
done

# 4. kubeadm reset: /etc/kubernetes/{manifests,pki,*.conf}, /var/lib/kubelet, the etcd data dir.
# (Its "stop the kubelet" and "remove containers with crictl" steps only warn here: done above.)
if [[ -e /etc/kubernetes/manifests || -e /etc/kubernetes/admin.conf ]] && [[ -x $KH_K8S_BIN/kubeadm ]]; then
  step "kubeadm reset"
  if [[ -e $KH_NS ]]; then in_ns=(nsenter --net="$KH_NS" --); else in_ns=(); fi
  (cd / && timeout 120 "${in_ns[@]}" kubeadm reset -f --cri-socket "$KH_SOCK") >"$KH_RUN/kubeadm-reset.log" 2>&1 || kh_log "kubeadm reset failed, see $KH_RUN/kubeadm-reset.log"
fi
rm -rf /etc/kubernetes/manifests /etc/kubernetes/pki /etc/kubernetes/tmp /etc/kubernetes/{admin,kubelet,bootstrap-kubelet,controller-manager,scheduler}.conf
rm -rf "$KH_ETCD_DIR" /var/lib/kubelet/* "$KH_CTRD_ROOT/io.containerd.grpc.v1.cri" 2>/dev/null
rm -f /var/lib/cni/results/kubepki-* /var/lib/cni/cache/results/kubepki-* 2>/dev/null
# paths that did not exist before up.sh
if [[ -f $KH_RUN/up.state ]]; then
  sed -n 's/^created //p' "$KH_RUN/up.state" | while read -r p; do rm -rf "$p"; done
fi

# 5. the kubelet's cgroups (empty now), deepest first
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 6. network: the namespace, with the node interface, the CNI bridge and any kube-proxy rules in it
if ip netns list 2>/dev/null | grep -qw "$KH_NETNS"; then step "deleting network namespace $KH_NETNS"; ip netns del "$KH_NETNS"; fi

# 7. sysctls the kubelet set (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1, ...)
if [[ -f $KH_RUN/up.state ]]; then
  sed -n 's/^sysctl //p' "$KH_RUN/up.state" | while read -r kv; do sysctl -qw "$kv" || kh_log "cannot restore $kv"; done
fi

# 7b. what a user had in /etc/kubernetes, /var/lib/kubelet, ...: back where it was
if [[ -f $KH_RUN/up.state ]]; then
  sed -n 's/^saved //p' "$KH_RUN/up.state" | while read -r p s; do
    if [[ -e $s ]]; then rm -rf "$p"; mv "$s" "$p"; step "put back $p"; fi
  done
fi

# 8. state dirs; with --purge also the image store and built archives
rm -rf "$KH_STATE"
if (( PURGE )); then rm -rf "$KH_VAR" "$KH_WORK/images" "$KH_WORK/build"; fi
if [[ -f $KH_RUN/up.state ]]; then
  mkdir -p "$KH_RUN/last"; rm -f "$KH_RUN/last/"*
  mv "$KH_RUN"/*.log "$KH_RUN/up.state" "$KH_RUN/last/" 2>/dev/null
fi
rm -f "$KH_RUN/env.sh" "$KH_RUN/settings.env"

# 9. verify
bad=()
[[ -n $(harness_pids) ]] && bad+=("processes: $(harness_pids | tr '\n' ' ')")
for b in /var/lib/kubelet "$KH_STATE" "$KH_VAR"; do [[ -n $(mounts_under "$b") ]] && bad+=("mounts under $b"); done
ip netns list 2>/dev/null | grep -qw "$KH_NETNS" && bad+=("network namespace $KH_NETNS")
ip link show "$KH_IFACE" >/dev/null 2>&1 && bad+=("interface $KH_IFACE in the host namespace")
if [[ -f $KH_RUN/last/up.state ]]; then
  while read -r kv; do [[ $(sysctl -n "${kv%%=*}" 2>/dev/null) == "${kv#*=}" ]] || bad+=("sysctl ${kv%%=*} not restored"); done < <(sed -n 's/^sysctl //p' "$KH_RUN/last/up.state")
  while read -r p s; do [[ -e $s ]] && bad+=("$p not put back from $s"); done < <(sed -n 's/^saved //p' "$KH_RUN/last/up.state")
fi
ls -d /sys/fs/cgroup/*/kubepods >/dev/null 2>&1 && bad+=("cgroups kubepods")
[[ -e /etc/kubernetes/manifests ]] && bad+=("/etc/kubernetes/manifests")
if (( ${#bad[@]} )); then kh_log "down: LEFT BEHIND: ${bad[*]}"; exit 1; fi
step "down: clean"
