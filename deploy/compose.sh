#!/usr/bin/env bash
# Runs `docker compose` (the plugin) or `docker-compose` (v1), whichever
# exists, on deploy/docker-compose.yml:  deploy/compose.sh up -d
set -euo pipefail
file="$(dirname "$0")/docker-compose.yml"
if docker compose version >/dev/null 2>&1; then
  exec docker compose -f "$file" "$@"
elif command -v docker-compose >/dev/null 2>&1; then
  exec docker-compose -f "$file" "$@"
else
  echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 127
fi
