#!/usr/bin/env bash
# Wall time of each `kubepki ca rotate` step on one node's PKI, without restarts or health waits
# (those belong to the components, not to kubepki): trust, switch, finish and rollback of `all`
# (ca, front-proxy-ca, etcd-ca, sa), on an RSA-2048 and an ECDSA-P256 PKI made by `kubepki init`.
# Each measured run starts from a fresh copy of the PKI in the phase before the step
# (hyperfine --prepare), so every run does the whole step: generate the new CAs (trust),
# re-issue the 13 leaves and kubeconfigs (switch), drop the old CAs (finish), each as one
# journaled transaction with its backup.
#
# Usage: bash bench/rotate.sh   Knobs: RUNS (20), WARMUP (2), BENCH_RESULTS (bench/results).
# This is not a test: nothing here fails on a slow result.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RES=${BENCH_RESULTS:-$ROOT/bench/results}
mkdir -p "$RES"
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-2}
W=$(mktemp -d /tmp/kubepki-bench-rotate.XXXXXX)
trap 'rm -rf "$W"' EXIT
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }; }

cargo build --release -q
KP=$ROOT/target/release/kubepki

for alg in RSA-2048 ECDSA-P256; do
  base=$W/$alg
  "$KP" init --cert-dir "$base/none/pki" --kubeconfig-dir "$base/none" --node-name n1 \
    --apiserver-advertise-address 10.0.0.1 --encryption-algorithm "$alg" >/dev/null
  # The PKI in each phase, made once by the steps before it.
  cp -a "$base/none" "$base/trust"
  "$KP" ca rotate trust all --cert-dir "$base/trust/pki" --kubeconfig-dir "$base/trust" >/dev/null
  cp -a "$base/trust" "$base/switch"
  "$KP" ca rotate switch all --cert-dir "$base/switch/pki" --kubeconfig-dir "$base/switch" >/dev/null
  for step in trust:none switch:trust finish:switch rollback:switch; do
    s=${step%%:*} from=${step##*:}
    run=$W/run
    hyperfine --style basic --warmup "$WARMUP" --runs "$RUNS" \
      --prepare "rm -rf $run && cp -a $base/$from $run" \
      --export-markdown "$RES/rotate-$s-$alg.md" --export-json "$RES/rotate-$s-$alg.json" \
      -n "kubepki ca rotate $s all ($alg)" \
      "$KP ca rotate $s all --cert-dir $run/pki --kubeconfig-dir $run --kubelet-dir $run/none" \
      >/dev/null
    python3 - "$RES/rotate-$s-$alg.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
ms = lambda s: f"{s*1000:.1f} ms"
print(f"| {r['command'].split(' --cert-dir')[0]} | {ms(r['mean'])} ± {ms(r['stddev'])} | {ms(r['median'])} | {ms(r['min'])} | {ms(r['max'])} | {ms(r['user']+r['system'])} |")
PY
  done
done
