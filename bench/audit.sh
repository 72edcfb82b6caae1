#!/usr/bin/env bash
# How long `kubepki audit` takes, and how much memory it needs, on a large cluster (a benchmark,
# not a test; not run in CI): NODES Nodes and PODS Pods (default 5,000 and 150,000, the
# large-cluster page's limits) in a real etcd + kube-apiserver v1.20.2 on a `kubepki init` PKI,
# everything on 127.0.0.90; against the API server's own LIST time for the same objects.
#
#   1. populate (bench/audit/populate.go, Go stdlib, CONC concurrent POSTs over keep-alive
#      connections, as super-admin.conf): ~100 namespaces with a mix of pod-security labels, the
#      Nodes (3 zones, capacity pods 110, full status), a few DaemonSets, one Deployment per app,
#      StatefulSets, PersistentVolumes, then the Pods, PODS/NODES per node: a kube-proxy and a
#      node-exporter DaemonSet Pod on every node, the control-plane static Pods on nodes 0-2,
#      app Pods owned by fake ReplicaSets (20 each; every tenth app bare) with 1-2 containers,
#      requests/limits and a mix of restricted, baseline and privileged security contexts
#      (populate.go's header has the details). Nothing runs that would schedule, start or
#      garbage-collect them: they stay Pending, with spec.nodeName set. Timed per phase.
#   2. RUNS rounds (default 3), each: `kubepki audit --kubeconfig admin.conf --checks
#      scale,zones,pss -o json` with --page-size 500 (the default) and 5000, under
#      /usr/bin/time (wall, user, sys, max RSS), with the API server's and etcd's CPU seconds
#      over the same run; then the API server's own LIST time with curl as the same user
#      (admin.conf's certificate): the 7 resources the audit lists, paginated with limit=500
#      (following metadata.continue; time = sum of curl's time_total over the pages), pods also
#      with limit=5000, and pods and nodes unpaginated.
#   Reports median and range of each; raw numbers in RES/audit-*.
#
# Usage: bench/audit.sh [--nodes N] [--pods N] [--runs N] [--conc N]
#   (on 2 shared cores: about 7 minutes to populate the default 150,000 Pods, then about 10
#   minutes of measurements; the API server peaks at ~13.5 GiB RSS during the unpaginated LISTs;
#   `bench/audit.sh --nodes 50 --pods 1500` is a one-minute smoke run)
# Knobs (environment): KUBEPKI (a kubepki binary to use instead of building
#   target/release/kubepki), MAX_INFLIGHT / MAX_MUTATING_INFLIGHT (kube-apiserver, 800 / 400
#   here, for the population's concurrency; they do not limit the 1-7 concurrent LISTs measured),
#   NO_AUDIT=1 (populate and measure the API server's LISTs only), SETTLE (seconds between
#   population and measurements, 5), BENCH_RESULTS (default
#   bench/audit/results), TAG (suffix of the result files), KEEP=1 (keep
#   the scratch dir, etcd's data and the logs).
# Needs etcd (apt-get install etcd-server), Go (populate.go), curl, jq, GNU time, and the
# Kubernetes binaries of /work/shared/tools/k8s-test-binaries. Every process it starts is
# stopped by PID at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NODES=5000 PODS=150000 RUNS=3 CONC=64
while (($#)); do
  case $1 in
    --nodes) NODES=$2; shift 2 ;;
    --pods) PODS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --conc) CONC=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
RES=${BENCH_RESULTS:-$ROOT/bench/audit/results}
mkdir -p "$RES"
TAG=${TAG:-}
IP=127.0.0.90
MAX_INFLIGHT=${MAX_INFLIGHT:-800}
MAX_MUTATING_INFLIGHT=${MAX_MUTATING_INFLIGHT:-400}

. "$ROOT/bench/lib.sh"
bench_scratch kubepki-auditbench

if [[ -n ${KUBEPKI:-} ]]; then
  KP=$KUBEPKI
else
  say "building kubepki (release)"
  cargo build --release --locked -q --bin kubepki
  KP=$ROOT/target/release/kubepki
fi
if [[ ${NO_AUDIT:-0} != 1 ]]; then
  "$KP" audit --help >/dev/null || { echo "$KP has no audit command" >&2; exit 1; }
fi
say "building the populator (Go, stdlib only)"
(cd "$ROOT/bench/audit" && go build -o "$W/populate" populate.go)
BIN=$(/work/shared/tools/k8s-test-binaries | tail -1)
command -v etcd >/dev/null || { apt-get install -y -qq etcd-server etcd-client >/dev/null; }
TIME=/usr/bin/time
[[ -x $TIME ]] || { apt-get install -y -qq time >/dev/null; }

MACHINE=$RES/audit-machine$TAG.txt
{
  echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc:     $(nproc) (kubepki, kube-apiserver, etcd and curl share them)"
  echo "cpu:       $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "memory:    $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel:    $(uname -sr)"
  echo "kubepki:   $("$KP" --version) (git $(git rev-parse --short HEAD 2>/dev/null || echo '?'); files changed in src/ crates/ since: $(git status --porcelain -- src crates Cargo.toml Cargo.lock 2>/dev/null | wc -l))"
  echo "k8s:       $("$BIN/kube-apiserver" --version), etcd $(etcd --version | head -1 | awk '{print $3}')"
  echo "knobs:     NODES=$NODES PODS=$PODS RUNS=$RUNS CONC=$CONC MAX_INFLIGHT=$MAX_INFLIGHT MAX_MUTATING_INFLIGHT=$MAX_MUTATING_INFLIGHT"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$MACHINE"

# --- etcd + kube-apiserver -------------------------------------------------------------------
say "kubepki init, etcd (data on disk in $W), kube-apiserver on $IP"
API_PORT=$(free_port)
"$KP" init --cert-dir "$W/pki" --kubeconfig-dir "$W" --node-name bench-cp \
  --apiserver-advertise-address $IP --control-plane-endpoint "$IP:$API_PORT" \
  --apiserver-bind-port "$API_PORT" >/dev/null
P=$W/pki
ETCD_PORT=$(free_port)
ETCD_PEER=$(free_port)
kubeadm_etcd_args
etcd "${ETCD_ARGS[@]}" --quota-backend-bytes=$((8 << 30)) --snapshot-count=10000 >"$W/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
kubeadm_apiserver_args
"$BIN/kube-apiserver" "${APISERVER_ARGS[@]}" --max-requests-inflight="$MAX_INFLIGHT" --max-mutating-requests-inflight="$MAX_MUTATING_INFLIGHT" \
  >"$W/kube-apiserver.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
wait_until 120 "kube-apiserver /readyz" \
  bash -c "[[ \$(curl -sk --max-time 3 https://$IP:$API_PORT/readyz) == ok ]]"
SERVER=https://$IP:$API_PORT

# Client certificates out of the kubeconfigs: super-admin (system:masters) populates, admin
# (kubeadm:cluster-admins, bound to cluster-admin below as kubeadm does) is audited and lists.
creds() { # KUBECONFIG PREFIX
  sed -n 's/^ *client-certificate-data: *//p' "$1" | base64 -d >"$2.crt"
  sed -n 's/^ *client-key-data: *//p' "$1" | base64 -d >"$2.key"
}
creds "$W/super-admin.conf" "$W/super"
creds "$W/admin.conf" "$W/admin"
api() { curl -sS --fail --cacert "$P/ca.crt" --cert "$W/super.crt" --key "$W/super.key" \
  -H 'Content-Type: application/json' "$SERVER$1" "${@:2}"; }
wait_until 60 "the default namespace" api /api/v1/namespaces/default
api /apis/rbac.authorization.k8s.io/v1/clusterrolebindings -X POST -d '{
  "metadata":{"name":"kubeadm:cluster-admins"},
  "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
  "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"kubeadm:cluster-admins"}]}' >/dev/null

# --- 1. populate ------------------------------------------------------------------------------
say "populating: $NODES Nodes, $PODS Pods, $CONC requests in flight"
CPU0_API=$(proc_cpu $API_PID) CPU0_ETCD=$(proc_cpu $ETCD_PID)
T0=$(date +%s.%N)
"$W/populate" -server "$SERVER" -ca "$P/ca.crt" -cert "$W/super.crt" -key "$W/super.key" \
  -nodes "$NODES" -pods "$PODS" -conc "$CONC" | tee "$RES/audit-populate$TAG.jsonl"
T1=$(date +%s.%N)
{
  printf 'population total: %.1f s wall; CPU during it: kube-apiserver %.1f s, etcd %.1f s\n' \
    "$(echo "$T1 - $T0" | bc)" "$(echo "$(proc_cpu $API_PID) - $CPU0_API" | bc)" \
    "$(echo "$(proc_cpu $ETCD_PID) - $CPU0_ETCD" | bc)"
  echo "etcd data dir: $(du -sh "$W/etcd-data" | cut -f1); kube-apiserver RSS $(proc_rss $API_PID) MiB (peak $(proc_hwm $API_PID)), etcd RSS $(proc_rss $ETCD_PID) MiB"
} | tee "$RES/audit-populate$TAG.txt"
# Let the API server's watch cache and etcd settle after the burst.
sleep "${SETTLE:-5}"

# --- 2. measurements ----------------------------------------------------------------------------
# kubectl's User-Agent: the API server pretty-prints JSON for curl's (and browsers').
ACURL=(curl -sS --fail --cacert "$P/ca.crt" --cert "$W/admin.crt" --key "$W/admin.key"
  -A "kubectl/v1.20.2 (linux/amd64) kubernetes/faecb19" -H 'Accept: application/json')

# RESOURCE-PATH LIMIT: one paginated LIST; prints "sum_of_time_total wall pages bytes items".
list_paginated() {
  local path=$1 limit=$2 token= sum=0 pages=0 bytes=0 items=0 t0 out t size
  t0=$(date +%s%N)
  while :; do
    local q="limit=$limit"
    [[ -n $token ]] && q+="&continue=$token"
    out=$("${ACURL[@]}" -o "$W/page.json" -w '%{time_total} %{size_download}' "$SERVER$path?$q")
    read -r t size <<<"$out"
    sum=$(echo "$sum + $t" | bc) bytes=$((bytes + size)) pages=$((pages + 1))
    # The continue token sits in the list's metadata, before the items.
    token=$(head -c 4096 "$W/page.json" | grep -o '"continue": *"[^"]*"' | head -1 | cut -d'"' -f4 || true)
    if ((pages == 1)); then
      items=$(head -c 4096 "$W/page.json" | grep -o '"remainingItemCount": *[0-9]*' | cut -d: -f2 | tr -d ' '  || true)
      items=$(( ${items:-0} + $(jq '.items | length' "$W/page.json") ))
    fi
    [[ -n $token ]] || break
  done
  echo "$sum $(echo "scale=3; ($(date +%s%N) - $t0) / 1000000000" | bc) $pages $bytes $items"
}
list_whole() { # PATH: unpaginated; prints "time_total time_starttransfer bytes"
  "${ACURL[@]}" -o /dev/null -w '%{time_total} %{time_starttransfer} %{size_download}\n' "$SERVER$1"
}
ALL=(/api/v1/nodes /api/v1/namespaces /apis/apps/v1/daemonsets /apis/apps/v1/deployments
  /apis/apps/v1/statefulsets /api/v1/persistentvolumes /api/v1/pods)

RAW=$RES/audit-runs$TAG.txt
: >"$RAW"
audit_run() { # ROUND PAGE-SIZE
  local api0 etcd0 out=$W/audit-$1-$2.json
  api0=$(proc_cpu $API_PID) etcd0=$(proc_cpu $ETCD_PID)
  local rc=0
  "$TIME" -f '%e %U %S %M' -o "$W/time" "$KP" audit --kubeconfig "$W/admin.conf" \
    --checks scale,zones,pss -o json --page-size "$2" >"$out" 2>"$W/audit.err" || rc=$?
  read -r wall user sys maxkb < <(tail -1 "$W/time")
  printf 'audit page=%s round=%s wall=%s user=%s sys=%s maxrss_mib=%.1f rc=%s apiserver_cpu=%.2f etcd_cpu=%.2f findings=%s report_bytes=%s\n' \
    "$2" "$1" "$wall" "$user" "$sys" "$(echo "$maxkb / 1024" | bc -l)" "$rc" \
    "$(echo "$(proc_cpu $API_PID) - $api0" | bc)" "$(echo "$(proc_cpu $ETCD_PID) - $etcd0" | bc)" \
    "$(jq '.findings | length' "$out" 2>/dev/null || echo '?')" "$(wc -c <"$out")" | tee -a "$RAW"
  if [[ $rc -gt 1 ]] || [[ -s $W/audit.err ]]; then
    echo "  audit exit $rc; stderr:" | tee -a "$RAW"; head -5 "$W/audit.err" | sed 's/^/    /' | tee -a "$RAW"
  fi
  # The report itself is tens of MB at 150,000 Pods: keep its findings counted by id.
  [[ $1 == 1 ]] && { jq -r '.findings[].id' "$out" | sort | uniq -c | sort -rn >"$RES/audit-findings-page$2$TAG.txt" || true; }
  return 0
}
for round in $(seq "$RUNS"); do
  say "round $round of $RUNS"
  if [[ ${NO_AUDIT:-0} != 1 ]]; then
    audit_run "$round" 500
    audit_run "$round" 5000
  fi
  api0=$(proc_cpu $API_PID) etcd0=$(proc_cpu $ETCD_PID)
  total=0 twall=0
  for path in "${ALL[@]}"; do
    read -r sum wall pages bytes items <<<"$(list_paginated "$path" 500)"
    total=$(echo "$total + $sum" | bc) twall=$(echo "$twall + $wall" | bc)
    echo "list500 $path round=$round time_total_sum=$sum wall=$wall pages=$pages bytes=$bytes items=$items" | tee -a "$RAW"
  done
  printf 'list500-all7 round=%s time_total_sum=%s wall=%s apiserver_cpu=%.2f etcd_cpu=%.2f\n' "$round" "$total" "$twall" \
    "$(echo "$(proc_cpu $API_PID) - $api0" | bc)" "$(echo "$(proc_cpu $ETCD_PID) - $etcd0" | bc)" | tee -a "$RAW"
  read -r sum wall pages bytes items <<<"$(list_paginated /api/v1/pods 5000)"
  echo "list5000 /api/v1/pods round=$round time_total_sum=$sum wall=$wall pages=$pages bytes=$bytes items=$items" | tee -a "$RAW"
  for path in /api/v1/pods /api/v1/nodes; do
    api0=$(proc_cpu $API_PID)
    read -r t ttfb bytes <<<"$(list_whole "$path")"
    printf 'whole %s round=%s time_total=%s ttfb=%s bytes=%s apiserver_cpu=%.2f apiserver_rss_mib=%s\n' "$path" "$round" \
      "$t" "$ttfb" "$bytes" "$(echo "$(proc_cpu $API_PID) - $api0" | bc)" "$(proc_rss $API_PID)" | tee -a "$RAW"
  done
done
echo "kube-apiserver peak RSS $(proc_hwm $API_PID) MiB, etcd peak RSS $(proc_hwm $ETCD_PID) MiB" | tee -a "$RAW"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$MACHINE"

# --- summary: median [min-max] of each measurement ---------------------------------------------
say "summary (median [min-max] of $RUNS; targets: audit < 10 s, < 500 MiB)"
python3 - "$RAW" "$NODES" "$PODS" <<'PY' | tee "$RES/audit-summary$TAG.txt"
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) | {"head": l.split()[0], "path": l.split()[1]}
        for l in open(sys.argv[1]) if "=" in l and not l.startswith(" ")]
def show(label, vals, unit="s", fmt="{:.2f}"):
    vals = [float(v) for v in vals]
    if vals:
        print(f"{label:52} {fmt.format(statistics.median(vals))} {unit} [{fmt.format(min(vals))}-{fmt.format(max(vals))}]")
print(f"cluster: {sys.argv[2]} nodes, {sys.argv[3]} pods")
for page in ("500", "5000"):
    a = [r for r in rows if r["head"] == "audit" and r["path"] == f"page={page}"]
    show(f"kubepki audit --page-size {page}: wall", [r["wall"] for r in a])
    show(f"  CPU user+sys", [float(r["user"]) + float(r["sys"]) for r in a])
    show(f"  peak RSS", [r["maxrss_mib"] for r in a], "MiB", "{:.1f}")
    show(f"  kube-apiserver CPU during it", [r["apiserver_cpu"] for r in a])
    show(f"  etcd CPU during it", [r["etcd_cpu"] for r in a])
    print(f"  {'exit codes, findings':50} {sorted(set(r['rc'] for r in a))}, {sorted(set(r['findings'] for r in a))}")
for path in ("/api/v1/pods", "/api/v1/nodes", "/apis/apps/v1/deployments"):
    l = [r for r in rows if r["head"] == "list500" and r["path"] == path]
    show(f"LIST {path} limit=500 (sum of pages)", [r["time_total_sum"] for r in l])
    if l: print(f"  {'pages, items, MiB':50} {l[0]['pages']}, {l[0]['items']}, {int(l[0]['bytes'])/2**20:.1f}")
l = [r for r in rows if r["head"] == "list500-all7"]
show("LIST all 7 resources limit=500, one after another", [r["time_total_sum"] for r in l])
show("  kube-apiserver CPU during it", [r["apiserver_cpu"] for r in l])
l = [r for r in rows if r["head"] == "list5000"]
show("LIST /api/v1/pods limit=5000 (sum of pages)", [r["time_total_sum"] for r in l])
for path in ("/api/v1/pods", "/api/v1/nodes"):
    l = [r for r in rows if r["head"] == "whole" and r["path"] == path]
    show(f"LIST {path} unpaginated", [r["time_total"] for r in l])
    show(f"  first byte after", [r["ttfb"] for r in l])
    if l: print(f"  {'MiB':50} {int(l[0]['bytes'])/2**20:.1f}")
PY
if [[ ${KEEP:-0} == 1 ]]; then echo "logs: $W"; fi
