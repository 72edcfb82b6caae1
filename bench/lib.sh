# Shared by the bench scripts that start servers (controller.sh, agent.sh): progress lines,
# a scratch directory whose processes are stopped by PID on exit, ports, /proc readings.
# Source it after `set -euo pipefail`; `bench_scratch PREFIX` makes $W and the exit trap.

say() { printf '\n== %s  (%s, load %s)\n' "$*" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }

PIDS=()
cleanup() {
  local p
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    p=${PIDS[i]}
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $W"; else rm -rf "$W"; fi
}

bench_scratch() { # PREFIX: W=/tmp/PREFIX.XXXXXX, removed (with every PID in PIDS stopped) on exit
  W=$(mktemp -d "/tmp/$1.XXXXXX")
  trap cleanup EXIT
}

stop() { # PID: SIGTERM, then SIGKILL after 10 s
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

free_port() { # [IP] (default $IP)
  python3 -c "import socket; s=socket.socket(); s.bind(('${1:-$IP}', 0)); print(s.getsockname()[1])"
}

# CPU seconds (user+sys) and resident memory (MiB) of a running process.
proc_cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat"; }
proc_hwm() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
proc_rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

wait_until() { # SECONDS DESCRIPTION COMMAND...: polls every $WAIT_POLL seconds (0.5)
  local secs=$1 what=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { echo "timed out after ${secs}s waiting for $what" >&2; return 1; }
    sleep "${WAIT_POLL:-0.5}"
  done
}

# kube-apiserver's flags as kubeadm v1.20 writes them into its manifest, on the `kubepki init` PKI
# in $P, etcd at https://$IP:$ETCD_PORT, serving on $IP:$API_PORT; into the array APISERVER_ARGS
# (a script appends its own, e.g. the in-flight limits).
kubeadm_apiserver_args() {
  APISERVER_ARGS=(
    --advertise-address="$IP" --bind-address="$IP" --secure-port="$API_PORT"
    --insecure-port=0 --allow-privileged=true --authorization-mode=Node,RBAC
    --client-ca-file="$P/ca.crt" --enable-admission-plugins=NodeRestriction
    --enable-bootstrap-token-auth=true --etcd-cafile="$P/etcd/ca.crt"
    --etcd-certfile="$P/apiserver-etcd-client.crt" --etcd-keyfile="$P/apiserver-etcd-client.key"
    --etcd-servers="https://$IP:$ETCD_PORT"
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt"
    --kubelet-client-key="$P/apiserver-kubelet-client.key"
    --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
    --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key"
    --requestheader-allowed-names=front-proxy-client --requestheader-client-ca-file="$P/front-proxy-ca.crt"
    --requestheader-extra-headers-prefix=X-Remote-Extra- --requestheader-group-headers=X-Remote-Group
    --requestheader-username-headers=X-Remote-User
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key"
    --service-cluster-ip-range=10.96.0.0/12 --tls-cert-file="$P/apiserver.crt"
    --tls-private-key-file="$P/apiserver.key" --cert-dir="$W/apiserver-certs"
  )
}

# A one-member etcd as kubeadm runs it, on the `kubepki init` PKI in $P, clients on
# https://$IP:$ETCD_PORT, peers on $ETCD_PEER, data in $W/etcd-data; into the array ETCD_ARGS.
kubeadm_etcd_args() {
  ETCD_ARGS=(
    --name=bench-cp --data-dir="$W/etcd-data"
    --listen-client-urls="https://$IP:$ETCD_PORT" --advertise-client-urls="https://$IP:$ETCD_PORT"
    --listen-peer-urls="https://$IP:$ETCD_PEER" --initial-advertise-peer-urls="https://$IP:$ETCD_PEER"
    --initial-cluster="bench-cp=https://$IP:$ETCD_PEER" --initial-cluster-state=new
    --cert-file="$P/etcd/server.crt" --key-file="$P/etcd/server.key"
    --trusted-ca-file="$P/etcd/ca.crt" --client-cert-auth=true
    --peer-cert-file="$P/etcd/peer.crt" --peer-key-file="$P/etcd/peer.key"
    --peer-trusted-ca-file="$P/etcd/ca.crt" --peer-client-cert-auth=true
  )
}
