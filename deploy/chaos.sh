#!/usr/bin/env bash
# Faults for the compose demo while the load runs:  deploy/chaos.sh [SECONDS]
# Every few seconds one random kv node is killed (docker kill, then started
# again with its data), paused (docker pause / unpause) or cut off the
# network (docker network disconnect / connect, same address). One fault at
# a time; each is healed before the next. Prints one line per fault.
# COMPOSE_PROJECT_NAME selects the project (default: deploy).
set -euo pipefail
here="$(dirname "$0")"
seconds=${1:-60}
end=$((SECONDS + seconds))
nodes=(node1 node2 node3 node4 node5)

cid() { "$here/compose.sh" ps -q "$1"; }

while [ $SECONDS -lt $end ]; do
  node=${nodes[$((RANDOM % ${#nodes[@]}))]}
  c=$(cid "$node")
  [ -n "$c" ] || { echo "no container for $node" >&2; exit 1; }
  case $((RANDOM % 3)) in
    0)
      echo "$(date +%T) kill $node"
      docker kill "$c" >/dev/null
      sleep 3
      docker start "$c" >/dev/null ;;
    1)
      echo "$(date +%T) pause $node"
      docker pause "$c" >/dev/null
      sleep 2
      docker unpause "$c" >/dev/null ;;
    2)
      net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$c")
      ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
      echo "$(date +%T) disconnect $node ($ip from $net)"
      docker network disconnect "$net" "$c"
      sleep 2
      docker network connect --ip "$ip" "$net" "$c" ;;
  esac
  # Let the cluster heal before the next fault.
  sleep 4
done
echo "$(date +%T) chaos done"
