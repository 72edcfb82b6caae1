#!/usr/bin/env bash
# End-to-end load benchmark of `kubepki controller` (a benchmark, not a test): a 5000-node
# cluster rotating client and serving certificates at once, on a real etcd + kube-apiserver
# v1.20.2 + kube-controller-manager v1.20.2 (csrsigning, csrapproving, serviceaccount-token,
# clusterrole-aggregation) on a `kubepki init` PKI, everything on 127.0.0.50.
#
#   1. setup: the selfnodeclient RBAC for the built-in approver, NODES Node objects with
#      status.addresses (InternalIP + Hostname);
#   2. "live": kubepki controller running; for every node one kube-apiserver-client-kubelet and
#      one kubelet-serving CSR are created as that node, CONC at a time; a watch times when every
#      serving CSR is decided and every CSR issued;
#   3. "preexisting": controller stopped, a fresh batch of 2*NODES CSRs is created, then the
#      controller starts and decides the backlog;
#   4. baseline: controller stopped, NODES fresh CSRs of a signer nothing handles, and NODES
#      approval updates (PUT .../approval) by the load generator at the same concurrency.
#
# Usage: bash bench/controller.sh
# Knobs: NODES (5000), CONC (64, the load generator's requests in flight), BASELINE_COUNT (NODES),
#   KCM_QPS (500: kube-controller-manager's --kube-api-qps/--kube-api-burst; its default of 20
#   would make issuing 10000 certificates take 15+ minutes), MAX_INFLIGHT / MAX_MUTATING_INFLIGHT
#   (kube-apiserver defaults, 400 / 200, unless set), PHASE_TIMEOUT (900 s per phase),
#   SKIP_PREEXISTING=1, BENCH_RESULTS (bench/results), KEEP=1 (keep the scratch dir and logs).
# Writes bench/results/controller-*.json|txt|md. Every process it starts is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RES=${BENCH_RESULTS:-$ROOT/bench/results}
mkdir -p "$RES"
NODES=${NODES:-5000}
CONC=${CONC:-64}
BASELINE_COUNT=${BASELINE_COUNT:-$NODES}
KCM_QPS=${KCM_QPS:-500}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-900}
IP=127.0.0.50
TAG=${TAG:-}   # suffix for result files (e.g. -1000)

. "$ROOT/bench/lib.sh"
bench_scratch kubepki-ctlbench

say "building kubepki and the load generator (release)"
cargo build --release -q
KP=$ROOT/target/release/kubepki
CARGO_TARGET_DIR=$ROOT/target cargo build --release -q --manifest-path bench/csrload/Cargo.toml
LOAD=$ROOT/target/release/kubepki-bench-csrload
BIN=$(/work/shared/tools/k8s-test-binaries | tail -1)
command -v etcd >/dev/null || { apt-get install -y -qq etcd-server etcd-client >/dev/null; }

{
  echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc:     $(nproc)"
  echo "cpu:       $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "memory:    $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel:    $(uname -sr)"
  echo "kubepki:   $($KP --version) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "k8s:       $("$BIN/kube-apiserver" --version), etcd $(etcd --version | head -1 | awk '{print $3}')"
  echo "knobs:     NODES=$NODES CONC=$CONC BASELINE_COUNT=$BASELINE_COUNT KCM_QPS=$KCM_QPS MAX_INFLIGHT=${MAX_INFLIGHT:-default} MAX_MUTATING_INFLIGHT=${MAX_MUTATING_INFLIGHT:-default}"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RES/controller-machine$TAG.txt"

say "kubepki init, etcd, kube-apiserver, kube-controller-manager on $IP"
API_PORT=$(free_port)
$KP init --cert-dir "$W/pki" --kubeconfig-dir "$W" --node-name bench-cp \
  --apiserver-advertise-address $IP --control-plane-endpoint "$IP:$API_PORT" \
  --apiserver-bind-port "$API_PORT" >/dev/null
ETCD_PORT=$(free_port)
ETCD_PEER=$(free_port)
P=$W/pki
kubeadm_etcd_args
etcd "${ETCD_ARGS[@]}" --snapshot-count=10000 >"$W/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
INFLIGHT=()
[[ -n ${MAX_INFLIGHT:-} ]] && INFLIGHT+=("--max-requests-inflight=$MAX_INFLIGHT")
[[ -n ${MAX_MUTATING_INFLIGHT:-} ]] && INFLIGHT+=("--max-mutating-requests-inflight=$MAX_MUTATING_INFLIGHT")
kubeadm_apiserver_args
"$BIN/kube-apiserver" "${APISERVER_ARGS[@]}" "${INFLIGHT[@]}" \
  >"$W/kube-apiserver.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
wait_until 120 "kube-apiserver /readyz" \
  bash -c "[[ \$(curl -sk --max-time 3 https://$IP:$API_PORT/readyz) == ok ]]"
"$BIN/kube-controller-manager" --kubeconfig="$W/controller-manager.conf" \
  --authentication-kubeconfig="$W/controller-manager.conf" \
  --authorization-kubeconfig="$W/controller-manager.conf" \
  --bind-address=$IP --secure-port="$(free_port)" --port=0 --cert-dir="$W/kcm-certs" \
  --client-ca-file="$P/ca.crt" --requestheader-client-ca-file="$P/front-proxy-ca.crt" \
  --root-ca-file="$P/ca.crt" --service-account-private-key-file="$P/sa.key" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --use-service-account-credentials=true --leader-elect=false \
  --kube-api-qps="$KCM_QPS" --kube-api-burst="$KCM_QPS" \
  --controllers=csrsigning,csrapproving,serviceaccount-token,clusterrole-aggregation \
  >"$W/kube-controller-manager.log" 2>&1 &
KCM_PID=$!
PIDS+=("$KCM_PID")
ADMIN=$W/super-admin.conf

say "setup: RBAC + $NODES Nodes with status.addresses"
"$LOAD" "$ADMIN" setup "$NODES" "$CONC" | tee "$RES/controller-setup$TAG.json"
# The built-in approver runs with its own service-account token: wait until it exists.
sleep 5

PROCS=$RES/controller-procs$TAG.txt
: >"$PROCS"
cpu_snapshot() { # LABEL [controller PID]
  {
    printf '%-28s etcd %6ss  kube-apiserver %6ss  kcm %6ss' "$1" \
      "$(proc_cpu $ETCD_PID)" "$(proc_cpu $API_PID)" "$(proc_cpu $KCM_PID)"
    [[ -n ${2:-} ]] && printf '  controller %6ss (RSS %s MiB, peak %s MiB)' \
      "$(proc_cpu "$2")" "$(proc_rss "$2")" "$(proc_hwm "$2")"
    printf '  | apiserver RSS %s MiB\n' "$(proc_rss $API_PID)"
  } | tee -a "$PROCS"
}

MPORT=$(free_port)
start_controller() { # TAG
  RUST_LOG=info "$KP" controller --kubeconfig "$ADMIN" --leader-elect=false \
    --metrics-bind-address "$IP:$MPORT" --health-probe-bind-address 0 \
    >"$W/kubepki-controller-$1.log" 2>&1 &
  CTL_PID=$!
  PIDS+=("$CTL_PID")
  CTL_START_MS=$(date +%s%3N)
}
finish_controller() { # TAG
  local t=$1
  curl -s --max-time 5 "http://$IP:$MPORT/metrics" >"$RES/controller-metrics-$t$TAG.txt" || true
  cpu_snapshot "after $t" "$CTL_PID"
  {
    echo "controller ($t): pid $CTL_PID, started at epoch ms $CTL_START_MS"
    echo "  peak RSS (VmHWM): $(proc_hwm "$CTL_PID") MiB; CPU: $(proc_cpu "$CTL_PID") s"
    echo "  log lines: $(wc -l <"$W/kubepki-controller-$t.log"); WARN lines: $(grep -c WARN "$W/kubepki-controller-$t.log" || true)"
    echo "  approved: $(grep -c ' approved' "$W/kubepki-controller-$t.log" || true); denied: $(grep -c ' denied' "$W/kubepki-controller-$t.log" || true); conflicts: $(grep -c 'changed meanwhile' "$W/kubepki-controller-$t.log" || true)"
    echo "  first WARN lines:"
    grep WARN "$W/kubepki-controller-$t.log" | head -5 | sed 's/^/    /' || true
  } | tee -a "$PROCS"
  stop "$CTL_PID"
}

# --- live: the controller decides while 10000 CSRs arrive -------------------------------------
say "live: controller running; $((2 * NODES)) CSRs created as their nodes, $CONC at a time"
cpu_snapshot "before live"
start_controller live
wait_until 120 "controller: node cache synced" grep -q "node cache synced" "$W/kubepki-controller-live.log"
"$LOAD" "$ADMIN" csrs live "$NODES" "$CONC" --timeout "$PHASE_TIMEOUT" | tee "$RES/controller-e2e-live$TAG.json"
finish_controller live

# --- preexisting: the controller starts on a backlog ------------------------------------------
if [[ ${SKIP_PREEXISTING:-0} != 1 ]]; then
  say "preexisting: $((2 * NODES)) CSRs created with the controller stopped"
  "$LOAD" "$ADMIN" csrs pre "$NODES" "$CONC" --no-wait | tee "$RES/controller-e2e-pre-create$TAG.json"
  # Let the controller-manager's approvals and signatures of the client CSRs settle first.
  sleep 5
  cpu_snapshot "before preexisting"
  start_controller pre
  PRE_START=$CTL_START_MS
  "$LOAD" "$ADMIN" wait pre "$NODES" --timeout "$PHASE_TIMEOUT" >"$W/pre.json"
  python3 - "$W/pre.json" "$PRE_START" >"$RES/controller-e2e-preexisting$TAG.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
# Times in the file are from the watch's start; shift them to the controller's start.
off = (v["start_epoch_ms"] - int(sys.argv[2])) / 1000
v["offset_watch_after_controller_start_s"] = off
for k in ("first_decision_s", "all_serving_decided_s", "serving_decided_p50_s", "all_issued_s", "issued_p50_s", "all_client_approved_s"):
    if v.get(k) is not None:
        v[k + "_from_controller_start"] = round(v[k] + off, 3)
if v.get("all_serving_decided_s_from_controller_start"):
    v["decisions_per_s_from_controller_start"] = v["serving_decided"] / v["all_serving_decided_s_from_controller_start"]
print(json.dumps(v, indent=2))
PY
  cat "$RES/controller-e2e-preexisting$TAG.json"
  finish_controller pre
fi

# --- baseline: the API server's own approval-write rate ---------------------------------------
say "baseline: $BASELINE_COUNT approval updates straight from the load generator, $CONC at a time"
cpu_snapshot "before baseline"
"$LOAD" "$ADMIN" baseline base "$BASELINE_COUNT" "$CONC" | tee "$RES/controller-baseline$TAG.json"
cpu_snapshot "after baseline"
grep -c "429\|TooManyRequests" "$W/kube-apiserver.log" | sed 's/^/apiserver log lines mentioning 429: /' | tee -a "$PROCS" || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RES/controller-machine$TAG.txt"
if [[ ${KEEP:-0} == 1 ]]; then echo "logs: $W"; fi
