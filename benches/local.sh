#!/usr/bin/env bash
# Measures the local platform's figures for docs/BENCHMARKS.md. Usage: benches/local.sh [target/release/km]
# Runs in a throwaway HOME; every sandbox and tunnel it starts is stopped before it exits.
set -euo pipefail
KM="$(realpath "${1:-target/release/km}")"
PROFILE="$(realpath "$(dirname "$0")/../profiles/default.yaml")"
HOME="$(mktemp -d /tmp/km-bench.XXXXXX)"
export HOME
trap 'for id in $("$KM" list --json 2>/dev/null | python3 -c "import json,sys;[print(s[\"id\"]) for s in json.load(sys.stdin)]"); do "$KM" destroy "$id" --yes --force 2>/dev/null; done; [ -n "${TUNNEL:-}" ] && kill "$TUNNEL" 2>/dev/null; rm -rf "$HOME"' EXIT
cd "$HOME"
"$KM" init 2>/dev/null
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now_ms() { date +%s%3N; }
ssh_proxy() { # id, then ssh args; the default profile's sandboxes are isolated: user `sandbox`
  local id=$1; shift
  ssh -F none -T -o BatchMode=yes -o IdentitiesOnly=yes -i "$HOME/.km/keys/$id" -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$HOME/.km/known_hosts" -o HostKeyAlias="km-$id" -o ProxyCommand="$KM proxy $id" \
    -l sandbox "km-$id" "$@"
}

echo "## create → first successful ssh true (ms, n=20)"
for _ in $(seq 20); do
  t0=$(now_ms); id=$("$KM" create "$PROFILE" 2>/dev/null); ssh_proxy "$id" true; t1=$(now_ms)
  echo $((t1 - t0)); "$KM" destroy "$id" --yes 2>/dev/null
done | median

echo "## resident memory of an idle sandbox agent (kB)"
id=$("$KM" create "$PROFILE" 2>/dev/null); sleep 1
ps -o rss= -p "$(cat "$HOME/.km/sandboxes/$id/run/agent.pid")"

echo "## km vscode rekey --yes, median of 10 (ms)"
for _ in $(seq 10); do t0=$(now_ms); "$KM" vscode rekey "$id" --yes 2>/dev/null; t1=$(now_ms); echo $((t1 - t0)); done | median

# The tunnel against ssh straight into `sshd -i` needs the sandbox's sshd config to work outside
# the sandbox, so it is measured on an `isolation: none` sandbox (benches/isolation.sh sets the
# two kinds side by side).
printf 'metadata:\n  name: unisolated\nspec:\n  runtime:\n    isolation: none\n' > unisolated.yaml
id=$("$KM" create unisolated.yaml 2>/dev/null)

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$KM" vscode start "$id" --local-port "$PORT" 2>/dev/null & TUNNEL=$!
sleep 0.5
SB="$HOME/.km/sandboxes/$id"
direct() { # the baseline: ssh straight into `sshd -i` with the sandbox's own config, no relay
  ssh -F none -T -o BatchMode=yes -o IdentitiesOnly=yes -i "$HOME/.km/keys/$id" -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$HOME/.km/known_hosts" -o HostKeyAlias="km-$id" \
    -o ProxyCommand="/usr/sbin/sshd -i -f $SB/etc/sshd_config -E $SB/log/bench.log" "km-$id" "$@"
}
tunnel() { ssh -F "$HOME/.ssh/config" -T -o BatchMode=yes "km-$id" "$@"; }

echo "## ssh true latency, median of 20 (ms): tunnel vs direct sshd -i, interleaved"
for _ in $(seq 20); do
  t0=$(now_ms); tunnel true; t1=$(now_ms); direct true; t2=$(now_ms)
  echo "$((t1 - t0)) $((t2 - t1))"
done > lat.txt
echo "tunnel $(cut -d' ' -f1 lat.txt | median)  direct $(cut -d' ' -f2 lat.txt | median)"

echo "## bulk throughput, 256 MiB to /dev/null, median of 3 (MB/s): tunnel vs direct, interleaved"
head -c 268435456 /dev/urandom > blob
for _ in 1 2 3; do
  t0=$(now_ms); tunnel 'cat > /dev/null' < blob; t1=$(now_ms); direct 'cat > /dev/null' < blob; t2=$(now_ms)
  echo "$((268435 / (t1 - t0))) $((268435 / (t2 - t1)))"
done > tp.txt
echo "tunnel $(cut -d' ' -f1 tp.txt | median)  direct $(cut -d' ' -f2 tp.txt | median)"

echo "## km list with 10,000 records, median of 10 (ms)"
python3 - "$HOME/.km/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executemany("INSERT INTO sandboxes (id, alias, profile, profile_path, platform, status, created_at, vscode_enabled) VALUES (?, NULL, 'bench', '/dev/null', 'local', 'stopped', 0, 1)",
               [("bn-%08x" % i,) for i in range(10000)])
db.commit()
PY
for _ in $(seq 10); do t0=$(now_ms); "$KM" list > /dev/null; t1=$(now_ms); echo $((t1 - t0)); done | median
