#!/usr/bin/env bash
# Side-by-side ssh transports for docs/BENCHMARKS.md: `ssh true` latency and a 256 MiB transfer
# through km's proxy mode (ProxyUseFdpass), km's port mode (the `vscode start` tunnel), ssh over
# pipes into `sshd -i` (the floor), and a plain sshd listening on 127.0.0.1, interleaved in one run.
# Usage: benches/transports.sh [target/release/km] [rounds]
# Runs in a throwaway HOME; every process it starts is stopped by PID before it exits.
set -euo pipefail
KM="$(realpath "${1:-target/release/km}")"
ROUNDS="${2:-30}"
PROFILE="$(realpath "$(dirname "$0")/../profiles/default.yaml")"
HOME="$(mktemp -d /tmp/km-bench.XXXXXX)"
export HOME
cleanup() {
  [ -n "${TUNNEL:-}" ] && kill "$TUNNEL" 2>/dev/null
  [ -n "${LISTENER:-}" ] && kill "$LISTENER" 2>/dev/null
  [ -n "${ID:-}" ] && "$KM" destroy "$ID" --yes --force 2>/dev/null
  rm -rf "$HOME"
}
trap cleanup EXIT
cd "$HOME"
"$KM" init 2>/dev/null
ID=$("$KM" create "$PROFILE" 2>/dev/null)
SB="$HOME/.km/sandboxes/$ID"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(free_port)
"$KM" vscode start "$ID" --local-port "$PORT" 2>/dev/null & TUNNEL=$!
until grep -q "Port $PORT" "$HOME/.ssh/config" 2>/dev/null; do sleep 0.05; done

# A plain sshd listening on loopback, with the sandbox's own config and keys.
LPORT=$(free_port)
sed '/^PidFile/d' "$SB/etc/sshd_config" > listen_config
printf 'ListenAddress 127.0.0.1\nPort %s\nPidFile none\n' "$LPORT" >> listen_config
/usr/sbin/sshd -D -f "$HOME/listen_config" -E "$HOME/listen.log" & LISTENER=$!
until python3 -c "import socket;socket.create_connection(('127.0.0.1',$LPORT))" 2>/dev/null; do sleep 0.05; done

common=(-F none -T -o BatchMode=yes -o IdentitiesOnly=yes -i "$HOME/.km/keys/$ID"
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$HOME/.km/known_hosts" -o HostKeyAlias="km-$ID")
proxy() { ssh "${common[@]}" -o ProxyCommand="$KM proxy --fdpass $ID" -o ProxyUseFdpass=yes "km-$ID" "$@"; }
port() { ssh "${common[@]}" -p "$PORT" 127.0.0.1 "$@"; }
pipes() { ssh "${common[@]}" -o ProxyCommand="/usr/sbin/sshd -i -f $SB/etc/sshd_config -E $SB/log/bench.log" "km-$ID" "$@"; }
listening() { ssh "${common[@]}" -p "$LPORT" 127.0.0.1 "$@"; }
MODES=(proxy port pipes listening)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now_us() { date +%s%6N; }

echo "## ssh true, median of $ROUNDS interleaved rounds (ms)"
for _ in $(seq "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    t0=$(now_us); "$mode" true; t1=$(now_us); echo "$mode $(( (t1 - t0) / 1000 ))"
  done
done > latency.txt
for mode in "${MODES[@]}"; do echo "$mode $(awk -v m="$mode" '$1==m {print $2}' latency.txt | median)"; done

echo "## 256 MiB into the sandbox, timed by the remote side from first to last byte (MB/s, median of 3)"
head -c 268435456 /dev/urandom > blob
for _ in 1 2 3; do
  for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2016 # expanded by the sandbox's shell, on purpose
    ns=$("$mode" 'start=$(date +%s%N); cat > /dev/null; end=$(date +%s%N); echo $((end - start))' < blob)
    echo "$mode $(( 268435456 * 1000 / ns ))"
  done
done > throughput.txt
for mode in "${MODES[@]}"; do echo "$mode $(awk -v m="$mode" '$1==m {print $2}' throughput.txt | median)"; done
