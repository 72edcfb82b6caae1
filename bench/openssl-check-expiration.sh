#!/usr/bin/env bash
# The peer of `kubepki certs check-expiration`: the same report made with the openssl CLI.
#
# Usage: bench/openssl-check-expiration.sh DIR     (certs in DIR/pki, kubeconfigs in DIR)
# Reads the 7 leaf certificates, the client certificates of the 4 kubeconfigs kubeadm reports
# (admin, controller-manager, scheduler, super-admin) and the 3 CAs, extracts notAfter, and prints
# kubeadm's two tables (SPEC section 3): date, residual time (HumanDuration), CA, externally
# managed (CA key absent), !MISSING! rows. Column widths are computed like Go's tabwriter.
set -euo pipefail

DIR=${1:?usage: $0 DIR}
PKI=$DIR/pki
NOW=$(date -u +%s)

human() { # SECONDS -> apimachinery HumanDuration
  local s=$1
  if ((s < 0)); then echo '<invalid>'
  elif ((s < 120)); then echo "${s}s"
  elif ((s < 600)); then echo "$((s / 60))m$((s % 60))s"
  elif ((s < 3 * 3600)); then echo "$((s / 60))m"
  elif ((s < 8 * 3600)); then echo "$((s / 3600))h$((s % 3600 / 60))m"
  elif ((s < 48 * 3600)); then echo "$((s / 3600))h"
  elif ((s < 8 * 86400)); then echo "$((s / 86400))d$((s % 86400 / 3600))h"
  elif ((s < 2 * 365 * 86400)); then echo "$((s / 86400))d"
  elif ((s < 8 * 365 * 86400)); then
    local y=$((s / 86400 / 365)) d=$((s / 86400 % 365))
    if ((d == 0)); then echo "${y}y"; else echo "${y}y${d}d"; fi
  else echo "$((s / 86400 / 365))y"
  fi
}

# expiry PEMFILE|- -> sets EXP ("Jan 02, 2006 15:04 UTC") and RES (residual)
expiry() {
  local na epoch
  na=$(openssl x509 -noout -enddate -in "$1")
  na=${na#notAfter=}
  read -r epoch EXP < <(date -u -d "$na" '+%s %b %d, %Y %H:%M UTC')
  RES=$(human $((epoch - NOW)))
}

ext() { [[ -e $1 ]] && echo no || echo yes; }   # a CA without its key is externally managed

declare -a ROWS CAROWS
# name file(kind) ca
certs=(
  "admin.conf|kc:$DIR/admin.conf|ca"
  "apiserver|$PKI/apiserver.crt|ca"
  "apiserver-etcd-client|$PKI/apiserver-etcd-client.crt|etcd-ca"
  "apiserver-kubelet-client|$PKI/apiserver-kubelet-client.crt|ca"
  "controller-manager.conf|kc:$DIR/controller-manager.conf|ca"
  "etcd-healthcheck-client|$PKI/etcd/healthcheck-client.crt|etcd-ca"
  "etcd-peer|$PKI/etcd/peer.crt|etcd-ca"
  "etcd-server|$PKI/etcd/server.crt|etcd-ca"
  "front-proxy-client|$PKI/front-proxy-client.crt|front-proxy-ca"
  "scheduler.conf|kc:$DIR/scheduler.conf|ca"
  "super-admin.conf|kc:$DIR/super-admin.conf|ca"
)
declare -A CAKEY=([ca]=$PKI/ca.key [etcd-ca]=$PKI/etcd/ca.key [front-proxy-ca]=$PKI/front-proxy-ca.key)
declare -A CACRT=([ca]=$PKI/ca.crt [etcd-ca]=$PKI/etcd/ca.crt [front-proxy-ca]=$PKI/front-proxy-ca.crt)

for c in "${certs[@]}"; do
  IFS='|' read -r name file ca <<<"$c"
  if [[ $file == kc:* ]]; then
    file=${file#kc:}
    if [[ ! -e $file ]]; then ROWS+=("!MISSING! $name"$'\t\t\t\t'); continue; fi
    data=$(sed -n 's/^ *client-certificate-data: *//p' "$file")
    expiry <(base64 -d <<<"$data")
  else
    if [[ ! -e $file ]]; then ROWS+=("!MISSING! $name"$'\t\t\t\t'); continue; fi
    expiry "$file"
  fi
  ROWS+=("$name"$'\t'"$EXP"$'\t'"$RES"$'\t'"$ca"$'\t'"$(printf '%-8s' "$(ext "${CAKEY[$ca]}")")")
done
for ca in ca etcd-ca front-proxy-ca; do
  if [[ ! -e ${CACRT[$ca]} ]]; then CAROWS+=("!MISSING! $ca"$'\t\t\t'); continue; fi
  expiry "${CACRT[$ca]}"
  CAROWS+=("$ca"$'\t'"$EXP"$'\t'"$RES"$'\t'"$(printf '%-8s' "$(ext "${CAKEY[$ca]}")")")
done

# tabwriter(minwidth 10, tabwidth 4, padding 3, ' ', 0): a cell terminated by a tab is padded to
# max(width of its column)+3; the last cell of a line is printed as is.
table() {
  local -a lines=("$@") w=() cells
  local l i out
  for l in "${lines[@]}"; do
    IFS=$'\x1f' read -r -a cells <<<"${l//$'\t'/$'\x1f'}"$'\x1f'"x"
    for ((i = 0; i < ${#cells[@]} - 2; i++)); do
      ((${#cells[i]} + 3 > ${w[i]:-10})) && w[i]=$((${#cells[i]} + 3))
    done
  done
  for l in "${lines[@]}"; do
    IFS=$'\x1f' read -r -a cells <<<"${l//$'\t'/$'\x1f'}"$'\x1f'"x"
    out=
    for ((i = 0; i < ${#cells[@]} - 2; i++)); do out+=$(printf "%-${w[i]}s" "${cells[i]}"); done
    printf '%s%s\n' "$out" "${cells[${#cells[@]} - 2]}"
  done
}
table "CERTIFICATE"$'\t'"EXPIRES"$'\t'"RESIDUAL TIME"$'\t'"CERTIFICATE AUTHORITY"$'\t'"EXTERNALLY MANAGED" "${ROWS[@]}"
echo
table "CERTIFICATE AUTHORITY"$'\t'"EXPIRES"$'\t'"RESIDUAL TIME"$'\t'"EXTERNALLY MANAGED" "${CAROWS[@]}"
