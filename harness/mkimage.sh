#!/usr/bin/env bash
# mkimage.sh NAME ROOTFS_DIR OUT_TAR ENTRYPOINT_JSON [CMD_JSON]
# Writes a single-layer, uncompressed OCI image archive (no registry, no buildah needed) that
# `ctr -n k8s.io images import OUT_TAR` imports under NAME (via the io.containerd.image.name annotation).
# KH_IMAGE_USER=65532:65532 sets the user the image runs as.
# Example: mkimage.sh k8s.gcr.io/pause:3.2 /tmp/rootfs /tmp/pause.tar '["/pause"]'
set -euo pipefail
name=$1 rootfs=$2 out=$3 entrypoint=${4:-null} cmd=${5:-null}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/blobs/sha256"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$w/layer.tar" .
ld=$(sha256sum "$w/layer.tar" | cut -d' ' -f1); ls=$(stat -c %s "$w/layer.tar")
mv "$w/layer.tar" "$w/blobs/sha256/$ld"
printf '{"architecture":"amd64","os":"linux","config":{"User":"%s","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"Cmd":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"kubelet-harness mkimage.sh"}]}' \
  "${KH_IMAGE_USER:-}" "$entrypoint" "$cmd" "$ld" >"$w/config.json"
cd=$(sha256sum "$w/config.json" | cut -d' ' -f1); cs=$(stat -c %s "$w/config.json")
mv "$w/config.json" "$w/blobs/sha256/$cd"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$cd" "$cs" "$ld" "$ls" >"$w/manifest.json"
md=$(sha256sum "$w/manifest.json" | cut -d' ' -f1); ms=$(stat -c %s "$w/manifest.json")
mv "$w/manifest.json" "$w/blobs/sha256/$md"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$md" "$ms" "$name" "${name##*:}" >"$w/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$w/oci-layout"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$w" -cf "$out" oci-layout index.json blobs
