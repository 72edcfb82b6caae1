#!/usr/bin/env bash
# exec.sh CMD [ARGS...]: runs CMD inside the harness cluster's network namespace (where 10.251.0.1
# and the cluster's ports are), with KUBECONFIG=/etc/kubernetes/admin.conf and the v1.20.2 binaries
# first in PATH. `exec.sh kubectl ...` runs the harness's kubectl (see kh_kubectl in lib.sh).
#   sudo harness/exec.sh kubectl get nodes
#   sudo harness/exec.sh target/debug/kubepki certs renew all --restart-static-pods
set -euo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$H/lib.sh"
[[ -f $KH_RUN/env.sh ]] || { echo "exec.sh: the cluster is not up (run $H/up.sh)" >&2; exit 1; }
. "$KH_RUN/env.sh"
(( $# )) || { echo "usage: exec.sh CMD [ARGS...]" >&2; exit 2; }
if [[ $1 == kubectl ]]; then shift; set -- "$KUBECTL" --cache-dir="$KH_STATE/kube-cache" "$@"; fi
exec nsenter --net="$KH_NS" -- "$@"
