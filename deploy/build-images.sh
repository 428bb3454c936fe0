#!/usr/bin/env bash
# Builds the demo images from what this repository builds, with no registry:
#   clusterfunk:local  - the release binary and the shared libraries it links
#   clusterfunk-prometheus:local - Debian's prometheus binary (if installed)
# Each image is a root filesystem assembled here and built FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
out=deploy/.build
rm -rf "$out"
mkdir -p "$out"

# assemble DIR BINARY...: copies binaries and every library they load.
assemble() {
  local root=$1; shift
  mkdir -p "$root/bin" "$root/tmp" "$root/data" "$root/etc"
  for bin in "$@"; do
    cp "$bin" "$root/bin/"
    ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
      cp --parents -L "$lib" "$root/"
    done
  done
  echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
  chmod 1777 "$root/tmp"
}

assemble "$out/clusterfunk" target/release/clusterfunk
cat > "$out/clusterfunk/Dockerfile" <<'DOCKER'
FROM scratch
COPY . /
ENTRYPOINT ["/bin/clusterfunk"]
CMD ["agent"]
DOCKER
docker build -q -t clusterfunk:local "$out/clusterfunk"

if command -v prometheus >/dev/null 2>&1; then
  assemble "$out/prometheus" "$(command -v prometheus)"
  cp deploy/prometheus.yml "$out/prometheus/etc/prometheus.yml"
  cat > "$out/prometheus/Dockerfile" <<'DOCKER'
FROM scratch
COPY . /
ENTRYPOINT ["/bin/prometheus", "--config.file=/etc/prometheus.yml", "--storage.tsdb.path=/data"]
DOCKER
  docker build -q -t clusterfunk-prometheus:local "$out/prometheus"
else
  echo "prometheus not installed (apt-get install prometheus): skipping its image"
fi
echo "built: $(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^clusterfunk' | tr '\n' ' ')"
