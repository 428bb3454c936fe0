#!/usr/bin/env bash
# Builds the demo images from what this repository builds, with no registry:
#   clusterfunk:local  (CF_IMAGE) - the clusterfunk and kv binaries and the shared
#                        libraries they link (/bin/clusterfunk, /bin/kv)
#   clusterfunk-prometheus:local - Debian's prometheus binary (if installed),
#                        with deploy/prometheus.yml and deploy/alerts.yml
# Each image is a root filesystem assembled here and built FROM scratch.
# The binaries are rebuilt only when a source is newer than them (or they
# are missing); CF_PROFILE=debug uses the debug build instead of release.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${CF_PROFILE:-release}
target=${CARGO_TARGET_DIR:-target}/$profile
bins=("$target/clusterfunk" "$target/examples/kv")

stale() {
  local bin
  for bin in "${bins[@]}"; do
    [ -x "$bin" ] || return 0
    if [ -n "$(find src examples proto build.rs Cargo.toml Cargo.lock -newer "$bin" -print -quit)" ]; then
      return 0
    fi
  done
  return 1
}

if stale; then
  flag=(--release)
  [ "$profile" = release ] || flag=()
  cargo build "${flag[@]}" --bin clusterfunk --example kv
else
  echo "reusing $profile binaries (newer than every source)"
fi

out=deploy/.build
rm -rf "$out"
mkdir -p "$out"
# The assembled file systems are only the build contexts: free the space.
trap 'rm -rf "$out"' EXIT

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

assemble "$out/clusterfunk" "${bins[@]}"
cat > "$out/clusterfunk/Dockerfile" <<'DOCKER'
FROM scratch
COPY . /
ENTRYPOINT ["/bin/clusterfunk"]
CMD ["agent"]
DOCKER
docker build -q -t "${CF_IMAGE:-clusterfunk:local}" "$out/clusterfunk"

if command -v prometheus >/dev/null 2>&1; then
  assemble "$out/prometheus" "$(command -v prometheus)"
  cp deploy/prometheus.yml deploy/alerts.yml "$out/prometheus/etc/"
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
