#!/usr/bin/env bash
# kubepki benchmarks, side by side with the peers that do the same work:
#   - bench/openssl-init.sh / bench/openssl-check-expiration.sh (the openssl CLI, as a shell script)
#   - kubeadm v1.20.2 (optional: built by /work/shared/tools/k8s-test-binaries with
#     K8S_TEST_EXTRA=kubeadm; rows are skipped with a note when it is absent)
#
# Usage: bash bench/run.sh
# Knobs (environment): RUNS_INIT (20), RUNS_CHECK (200), WARMUP_INIT (3), WARMUP_CHECK (10),
#   RSA_KEYS (64, keys for the per-key micro-benchmark), KUBEADM (path to a kubeadm binary),
#   BENCH_DIR (scratch directory, default a fresh one under /tmp, removed at the end; must be on a
#   real disk), BENCH_RESULTS (where results go, default bench/results), BENCH_NOJITTER (see below).
# Writes bench/results/*.md|*.json|*.txt (hyperfine markdown/JSON exports, peak RSS, machine info,
# key-generation micro-benchmark) and prints a summary. This is not a test: nothing here fails
# on a slow result.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RES=${BENCH_RESULTS:-$ROOT/bench/results}
mkdir -p "$RES"
RUNS_INIT=${RUNS_INIT:-20}
RUNS_CHECK=${RUNS_CHECK:-200}
WARMUP_INIT=${WARMUP_INIT:-3}
WARMUP_CHECK=${WARMUP_CHECK:-10}
RSA_KEYS=${RSA_KEYS:-64}
KUBEADM=${KUBEADM:-/var/cache/kubepki-k8s/v1.20.2/bin/kubeadm}
if [[ -n ${BENCH_DIR:-} ]]; then
  W=$BENCH_DIR
  mkdir -p "$W"
else
  W=$(mktemp -d /tmp/kubepki-bench.XXXXXX)
  trap 'rm -rf "$W"' EXIT
fi

say() { printf '\n== %s\n' "$*"; }

# --- tools -------------------------------------------------------------------------------------
need_pkg() { # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}
need_pkg hyperfine hyperfine
[[ -x /usr/bin/time ]] || need_pkg /usr/bin/time time
need_pkg python3 python3

say "building kubepki (release)"
cargo build --release -q
KP=$ROOT/target/release/kubepki
# The key-generation micro-benchmark: same aws-lc-rs as kubepki, its own workspace.
CARGO_TARGET_DIR=$ROOT/target cargo build --release -q --manifest-path bench/keygen/Cargo.toml
KEYGEN=$ROOT/target/release/kubepki-bench-keygen

# Optional: kubepki built with AWS-LC's CPU-jitter entropy source compiled out (the change proposed
# in BENCHMARKS.md), to measure what that seeding costs. BENCH_NOJITTER=1 builds it (a few
# minutes the first time: aws-lc-sys is rebuilt) into NOJITTER_TARGET.
NOJ=
if [[ ${BENCH_NOJITTER:-0} == 1 ]]; then
  NOJITTER_TARGET=${NOJITTER_TARGET:-$ROOT/target/nojitter}
  say "building kubepki with AWS_LC_SYS_NO_JITTER_ENTROPY=1 into $NOJITTER_TARGET"
  CARGO_TARGET_DIR=$NOJITTER_TARGET AWS_LC_SYS_NO_JITTER_ENTROPY=1 cargo build --release -q
  NOJ=$NOJITTER_TARGET/release/kubepki
fi

HAVE_KUBEADM=0
if [[ -x $KUBEADM ]]; then
  HAVE_KUBEADM=1
else
  echo "NOTE: kubeadm not found at $KUBEADM: kubeadm rows are skipped." >&2
  echo "      Build it with: K8S_TEST_EXTRA=kubeadm /work/shared/tools/k8s-test-binaries" >&2
fi

# --- machine -----------------------------------------------------------------------------------
{
  echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc:     $(nproc)"
  echo "cpu:       $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "memory:    $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel:    $(uname -sr)"
  echo "disk:      $(df -T "$W" | awk 'NR==2 {print $2 " on " $1}')"
  echo "kubepki:   $($KP --version) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "rustc:     $(rustc --version)"
  echo "openssl:   $(openssl version)"
  echo "hyperfine: $(hyperfine --version)"
  ((HAVE_KUBEADM)) && echo "kubeadm:   $("$KUBEADM" version -o short)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RES/machine.txt"
cat "$RES/machine.txt"

INIT_ARGS="--node-name vm --apiserver-advertise-address 192.0.2.2"
kp_init() { # ALG DIR [BINARY]
  echo "${3:-$KP} init --cert-dir $2/pki --kubeconfig-dir $2 $INIT_ARGS --encryption-algorithm $1"
}

# kubeadm v1.20 takes the node name and the advertise address from a config file only.
kubeadm_cfg() { # FILE CERTDIR
  cat >"$1" <<YAML
apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 192.0.2.2
  bindPort: 6443
nodeRegistration:
  name: vm
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
clusterName: kubernetes
certificatesDir: $2
networking:
  serviceSubnet: 10.96.0.0/12
  dnsDomain: cluster.local
YAML
}

hf() { # NAME RUNS WARMUP hyperfine-args...
  local name=$1 runs=$2 warmup=$3
  shift 3
  hyperfine --style basic --warmup "$warmup" --runs "$runs" \
    --export-markdown "$RES/$name.md" --export-json "$RES/$name.json" "$@"
}

# --- init --------------------------------------------------------------------------------------
OUT=$W/init
for alg in RSA-2048 ECDSA-P256; do
  say "init $alg: kubepki vs openssl$( ((HAVE_KUBEADM)) && [[ $alg == RSA-2048 ]] && echo ' vs kubeadm')"
  cmds=(-n "kubepki init $alg" "$(kp_init "$alg" "$OUT")"
        -n "openssl-init.sh $alg" "bash $ROOT/bench/openssl-init.sh $alg $OUT")
  [[ -n $NOJ ]] && cmds+=(-n "kubepki init $alg (no jitter entropy)" "$(kp_init "$alg" "$OUT" "$NOJ")")
  if ((HAVE_KUBEADM)) && [[ $alg == RSA-2048 ]]; then   # kubeadm v1.20 has no ECDSA option
    kubeadm_cfg "$W/kubeadm-init.yaml" "$OUT/pki"
    cmds+=(-n "kubeadm v1.20.2 init phase certs all + kubeconfig all"
      "$KUBEADM init phase certs all --config $W/kubeadm-init.yaml && $KUBEADM init phase kubeconfig all --config $W/kubeadm-init.yaml --kubeconfig-dir $OUT")
  fi
  hf "init-$alg" "$RUNS_INIT" "$WARMUP_INIT" --prepare "rm -rf $OUT" "${cmds[@]}"
done
if ((HAVE_KUBEADM)); then
  say "kubeadm v1.20.2 phases separately (certs only / kubeconfigs only)"
  hf init-kubeadm-phases "$RUNS_INIT" "$WARMUP_INIT" \
    -n "kubeadm init phase certs all" --prepare "rm -rf $OUT" \
    "$KUBEADM init phase certs all --config $W/kubeadm-init.yaml" \
    -n "kubeadm init phase kubeconfig all" \
    --prepare "rm -f $OUT/*.conf; [ -e $OUT/pki/ca.key ] || $KUBEADM init phase certs ca --config $W/kubeadm-init.yaml >/dev/null 2>&1" \
    "$KUBEADM init phase kubeconfig all --config $W/kubeadm-init.yaml --kubeconfig-dir $OUT"
fi

# --- check-expiration --------------------------------------------------------------------------
# One PKI (written by kubepki, RSA-2048) laid out under a fake root, so that kubeadm, whose
# kubeconfig directory is hard-wired to /etc/kubernetes, can read it through --rootfs (a chroot).
CROOT=$W/root
rm -rf "$CROOT" && mkdir -p "$CROOT/etc/kubernetes"
$KP init --cert-dir "$CROOT/etc/kubernetes/pki" --kubeconfig-dir "$CROOT/etc/kubernetes" $INIT_ARGS >/dev/null
KDIR=$CROOT/etc/kubernetes
say "check-expiration: kubepki vs openssl$( ((HAVE_KUBEADM)) && [[ $EUID == 0 ]] && echo ' vs kubeadm')"
cmds=(-n "kubepki certs check-expiration" "$KP certs check-expiration --cert-dir $KDIR/pki --kubeconfig-dir $KDIR"
      -n "openssl-check-expiration.sh" "bash $ROOT/bench/openssl-check-expiration.sh $KDIR")
if ((HAVE_KUBEADM)); then
  if [[ $EUID == 0 ]]; then
    kubeadm_cfg "$CROOT/kubeadm.yaml" /etc/kubernetes/pki
    cmds+=(-n "kubeadm v1.20.2 certs check-expiration" "$KUBEADM certs check-expiration --rootfs $CROOT --config /kubeadm.yaml")
  else
    echo "NOTE: kubeadm check-expiration needs root (--rootfs chroots): skipped." >&2
  fi
fi
# -N: no intermediate shell, which matters at a few milliseconds.
hf check-expiration "$RUNS_CHECK" "$WARMUP_CHECK" -N "${cmds[@]}"
# Same output? (kubeadm v1.20 differs by design: no super-admin.conf row, blank CA column.)
if diff <($KP certs check-expiration --cert-dir "$KDIR/pki" --kubeconfig-dir "$KDIR") \
        <(bash "$ROOT/bench/openssl-check-expiration.sh" "$KDIR") >/dev/null; then
  echo "kubepki and openssl-check-expiration.sh print identical reports"
else
  echo "WARNING: kubepki and openssl-check-expiration.sh reports differ" >&2
fi

# --- key generation: the floor under RSA init ----------------------------------------------------
say "key generation (aws-lc-rs in-process; openssl CLI per process)"
"$KEYGEN" "$RSA_KEYS" 10 | tee "$RES/keygen.txt"
hf keygen-openssl 40 3 -N \
  -n "openssl genrsa 2048 (one process)" "openssl genrsa -traditional -out /dev/null 2048" \
  -n "openssl ecparam -genkey prime256v1 (one process)" "openssl ecparam -name prime256v1 -genkey -noout -out /dev/null"

# --- peak memory -------------------------------------------------------------------------------
say "peak RSS (max of 5 runs, /usr/bin/time -v)"
maxrss() { # label command...  (the command runs 5 times; prints the max "Maximum resident set size")
  local label=$1 m=0 r
  shift
  for _ in 1 2 3 4 5; do
    rm -rf "$OUT"
    r=$( (/usr/bin/time -v "$@" >/dev/null) 2>&1 | sed -n 's/.*Maximum resident set size (kbytes): //p')
    ((r > m)) && m=$r
  done
  printf '| %s | %s |\n' "$label" "$((m / 1024)).$(( (m % 1024) * 10 / 1024)) MiB"
}
{
  echo "| command | peak RSS (max of 5) |"
  echo "|---|---|"
  # shellcheck disable=SC2046
  maxrss "kubepki init RSA-2048" $(kp_init RSA-2048 "$OUT")
  # shellcheck disable=SC2046
  maxrss "kubepki init ECDSA-P256" $(kp_init ECDSA-P256 "$OUT")
  # shellcheck disable=SC2046
  [[ -n $NOJ ]] && maxrss "kubepki init ECDSA-P256 (no jitter entropy)" $(kp_init ECDSA-P256 "$OUT" "$NOJ")
  maxrss "kubepki certs check-expiration" $KP certs check-expiration --cert-dir "$KDIR/pki" --kubeconfig-dir "$KDIR"
  maxrss "openssl genrsa 2048 (largest single process of openssl-init.sh)" openssl genrsa -traditional -out /dev/null 2048
  if ((HAVE_KUBEADM)); then
    maxrss "kubeadm v1.20.2 init phase certs all" "$KUBEADM" init phase certs all --config "$W/kubeadm-init.yaml"
    if [[ $EUID == 0 ]]; then
      maxrss "kubeadm v1.20.2 certs check-expiration" "$KUBEADM" certs check-expiration --rootfs "$CROOT" --config /kubeadm.yaml
    fi
  fi
} | tee "$RES/peak-rss.md"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RES/machine.txt"

# --- summary -----------------------------------------------------------------------------------
say "summary"
python3 "$ROOT/bench/summary.py" "$RES" | tee "$RES/summary.md"
echo
echo "raw results: $RES"
