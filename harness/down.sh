#!/usr/bin/env bash
# down.sh [--purge]: tears down what up.sh started, so that up.sh can run again. It acts only on
# what up.sh recorded in $KH_RUN/up.state (without that file it does nothing): it stops the
# kubelet (supervisor), kube-proxy and containerd by their recorded PIDs after killing and
# removing every container of the harness containerd (its shims, found by the harness socket,
# and what is left in the kubelet's cgroups, which up.sh made sure did not exist before),
# unmounts what is below the harness's directories, deletes the network namespace (killing any
# process still in it), removes the kubelet's cgroups, restores the kernel sysctls the kubelet
# changed, and renames back the host directories up.sh moved aside.
# Keeps the containerd image store ($KH_VAR/containerd) for a fast next up.sh; --purge removes it
# and the built image archives too. Exit status 0 only when nothing is left behind; up.state is
# archived (to $KH_RUN/last) only then, so a failed down.sh is retried by the next up.sh.
set -uo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export KH_HOME=$H
. "$H/lib.sh"
export PATH=$KH_K8S_BIN:$PATH
PURGE=0; [[ ${1:-} == --purge ]] && PURGE=1
T0=$(date +%s)
step() { kh_log "[down $(( $(date +%s) - T0 ))s] $*"; }
[[ $(id -u) == 0 ]] || { echo "down.sh: must run as root" >&2; exit 1; }
kh_lock || exit 1
STATE=$KH_RUN/up.state
if [[ ! -f $STATE ]]; then
  if (( PURGE )); then rm -rf "$KH_VAR" "$KH_WORK/images" "$KH_WORK/build"; fi
  step "nothing to tear down (no $STATE)"; exit 0
fi
has() { grep -qxF -- "$1" "$STATE"; }
CTR=(ctr --timeout 10s)
stop_pid() { # stop_pid PIDFILE NAME [TERM-WAIT-SECONDS]
  local f=$1 n=$2 w=${3:-30} p i
  kh_alive "$f" || { rm -f "$f"; return 0; }
  p=$(cat "$f"); kill -TERM "$p" 2>/dev/null
  for ((i = 0; i < w * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then kh_log "$n ($p) ignored TERM, killing"; kill -KILL "$p" 2>/dev/null; sleep 0.5; fi
  rm -f "$f"
}
mounts_under() { awk -v b="$1" '$5 == b || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r; }
netns_inode() { stat -L -c %i "$KH_NS" 2>/dev/null; }
# PIDs of the harness's processes: the shims of *this* containerd (their command line names its
# socket), what is left in the kubelet's cgroups, and anything still in the harness namespace.
harness_pids() {
  local d ino
  ino=$(netns_inode)
  for d in /proc/[0-9]*; do
    { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -q -- "containerd-shim.* -address $KH_SOCK\b" && echo "${d#/proc/}"
    [[ -n $ino && $(stat -L -c %i "$d/ns/net" 2>/dev/null) == "$ino" ]] && echo "${d#/proc/}"
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
  ids=$("${CTR[@]}" tasks ls -q 2>/dev/null)
  step "killing $(echo $ids | wc -w) container tasks, removing $("${CTR[@]}" containers ls -q 2>/dev/null | wc -l) containers"
  for id in $ids; do "${CTR[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
  for _ in $(seq 1 100); do "${CTR[@]}" tasks ls 2>/dev/null | grep -q RUNNING || break; sleep 0.2; done
  for id in $ids; do "${CTR[@]}" tasks rm -f "$id" >/dev/null 2>&1; done
  for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers rm "$id" >/dev/null 2>&1; done
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
# it once more, only to delete them, so that the next cluster does not inherit dead pods. In an
# empty network namespace of its own (unshare), so that it listens nowhere else.
if (( !cleaned )) && [[ -f $KH_RUN/containerd.toml && -e $KH_CTRD_ROOT/io.containerd.metadata.v1.bolt/meta.db ]]; then
  step "starting containerd once more to delete the containers it still lists"
  mkdir -p "$KH_STATE/containerd"
  unshare --net setsid bash -c 'echo $$ >"$0/containerd.pid"; exec containerd --config "$0/containerd.toml" >>"$0/containerd.log" 2>&1' "$KH_RUN" </dev/null >/dev/null 2>&1 9>&- &
  for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
  if [[ -n $("${CTR[@]}" containers ls -q 2>/dev/null) ]]; then remove_containers; fi
  stop_pid "$KH_RUN/containerd.pid" containerd
  left=$(harness_pids | sort -u)
  if [[ -n $left ]]; then kill -KILL $left 2>/dev/null; sleep 1; fi
fi

# 3. unmount (pod volumes, rootfs overlays, shm, netns)
step "unmounting"
for base in /var/lib/kubelet "$KH_STATE" "$KH_VAR"; do
  for m in $(mounts_under "$base"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || kh_log "cannot unmount $m"; done
done

# 4. what the cluster wrote: the moved-aside host directories (the cluster's own copies) and the
# paths up.sh created, wholly; in the shared ones, only the harness's entries. (No `kubeadm
# reset`: it would also empty directories the harness never took over.)
step "removing the cluster's files"
owned() { # owned P: up.sh created P, or moved the user's P aside (and the copy is there)
  local s
  has "created $1" && return 0
  s=$(sed -n "s|^saved $1 ||p" "$STATE")
  [[ -n $s && -e $s ]]
}
for p in "${KH_MOVED_PATHS[@]}"; do
  if owned "$p"; then rm -rf --one-file-system "$p"; fi
done
rm -rf "$KH_ETCD_DIR" "$KH_CTRD_ROOT/io.containerd.grpc.v1.cri" 2>/dev/null
find /var/lib/cni -name 'kubepki*' -delete 2>/dev/null
# The shims' sockets: when up.sh created /run/containerd, those no process listens on any more.
if has "created /run/containerd"; then
  listening=$(ss -xlH 2>/dev/null | awk '{print $5}')
  for sock in /run/containerd/s/*; do
    [[ -S $sock ]] && ! grep -qxF -- "$sock" <<<"$listening" && rm -f "$sock"
  done
fi
for p in "${KH_SHARED_PATHS[@]}"; do
  if has "created $p"; then find "$p" -depth -type d -empty -delete 2>/dev/null; fi
done

# 5. the kubelet's cgroups (empty now), deepest first
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 6. network: the namespace, with the node interface, the CNI bridge and kube-proxy's rules in it
if has "netns $KH_NETNS" && [[ -e $KH_NS ]]; then
  step "deleting network namespace $KH_NETNS"
  ip netns del "$KH_NETNS"
fi

# 7. sysctls the kubelet set (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1, ...)
while read -r kv; do
  echo "${kv#*=}" >"/proc/sys/${kv%%=*}" 2>/dev/null || kh_log "cannot restore ${kv%%=*}"
done < <(sed -n 's/^sysctl //p' "$STATE")

# 8. what a user had in /etc/kubernetes, /var/lib/kubelet, ...: back where it was
while read -r p s; do
  if [[ -e $s ]]; then rm -rf --one-file-system "$p"; mv -T "$s" "$p" && step "put back $p"; fi
done < <(sed -n 's/^saved //p' "$STATE")

# 9. state dirs; with --purge also the image store and built archives
rm -rf "$KH_STATE"
if (( PURGE )); then rm -rf "$KH_VAR" "$KH_WORK/images" "$KH_WORK/build"; fi

# 10. verify; only a clean teardown archives up.state
bad=()
[[ -n $(harness_pids) ]] && bad+=("processes: $(harness_pids | sort -u | tr '\n' ' ')")
for f in kubelet-supervisor kubelet kube-proxy containerd; do kh_alive "$KH_RUN/$f.pid" && bad+=("$f still running"); done
for b in /var/lib/kubelet "$KH_STATE" "$KH_VAR"; do [[ -n $(mounts_under "$b") ]] && bad+=("mounts under $b"); done
[[ -e $KH_NS ]] && has "netns $KH_NETNS" && bad+=("network namespace $KH_NETNS")
ls -d /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods >/dev/null 2>&1 && bad+=("cgroups kubepods")
while read -r kv; do
  [[ $(cat "/proc/sys/${kv%%=*}" 2>/dev/null) == "${kv#*=}" ]] || bad+=("sysctl ${kv%%=*} not restored")
done < <(sed -n 's/^sysctl //p' "$STATE")
while read -r p s; do [[ -e $s ]] && bad+=("$p not put back from $s"); done < <(sed -n 's/^saved //p' "$STATE")
while read -r p; do [[ -e $p ]] && [[ ! " ${KH_SHARED_PATHS[*]} " =~ " $p " ]] && bad+=("$p, which up.sh created"); done < <(sed -n 's/^created //p' "$STATE")
if (( ${#bad[@]} )); then kh_log "down: LEFT BEHIND: ${bad[*]}"; exit 1; fi
mkdir -p "$KH_RUN/last"; rm -f "$KH_RUN/last/"*
mv "$KH_RUN"/*.log "$STATE" "$KH_RUN/last/" 2>/dev/null
rm -f "$KH_RUN/env.sh" "$KH_RUN/settings.env" "$KH_RUN"/*.sha256
step "down: clean"
