#!/usr/bin/env bash
# The peer of `kubepki init`: the same PKI written with the openssl CLI, one command at a time,
# as an administrator's shell script would do it.
#
# Usage: bench/openssl-init.sh RSA-2048|ECDSA-P256 OUTDIR
# Writes OUTDIR/pki/{ca,front-proxy-ca,etcd/ca}.{crt,key}, the 7 leaf certs+keys, sa.key/sa.pub,
# and OUTDIR/{admin,super-admin,controller-manager,scheduler,kubelet}.conf with embedded certs:
# the same files `kubepki init --cert-dir OUTDIR/pki --kubeconfig-dir OUTDIR --node-name vm
# --apiserver-advertise-address 192.0.2.2` writes (SPEC section 1).
#
# Same content, in practice: keys in kubeadm's encodings (PKCS#1 "RSA PRIVATE KEY" / SEC1
# "EC PRIVATE KEY"), random serials, CN/O/key usages/EKUs/SANs of SPEC section 1, CAs 3650 days,
# leaves 365 days. Differences (all make this script's job slightly lighter, none heavier):
# notBefore is not backdated by 5 minutes (openssl req cannot), openssl adds a subjectKeyIdentifier
# to leaves (kubeadm does not), nothing is checked beforehand, and nothing is fsynced.
set -euo pipefail

ALG=${1:?usage: $0 RSA-2048|ECDSA-P256 OUTDIR}
OUT=${2:?usage: $0 RSA-2048|ECDSA-P256 OUTDIR}
NODE=vm
ADVERTISE=192.0.2.2
SERVICE_IP=10.96.0.1
DNS_DOMAIN=cluster.local
SERVER=https://$ADVERTISE:6443
CA_DAYS=3650
DAYS=365

PKI=$OUT/pki
umask 077                      # keys and kubeconfigs 0600; certs are chmod'ed 0644 at the end
mkdir -p "$PKI/etcd"
chmod 755 "$OUT" "$PKI" "$PKI/etcd"

# No subject prompt, no default extension section: each certificate gets only what -addext says.
CNF=$OUT/.openssl-bench.cnf
printf '[req]\ndistinguished_name=dn\nprompt=no\n[dn]\n' >"$CNF"

genkey() { # FILE
  case $ALG in
    RSA-2048) openssl genrsa -traditional -out "$1" 2048 2>/dev/null ;;
    ECDSA-P256) openssl ecparam -name prime256v1 -genkey -noout -out "$1" ;;
    *) echo "unknown algorithm $ALG" >&2; exit 2 ;;
  esac
}

LEAF_KU='keyUsage=critical,digitalSignature,keyEncipherment'

ca() { # BASE CN
  genkey "$PKI/$1.key"
  openssl req -x509 -new -config "$CNF" -key "$PKI/$1.key" -subj "/CN=$2" -days $CA_DAYS \
    -addext 'basicConstraints=critical,CA:TRUE' \
    -addext 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign' \
    -out "$PKI/$1.crt"
}

leaf() { # CA_BASE OUT_BASE SUBJECT EKU [SAN]
  local ca=$1 out=$2 subj=$3 eku=$4 san=${5:-}
  genkey "$out.key"
  openssl req -x509 -new -config "$CNF" -key "$out.key" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -subj "$subj" -days $DAYS -addext "$LEAF_KU" -addext "extendedKeyUsage=$eku" \
    ${san:+-addext "subjectAltName=$san"} -out "$out.crt"
}

ca ca kubernetes
ca front-proxy-ca front-proxy-ca
ca etcd/ca etcd-ca

leaf ca "$PKI/apiserver" /CN=kube-apiserver serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DNS_DOMAIN,DNS:$NODE,IP:$SERVICE_IP,IP:$ADVERTISE"
leaf ca "$PKI/apiserver-kubelet-client" '/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client' clientAuth
leaf etcd/ca "$PKI/apiserver-etcd-client" /CN=kube-apiserver-etcd-client clientAuth
leaf front-proxy-ca "$PKI/front-proxy-client" /CN=front-proxy-client clientAuth
ETCD_SAN="DNS:localhost,DNS:$NODE,IP:$ADVERTISE,IP:127.0.0.1,IP:::1"
leaf etcd/ca "$PKI/etcd/server" "/CN=$NODE" serverAuth,clientAuth "$ETCD_SAN"
leaf etcd/ca "$PKI/etcd/peer" "/CN=$NODE" serverAuth,clientAuth "$ETCD_SAN"
leaf etcd/ca "$PKI/etcd/healthcheck-client" /CN=kube-etcd-healthcheck-client clientAuth

genkey "$PKI/sa.key"
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

CA_DATA=$(base64 -w0 <"$PKI/ca.crt")
kubeconfig() { # FILE CN [O]
  local file=$1 cn=$2 o=${3:-} tmp=$OUT/.kc-$1
  leaf ca "$tmp" "${o:+/O=$o}/CN=$cn" clientAuth
  cat >"$OUT/$file" <<YAML
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: $CA_DATA
    server: $SERVER
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: $cn
  name: $cn@kubernetes
current-context: $cn@kubernetes
kind: Config
preferences: {}
users:
- name: $cn
  user:
    client-certificate-data: $(base64 -w0 <"$tmp.crt")
    client-key-data: $(base64 -w0 <"$tmp.key")
YAML
  rm -f "$tmp.crt" "$tmp.key"
}

kubeconfig admin.conf kubernetes-admin kubeadm:cluster-admins
kubeconfig super-admin.conf kubernetes-super-admin system:masters
kubeconfig controller-manager.conf system:kube-controller-manager
kubeconfig scheduler.conf system:kube-scheduler
kubeconfig kubelet.conf "system:node:$NODE" system:nodes

rm -f "$CNF"
chmod 644 "$PKI"/*.crt "$PKI"/etcd/*.crt "$PKI/sa.pub"
