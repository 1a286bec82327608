#!/usr/bin/env bash
# Lays out the wsgate image's root filesystem in DEST from a built binary: the binary at
# /usr/local/bin/wsgate, the shared libraries it links (from `ldd`: libc, libm, libgcc_s and the
# loader), and the CA bundle (for Kubernetes API and backend TLS verification). Nothing else:
# no shell, no package manager. Used by the Dockerfile and by .ci/image, so both images have
# the same layout.
#   packaging/rootfs.sh target/release/wsgate /tmp/rootfs
set -euo pipefail
bin=${1:?usage: packaging/rootfs.sh BINARY DEST}
dest=${2:?usage: packaging/rootfs.sh BINARY DEST}
mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs" "$dest/tmp"
install -m 0755 "$bin" "$dest/usr/local/bin/wsgate"
# `ldd` prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  cp --parents -L "$lib" "$dest/"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$dest/etc/ssl/certs/ca-certificates.crt"
# The user the image runs as (numeric USER works without it; this names it for `ps` and logs).
printf 'root:x:0:0:root:/:/sbin/nologin\nwsgate:x:65532:65532:wsgate:/:/sbin/nologin\n' > "$dest/etc/passwd"
printf 'root:x:0:\nwsgate:x:65532:\n' > "$dest/etc/group"
chmod 1777 "$dest/tmp"
