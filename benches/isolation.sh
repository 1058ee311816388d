#!/usr/bin/env bash
# What isolation costs, for docs/BENCHMARKS.md: an isolated local sandbox (the default:
# bubblewrap namespaces) beside one with `isolation: none`, interleaved in one run: `km create`,
# `ssh true` in proxy mode (ProxyCommand km proxy --fdpass) and port mode (the `vscode start`
# tunnel), a 256 MiB transfer in, and the resident memory of an idle sandbox (every process of
# it, bubblewrap's included).
# Usage: benches/isolation.sh [target/release/km] [rounds]
# Runs in a throwaway HOME; every process it starts is stopped by PID before it exits.
set -euo pipefail
BENCHES="$(cd "$(dirname "$0")" && pwd)"
KM="$(realpath "${1:-target/release/km}")"
ROUNDS="${2:-20}"
HOME="$(mktemp -d /tmp/km-bench.XXXXXX)"
export HOME
IDS=()
TUNNELS=()
cleanup() {
  for pid in "${TUNNELS[@]-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
  for id in "${IDS[@]-}"; do [ -n "$id" ] && "$KM" destroy "$id" --yes --force >/dev/null 2>&1; done
  rm -rf "$HOME"
}
trap cleanup EXIT
cd "$HOME"
"$KM" init >/dev/null 2>&1
printf 'metadata:\n  name: isolated\n' > isolated.yaml
printf 'metadata:\n  name: none\nspec:\n  runtime:\n    isolation: none\n' > none.yaml

# shellcheck source=benches/measure.sh
. "$BENCHES/measure.sh"

echo "## km create, median of $ROUNDS interleaved rounds (ms; each sandbox destroyed again)"
for _ in $(seq "$ROUNDS"); do
  for kind in isolated none; do
    t0=$(now_us); id=$("$KM" create "$kind.yaml" 2>/dev/null); t1=$(now_us)
    echo "$kind $(( (t1 - t0) / 1000 ))"
    "$KM" destroy "$id" --yes >/dev/null 2>&1
  done
done > create.txt
MODES=(isolated none)
medians create.txt

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
declare -A ID PORT
for kind in isolated none; do
  ID[$kind]=$("$KM" create "$kind.yaml" 2>/dev/null)
  IDS+=("${ID[$kind]}")
  PORT[$kind]=$(free_port)
  "$KM" vscode start "${ID[$kind]}" --local-port "${PORT[$kind]}" 2>/dev/null & TUNNELS+=($!)
  until grep -q "Port ${PORT[$kind]}" "$HOME/.ssh/config" 2>/dev/null; do sleep 0.05; done
done
user_of() { if [ "$1" = isolated ]; then echo sandbox; else id -un; fi; }
ssh_to() { # ssh_to <kind> <proxy|port> <command...>
  local kind=$1 via=$2 id=${ID[$1]}
  shift 2
  local common=(-F none -T -o BatchMode=yes -o IdentitiesOnly=yes -i "$HOME/.km/keys/$id"
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$HOME/.km/known_hosts"
    -o HostKeyAlias="km-$id" -l "$(user_of "$kind")")
  if [ "$via" = proxy ]; then
    ssh "${common[@]}" -o ProxyCommand="$KM proxy --fdpass $id" -o ProxyUseFdpass=yes "km-$id" "$@"
  else
    ssh "${common[@]}" -p "${PORT[$kind]}" 127.0.0.1 "$@"
  fi
}
isolated-proxy() { ssh_to isolated proxy "$@"; }
none-proxy() { ssh_to none proxy "$@"; }
isolated-port() { ssh_to isolated port "$@"; }
none-port() { ssh_to none port "$@"; }
MODES=(isolated-proxy none-proxy isolated-port none-port)
measure_latency "$ROUNDS"
measure_throughput

echo "## resident memory of an idle sandbox: every process of it, 2 s after its last login (kB)"
sleep 2
for kind in isolated none; do
  agent=$(cat "$HOME/.km/sandboxes/${ID[$kind]}/run/agent.pid")
  # The agent, what runs below it, and (isolated) the bubblewrap process that started it.
  pids=$(ps -e -o pid=,ppid= | awk -v a="$agent" '{p[$1]=$2} END {
    n = 1; s[1] = a; for (i = 1; i <= n; i++) for (c in p) if (p[c] == s[i]) s[++n] = c
    if (p[a] != 1 && p[a] != "") s[++n] = p[a]
    for (i = 1; i <= n; i++) print s[i] }')
  rss=0
  for pid in $pids; do
    kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    rss=$(( rss + ${kb:-0} ))
  done
  echo "$kind $rss ($(echo "$pids" | wc -w) processes)"
done
