#!/usr/bin/env bash
# kubepki-image.sh BINARY [NAME]: kubepki's container image built offline from a binary built
# here, with the layout of the Containerfile's image (the kubepki binary in /usr/local/bin as
# the entrypoint, the C libraries it links, a passwd entry for the non-root user 65532, which it
# runs as), imported into the harness containerd as NAME (default ghcr.io/kubepki/kubepki:0.1.0,
# the tag deploy/ names, so the manifests apply unchanged). Prints NAME.
#   sudo harness/kubepki-image.sh target/release/kubepki
set -euo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$H/lib.sh"
bin=${1:?usage: kubepki-image.sh BINARY [NAME]}
name=${2:-ghcr.io/kubepki/kubepki:0.1.0}
e=$(mktemp -d); trap 'rm -rf "$e"' EXIT
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$e/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$e/group"
# The binary under its own name: the entrypoint is /usr/local/bin/kubepki whatever BINARY is called.
cp "$bin" "$e/kubepki"
# As the Containerfile's build: no debug information (a debug build's is most of its size).
strip --strip-debug "$e/kubepki" 2>/dev/null || true
KH_IMAGE_USER=65532:65532 "$H/load-image.sh" "$name" "$e/kubepki" "$e/passwd:/etc/passwd" "$e/group:/etc/group"
