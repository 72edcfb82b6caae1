#!/usr/bin/env bash
# What `kubepki agent` costs (a benchmark, not a test): per scrape of /metrics, and in requests
# to the API server per hour, on a control-plane node's PKI made by `kubepki init` plus a kubelet
# pki dir (kubelet-client-current.pem -> a dated cert+key file, kubelet.crt) and one CA bundle.
#
#   1. scrapes (`--no-api`, metrics on 127.0.0.52): SCRAPES scrapes over one keep-alive
#      connection, as Prometheus scrapes; latency p50/p90/p99/max, the agent's CPU time per scrape
#      (utime+stime of /proc/PID/stat before and after, divided by SCRAPES), VmRSS and VmHWM
#      after. Each configuration twice: "steady" (nothing changed: one stat per file) and
#      "touched" (every watched file touched before every scrape, so each scrape re-reads and
#      re-parses everything). Configurations: the node (~30 certificates), the node plus a bundle
#      of BIG certificates in one file, the node plus BIG one-certificate files in a --watch-dir.
#      Then LEAK_SCRAPES more touched scrapes of the node, and BIG_LEAK_SCRAPES more of the
#      node + bundle, to see whether memory keeps growing.
#   2. API requests: a real etcd + kube-apiserver v1.20.2 on 127.0.0.51 (as bench/controller.sh),
#      the Nodes and namespace kubepki-system; agents with `--check-interval 1s` for API_SECONDS
#      (60 checks = one hour at the default 1m): (a) control-plane node, renewal on and nothing
#      due (`--renew-before 720h`, certificates a year away); (a') the same, renewal off;
#      (b) worker (ca.crt, kubelet.conf and the kubelet pki dir; no CA key), with the same flags
#      as (a), as one DaemonSet gives every node; (c) a worker whose kubelet certificates expire
#      in 10 and 3 days: the Events it sends, and again after an agent restart.
#      Counted three ways: the agent's kubepki_agent_api_requests_total{resource}, the API
#      server's audit log (user kubernetes-admin, admin.conf's, which nothing else uses), and the
#      API server's apiserver_request_total for nodes/configmaps/leases/events before and after.
#
# Usage: bash bench/agent.sh   (CARGO_TARGET_DIR is honoured, e.g. /work/bench-target)
# Knobs: SCRAPES (1000), BIG (1000), BUNDLE_CERTS (8, the small CA bundle), LEAK_SCRAPES (5000),
#   BIG_LEAK_SCRAPES (2000), API_SECONDS (60), SKIP_API=1, BENCH_RESULTS (bench/results), KEEP=1 (keep scratch dir, logs).
# Writes bench/results/agent-*.json|txt. Every process it starts is stopped by PID.
# This is not a test: nothing here fails on a slow result.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RES=${BENCH_RESULTS:-$ROOT/bench/results}
mkdir -p "$RES"
SCRAPES=${SCRAPES:-1000}
BIG=${BIG:-1000}
BUNDLE_CERTS=${BUNDLE_CERTS:-8}
LEAK_SCRAPES=${LEAK_SCRAPES:-5000}
BIG_LEAK_SCRAPES=${BIG_LEAK_SCRAPES:-2000}
API_SECONDS=${API_SECONDS:-60}
IP=127.0.0.51        # etcd, kube-apiserver
AIP=127.0.0.52       # the agents' /metrics
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

WAIT_POLL=0.2
. "$ROOT/bench/lib.sh"
bench_scratch kubepki-agentbench

say "building kubepki (release, target dir $TARGET)"
CARGO_TARGET_DIR=$TARGET cargo build --release --locked -q
KP=$TARGET/release/kubepki
BIN=
if [[ ${SKIP_API:-0} != 1 ]]; then
  BIN=$(/work/shared/tools/k8s-test-binaries | tail -1)
  command -v etcd >/dev/null || { apt-get install -y -qq etcd-server etcd-client >/dev/null; }
fi

{
  echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc:     $(nproc)"
  echo "cpu:       $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "memory:    $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel:    $(uname -sr)"
  echo "kubepki:   $($KP --version) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); files changed in src/ crates/ since: $(git -C "$ROOT" status --porcelain -- src crates Cargo.toml Cargo.lock 2>/dev/null | wc -l))"
  [[ -n $BIN ]] && echo "k8s:       $("$BIN/kube-apiserver" --version), etcd $(etcd --version | head -1 | awk '{print $3}')"
  echo "knobs:     SCRAPES=$SCRAPES BIG=$BIG BUNDLE_CERTS=$BUNDLE_CERTS LEAK_SCRAPES=$LEAK_SCRAPES BIG_LEAK_SCRAPES=$BIG_LEAK_SCRAPES API_SECONDS=$API_SECONDS"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RES/agent-machine.txt"

# --- the node's files ------------------------------------------------------------------------
say "PKI: kubepki init, a kubelet pki dir, a CA bundle of $BUNDLE_CERTS, $BIG more certificates"
API_PORT=$(free_port $IP)
CP=$W/cp
"$KP" init --cert-dir "$CP/pki" --kubeconfig-dir "$CP" --node-name bench-cp \
  --apiserver-advertise-address $IP --control-plane-endpoint "$IP:$API_PORT" \
  --apiserver-bind-port "$API_PORT" >/dev/null
mkdir -p "$CP/manifests"

kubelet_pki() { # DIR NODE DAYS_CLIENT DAYS_SERVING: what a kubelet keeps in /var/lib/kubelet/pki
  local d=$1 node=$2 stamp
  mkdir -p "$d"
  stamp=$(date -u +%Y-%m-%d-%H-%M-%S)
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/client.key" \
    -subj "/O=system:nodes/CN=system:node:$node" -out "$d/client.csr" 2>/dev/null
  openssl x509 -req -in "$d/client.csr" -CA "$CP/pki/ca.crt" -CAkey "$CP/pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days "$3" -out "$d/client.crt" 2>/dev/null
  cat "$d/client.crt" "$d/client.key" >"$d/kubelet-client-$stamp.pem"
  rm -f "$d/client.crt" "$d/client.key" "$d/client.csr"
  ln -sfn "kubelet-client-$stamp.pem" "$d/kubelet-client-current.pem"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/kubelet.key" \
    -subj "/CN=$node@$(date +%s)" -days "$4" -out "$d/kubelet.crt" 2>/dev/null
}
kubelet_pki "$CP/kubelet-pki" bench-cp 365 365

certs() { # N PREFIX OUTDIR: N self-signed CA certificates, one file each, varied lifetimes
  local n=$1 prefix=$2 out=$3
  mkdir -p "$out"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/bundle.key" 2>/dev/null
  seq 1 "$n" | xargs -P "$(nproc)" -I{} sh -c \
    "openssl req -x509 -key '$W/bundle.key' -subj '/C=FR/O=Bench Org/OU=bench/CN=$prefix-{}' \
       -days \$((30 + {} * 7 % 3600)) -addext basicConstraints=critical,CA:TRUE \
       -out '$out/$prefix-{}.crt' 2>/dev/null"
}
certs "$BUNDLE_CERTS" bench-trust "$W/small"
cat "$W/small"/*.crt >"$W/ca-bundle.crt"
certs "$BIG" bench-big "$W/bigdir"
cat "$W/bigdir"/*.crt >"$W/big-bundle.crt"

# --- 1. scrapes -------------------------------------------------------------------------------
cat >"$W/scrape.py" <<'PY'
"""Scrapes an agent's /metrics N times over one keep-alive connection (as Prometheus does);
optionally touches every watched file before each scrape. Prints one JSON object."""
import http.client, json, os, re, sys, time

host, port, pid, n, mode, label, touch_list = sys.argv[1:8]
port, n = int(port), int(n)
tck = os.sysconf("SC_CLK_TCK")
files = [l for l in open(touch_list).read().split("\n") if l] if mode == "touched" else []

def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck

def status(key):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith(key + ":"):
            return int(l.split()[1]) / 1024

conn = http.client.HTTPConnection(host, port, timeout=30)
def scrape():
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, r.status
    return body.decode()

def metric(body, name):
    m = re.search(r"^" + name + r"(?:\{[^}]*\})? (\S+)$", body, re.M)
    return float(m.group(1)) if m else None

for _ in range(20):   # warm-up: the first scan, the connection, the allocator
    scrape()
body = scrape()
reads0 = metric(body, "kubepki_agent_file_reads_total")
cpu0 = cpu()
lat = []
for _ in range(n):
    if files:
        for f in files:
            os.utime(f)
    t0 = time.perf_counter()
    b = scrape()
    lat.append(time.perf_counter() - t0)
cpu1 = cpu()
body = scrape()
reads1 = metric(body, "kubepki_agent_file_reads_total")
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(round(p / 100 * len(lat))) - 1)] * 1000
certs = len(re.findall(r"^x509_cert_not_after\{", body, re.M))
filepaths = len(set(re.findall(r'^x509_cert_not_after\{.*?filepath="([^"]*)"', body, re.M)))
print(json.dumps({
    "config": label, "mode": mode, "scrapes": n, "certificates": certs,
    "files_with_certificates": filepaths,
    "read_errors": metric(body, "x509_read_errors"),
    "series": sum(1 for l in body.split("\n") if l and not l.startswith("#")),
    "body_bytes": len(b),
    "p50_ms": round(pct(50), 3), "p90_ms": round(pct(90), 3), "p99_ms": round(pct(99), 3),
    "max_ms": round(lat[-1] * 1000, 3), "mean_ms": round(sum(lat) / n * 1000, 3),
    "cpu_ms_per_scrape": round((cpu1 - cpu0) / n * 1000, 3),
    "file_reads_per_scrape": round((reads1 - reads0) / n, 2) if reads0 is not None else None,
    "rss_mib": round(status("VmRSS"), 1), "hwm_mib": round(status("VmHWM"), 1),
}))
PY

# Every regular file an agent watching DIRS... reads (symlinks resolved; keys too, harmless).
touch_list() { find "$@" \( -type f -o -type l \) -print0 | xargs -0 realpath | sort -u; }

SCRAPE_JSON=$RES/agent-scrape.json
: >"$W/scrape.jsonl"
MPORT=$(free_port $AIP)
start_agent_noapi() { # LOG ARGS...: an agent serving metrics only
  local log=$1
  shift
  "$KP" agent --no-api --node-name bench-cp --cert-dir "$CP/pki" --kubeconfig-dir "$CP" \
    --kubelet-pki-dir "$CP/kubelet-pki" --metrics-bind-address "$AIP:$MPORT" \
    --manifests-dir "$CP/manifests" "$@" >"$W/$log.log" 2>&1 &
  AGENT=$!
  PIDS+=("$AGENT")
  wait_until 30 "agent /readyz" bash -c "[[ \$(curl -s --max-time 2 http://$AIP:$MPORT/readyz) == ok ]]"
  START_RSS=$(proc_rss "$AGENT")
}
scrapes() { # LABEL MODE N TOUCHLIST
  python3 "$W/scrape.py" "$AIP" "$MPORT" "$AGENT" "$3" "$2" "$1" "$4" |
    python3 -c "import json,sys; v=json.load(sys.stdin); v['rss_at_start_mib']=float('$START_RSS'); print(json.dumps(v))" |
    tee -a "$W/scrape.jsonl"
}

for cfg in node bundle dir; do
  case $cfg in
    node)   label="node ($BUNDLE_CERTS-cert CA bundle)"; extra=(--watch-file "$W/ca-bundle.crt"); watched=("$W/ca-bundle.crt") ;;
    bundle) label="node + $BIG-cert bundle (1 file)"; extra=(--watch-file "$W/ca-bundle.crt" --watch-file "$W/big-bundle.crt"); watched=("$W/ca-bundle.crt" "$W/big-bundle.crt") ;;
    dir)    label="node + $BIG files (--watch-dir)"; extra=(--watch-file "$W/ca-bundle.crt" --watch-dir "$W/bigdir"); watched=("$W/ca-bundle.crt" "$W/bigdir") ;;
  esac
  say "scrapes: $label"
  touch_list "$CP/pki" "$CP"/*.conf "$CP/kubelet-pki" "${watched[@]}" >"$W/touch-$cfg.txt"
  start_agent_noapi "agent-$cfg" "${extra[@]}"
  scrapes "$label" steady "$SCRAPES" "$W/touch-$cfg.txt"
  scrapes "$label" touched "$SCRAPES" "$W/touch-$cfg.txt"
  if [[ $cfg == node && $LEAK_SCRAPES -gt 0 ]]; then
    scrapes "$label, $LEAK_SCRAPES more" touched "$LEAK_SCRAPES" "$W/touch-$cfg.txt"
  fi
  if [[ $cfg == bundle && $BIG_LEAK_SCRAPES -gt 0 ]]; then
    scrapes "$label, $BIG_LEAK_SCRAPES more" touched "$BIG_LEAK_SCRAPES" "$W/touch-$cfg.txt"
  fi
  stop "$AGENT"
done
python3 - "$W/scrape.jsonl" "$SCRAPE_JSON" "$RES/agent-scrape.txt" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump(runs, open(sys.argv[2], "w"), indent=2)
with open(sys.argv[3], "w") as out:
    h = f"{'configuration':38} {'mode':8} {'certs':>5} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'CPU/scr':>8} {'reads/scr':>9} {'RSS':>6} {'HWM':>6} {'start':>6} {'bytes':>7}"
    print(h, file=out)
    for r in runs:
        print(f"{r['config'][:38]:38} {r['mode']:8} {r['certificates']:5} {r['scrapes']:5} "
              f"{r['p50_ms']:6.2f}m {r['p90_ms']:6.2f}m {r['p99_ms']:6.2f}m {r['max_ms']:6.1f}m "
              f"{r['cpu_ms_per_scrape']:7.3f}m {r['file_reads_per_scrape']:9} {r['rss_mib']:6} {r['hwm_mib']:6} "
              f"{r['rss_at_start_mib']:6} {r['body_bytes']:7}", file=out)
    print("(ms; CPU/scr = the agent's utime+stime per scrape; RSS/HWM MiB after the run, start = VmRSS when ready)", file=out)
print(open(sys.argv[3]).read())
PY

[[ ${SKIP_API:-0} == 1 ]] && exit 0

# --- 2. API requests ---------------------------------------------------------------------------
say "etcd + kube-apiserver on $IP (audit log: every request, metadata only)"
P=$CP/pki
cat >"$W/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
EOF
ETCD_PORT=$(free_port $IP)
ETCD_PEER=$(free_port $IP)
kubeadm_etcd_args
etcd "${ETCD_ARGS[@]}" >"$W/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
"$BIN/kube-apiserver" --advertise-address=$IP --bind-address=$IP --secure-port="$API_PORT" \
  --insecure-port=0 --authorization-mode=Node,RBAC --client-ca-file="$P/ca.crt" \
  --enable-admission-plugins=NodeRestriction --etcd-cafile="$P/etcd/ca.crt" \
  --etcd-certfile="$P/apiserver-etcd-client.crt" --etcd-keyfile="$P/apiserver-etcd-client.key" \
  --etcd-servers="https://$IP:$ETCD_PORT" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key" \
  --requestheader-allowed-names=front-proxy-client --requestheader-client-ca-file="$P/front-proxy-ca.crt" \
  --requestheader-extra-headers-prefix=X-Remote-Extra- --requestheader-group-headers=X-Remote-Group \
  --requestheader-username-headers=X-Remote-User \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=10.96.0.0/12 --tls-cert-file="$P/apiserver.crt" \
  --tls-private-key-file="$P/apiserver.key" --cert-dir="$W/apiserver-certs" \
  --audit-policy-file="$W/audit-policy.yaml" --audit-log-path="$W/audit.log" \
  >"$W/kube-apiserver.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
wait_until 120 "kube-apiserver /readyz" \
  bash -c "[[ \$(curl -sk --max-time 3 https://$IP:$API_PORT/readyz) == ok ]]"

# The setup's own requests go as kubernetes-super-admin, so that every kubernetes-admin
# (admin.conf) request in the audit log is an agent's.
python3 - "$CP/super-admin.conf" "$W/su" <<'PY'
import base64, re, sys
t = open(sys.argv[1]).read()
for k, ext in (("client-certificate-data", "crt"), ("client-key-data", "key")):
    v = re.search(k + r": *(\S+)", t).group(1)
    open(f"{sys.argv[2]}.{ext}", "wb").write(base64.b64decode(v))
PY
kapi() { # PATH [curl args...]
  curl -sS --fail --max-time 10 --cacert "$P/ca.crt" --cert "$W/su.crt" --key "$W/su.key" \
    -H 'Content-Type: application/json' "https://$IP:$API_PORT$1" "${@:2}"
}
kapi /api/v1/namespaces -X POST -d '{"metadata":{"name":"kubepki-system"}}' >/dev/null
for n in bench-cp bench-worker bench-expiring; do
  kapi /api/v1/nodes -X POST -d "{\"metadata\":{\"name\":\"$n\"}}" >/dev/null
done
kapi /apis/rbac.authorization.k8s.io/v1/clusterrolebindings -X POST -d '{
  "metadata":{"name":"kubeadm:cluster-admins"},
  "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
  "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"kubeadm:cluster-admins"}]}' >/dev/null

# A worker: no CA key, only what a joined node has; and one whose kubelet certificates expire soon.
mkdir -p "$W/worker/pki" "$W/expiring/pki"
cp "$CP/pki/ca.crt" "$W/worker/pki/"
cp "$CP/pki/ca.crt" "$W/expiring/pki/"
cp "$CP/kubelet.conf" "$W/worker/"
cp "$CP/kubelet.conf" "$W/expiring/"
kubelet_pki "$W/worker/kubelet-pki" bench-worker 365 365
kubelet_pki "$W/expiring/kubelet-pki" bench-expiring 10 3

cat >"$W/apicount.py" <<'PY'
"""Snapshots for the API request counts: `metrics FILE` (apiserver_request_total of the agent's
resources), `audit LOG FROM_LINE` (kubernetes-admin requests after that line), `agent FILE`."""
import collections, json, re, sys

RES = ("nodes", "configmaps", "leases", "events")
def apiserver(path):
    out = collections.Counter()
    for l in open(path):
        if not l.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', l.split("}")[0]))
        if labels.get("resource") in RES:
            out[f"{labels['verb']} {labels['resource']} {labels['code']}"] += int(float(l.split()[-1]))
    return out

if sys.argv[1] == "diff":
    a, b = apiserver(sys.argv[2]), apiserver(sys.argv[3])
    print(json.dumps({k: b[k] - a.get(k, 0) for k in sorted(b) if b[k] - a.get(k, 0)}))
elif sys.argv[1] == "audit":
    out, agents = collections.Counter(), collections.Counter()
    for i, l in enumerate(open(sys.argv[2])):
        if i < int(sys.argv[3]):
            continue
        e = json.loads(l)
        if e.get("stage") != "ResponseComplete" or e["user"]["username"] != "kubernetes-admin":
            continue
        o = e.get("objectRef", {})
        out[f"{e['verb']} {o.get('resource', e.get('requestURI'))} {e['responseStatus']['code']}"] += 1
        agents[e.get("userAgent", "")] += 1
    print(json.dumps({"requests": dict(sorted(out.items())), "user_agents": dict(agents)}))
elif sys.argv[1] == "agent":
    body = open(sys.argv[2]).read()
    out = {m[0]: int(float(m[1])) for m in re.findall(
        r'^kubepki_agent_api_requests_total\{resource="(\w+)"\} (\S+)$', body, re.M)}
    print(json.dumps(out))
PY

: >"$W/api.jsonl"
api_agent() { # LABEL SECONDS NODE DIR ARGS...: one agent, its requests over SECONDS
  local label=$1 secs=$2 node=$3 dir=$4 port lines0 t0 t1 cpu0
  shift 4
  port=$(free_port $AIP)
  sleep 1
  kapi /metrics >"$W/m0.txt"
  lines0=$(wc -l <"$W/audit.log")
  "$KP" agent --node-name "$node" --cert-dir "$dir/pki" --kubeconfig-dir "$dir" \
    --kubelet-pki-dir "$dir/kubelet-pki" --metrics-bind-address "$AIP:$port" \
    --kubeconfig "$CP/admin.conf" --check-interval 1s --restart-static-pods false \
    --manifests-dir "$dir/manifests" "$@" >>"$W/api-$node.log" 2>&1 &
  AGENT=$!
  PIDS+=("$AGENT")
  t0=$(date +%s.%N)
  sleep "$secs"
  curl -s --max-time 5 "http://$AIP:$port/metrics" >"$W/agent-metrics.txt"
  t1=$(date +%s.%N)
  local cpu rss hwm
  cpu=$(proc_cpu "$AGENT") rss=$(proc_rss "$AGENT") hwm=$(proc_hwm "$AGENT")
  stop "$AGENT"
  sleep 1
  kapi /metrics >"$W/m1.txt"
  python3 - "$label" "$node" "$t0" "$t1" "$cpu" "$rss" "$hwm" \
    "$(python3 "$W/apicount.py" agent "$W/agent-metrics.txt")" \
    "$(python3 "$W/apicount.py" audit "$W/audit.log" "$lines0")" \
    "$(python3 "$W/apicount.py" diff "$W/m0.txt" "$W/m1.txt")" <<'PY' | tee -a "$W/api.jsonl"
import json, sys
label, node, t0, t1, cpu, rss, hwm, agent, audit, server = sys.argv[1:11]
audit = json.loads(audit)
print(json.dumps({
    "agent": label, "node": node, "seconds": round(float(t1) - float(t0), 1),
    "agent_cpu_s": float(cpu), "rss_mib": float(rss), "hwm_mib": float(hwm),
    "kubepki_agent_api_requests_total": json.loads(agent),
    "audit_kubernetes_admin": audit["requests"], "audit_user_agents": audit["user_agents"],
    "apiserver_request_total_delta": json.loads(server),
}))
PY
}

say "(a) control-plane agent, renewal on, nothing due: ${API_SECONDS}s at --check-interval 1s"
api_agent "control plane, --renew-before 720h" "$API_SECONDS" bench-cp "$CP" \
  --watch-file "$W/ca-bundle.crt" --renew-before 720h
say "(a') control-plane agent, renewal off: 15s"
api_agent "control plane, renewal off" 15 bench-cp "$CP" --watch-file "$W/ca-bundle.crt"
say "(b) worker agent (no CA key), same flags: ${API_SECONDS}s"
api_agent "worker, --renew-before 720h (ignored: no CA key)" "$API_SECONDS" bench-worker "$W/worker" \
  --renew-before 720h
say "(c) worker with kubelet certificates expiring in 10 d and 3 d: 10 s, then a restart, 5 s"
api_agent "worker, certificates expiring in 10 d and 3 d" 10 bench-expiring "$W/expiring" --renew-before 720h
api_agent "the same worker after an agent restart" 5 bench-expiring "$W/expiring" --renew-before 720h
kapi /apis/events.k8s.io/v1/events >"$W/events.json"
NOTICES=$(grep -c 'INFO.* event ' "$W/api-bench-expiring.log" || true)
stop "$API_PID"
stop "$ETCD_PID"

python3 - "$W/api.jsonl" "$W/events.json" "$RES/agent-api.json" "$RES/agent-api.txt" "$API_SECONDS" "$NOTICES" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
events = [e for e in json.load(open(sys.argv[2]))["items"] if e.get("reportingController") == "kubepki.io/agent"]
secs = int(sys.argv[5])
cp, worker = runs[0], runs[2]
per_check = lambda r, checks: sum(r["kubepki_agent_api_requests_total"].values()) / checks
# The control-plane agent reads its Node every check: that count is its number of checks.
cp_checks = cp["kubepki_agent_api_requests_total"].get("nodes", secs)
cp_hour = sum(cp["kubepki_agent_api_requests_total"].values()) * 60 / cp_checks
worker_hour = sum(worker["kubepki_agent_api_requests_total"].values())
est = {
    "checks_in_control_plane_run": cp_checks,
    "control_plane_agent_requests_per_hour_at_1m": round(cp_hour, 1),
    "worker_agent_requests_per_hour_at_1m": worker_hour,
    "worker_note": "a worker reads its Node once at start, then nothing: the hour's count is its start-up",
    "cluster": {"control_plane_nodes": 3, "workers": 4997},
    "cluster_requests_per_s_steady": round(3 * cp_hour / 3600, 3),
    "cluster_requests_per_s_if_every_worker_restarted_each_hour": round((3 * cp_hour + 4997 * worker_hour) / 3600, 3),
    "kubelets_requests_per_s": {"lease_renewals_every_10s": 500, "node_status_every_10s_pre_lease": 500,
                                "node_status_every_5m_unchanged": round(5000 / 300, 1)},
    "notices_logged_by_the_expiring_worker_agents": int(sys.argv[6]),
    "event_objects_in_cluster": len(events),
    "events_in_cluster": [{"node": e["regarding"]["name"], "reason": e["reason"], "note": e.get("note"),
                           "series": e.get("series")} for e in events],
}
json.dump({"runs": runs, "estimate": est}, open(sys.argv[3], "w"), indent=2)
with open(sys.argv[4], "w") as out:
    for r in runs:
        print(f"{r['agent']} ({r['node']}, {r['seconds']} s): agent CPU {r['agent_cpu_s']} s, RSS {r['rss_mib']} MiB (peak {r['hwm_mib']})", file=out)
        print(f"  kubepki_agent_api_requests_total: {r['kubepki_agent_api_requests_total']}", file=out)
        print(f"  audit log, user kubernetes-admin:  {r['audit_kubernetes_admin']}  user agents {r['audit_user_agents']}", file=out)
        print(f"  apiserver_request_total delta:     {r['apiserver_request_total_delta']}", file=out)
    print(json.dumps(est, indent=2), file=out)
print(open(sys.argv[4]).read())
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RES/agent-machine.txt"
if [[ ${KEEP:-0} == 1 ]]; then echo "logs: $W"; fi
