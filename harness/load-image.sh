#!/usr/bin/env bash
# load-image.sh NAME BINARY [SRC:DEST ...]: puts a FROM-scratch image NAME into the harness
# containerd (namespace k8s.io), e.g. for a DaemonSet with `imagePullPolicy: Never` (or
# IfNotPresent with a tag other than latest). BINARY goes to /usr/local/bin/ and is the entrypoint;
# if it is dynamically linked, the libraries ldd lists are copied too; SRC:DEST adds more files.
# NAME should have a registry part (kubepki.test/tool:dev): a bare "tool:dev" is stored as
# docker.io/library/tool:dev, the name the kubelet will look up.
#   load-image.sh kubepki.test/tool:dev path/to/tool
# KH_IMAGE_USER=UID:GID: the user the image runs as (mkimage.sh).
set -euo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$H/lib.sh"
name=${1:?usage: load-image.sh NAME BINARY [SRC:DEST ...]}; bin=${2:?binary}; shift 2
first=${name%%/*}
if [[ $name != */* ]]; then name=docker.io/library/$name
elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then name=docker.io/$name; fi
[[ $name == *:* && ${name##*:} != */* ]] || name=$name:latest
r=$(mktemp -d); trap 'rm -rf "$r" "$r.tar"' EXIT
mkdir -p "$r/usr/local/bin" "$r/tmp" "$r/etc"; chmod 1777 "$r/tmp"
cp "$bin" "$r/usr/local/bin/"
if ldd "$bin" >/dev/null 2>&1; then
  for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
    mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"
  done
fi
for f in "$@"; do mkdir -p "$r$(dirname "${f#*:}")"; cp -a "${f%%:*}" "$r${f#*:}"; done
"$H/mkimage.sh" "$name" "$r" "$r.tar" "[\"/usr/local/bin/$(basename "$bin")\"]"
ctr --timeout 30s images rm "$name" >/dev/null 2>&1 || true
ctr --timeout 300s images import "$r.tar" >/dev/null
echo "$name"
