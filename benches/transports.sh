#!/usr/bin/env bash
# Side-by-side ssh transports for docs/BENCHMARKS.md: `ssh true` latency and a 256 MiB transfer
# through km's proxy mode (ProxyUseFdpass), km's port mode (the `vscode start` tunnel), ssh over
# pipes into `sshd -i` (the floor), and a plain sshd listening on 127.0.0.1, interleaved in one run;
# then 200 SOCKS channels opened at once over one `ssh -D` connection (VS Code's pattern).
# Usage: benches/transports.sh [target/release/km] [rounds]
# Runs in a throwaway HOME; every process it starts is stopped by PID before it exits.
set -euo pipefail
BENCHES="$(cd "$(dirname "$0")" && pwd)"
KM="$(realpath "${1:-target/release/km}")"
ROUNDS="${2:-30}"
HOME="$(mktemp -d /tmp/km-bench.XXXXXX)"
export HOME
# `isolation: none`: the pipes and listening modes run the sandbox's sshd config outside the
# sandbox, where an isolated sandbox's paths (/run/km/...) do not exist. benches/isolation.sh
# sets isolated and unisolated sandboxes side by side.
PROFILE="$HOME/unisolated.yaml"
printf 'metadata:\n  name: unisolated\nspec:\n  runtime:\n    isolation: none\n' > "$PROFILE"
cleanup() {
  [ -n "${SSHD_CLIENT:-}" ] && kill "$SSHD_CLIENT" 2>/dev/null
  [ -n "${ECHO:-}" ] && kill "$ECHO" 2>/dev/null
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

# shellcheck source=benches/measure.sh
. "$BENCHES/measure.sh"
measure_latency "$ROUNDS"
measure_throughput

echo "## 200 SOCKS channels over one ssh -D connection, opened at once, each one echo round trip (ms, median of 5)"
# A loopback echo server for the channels to reach (the local platform shares this network).
ECHO_PORT=$(free_port)
python3 - "$ECHO_PORT" <<'PY' & ECHO=$!
import socket, sys, threading
server = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=512)
def serve(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
while True:
    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
PY
# The ssh options of each mode as words, so `ssh` itself is the background job and $! its PID.
mode_options() {
  case "$1" in
    proxy) printf '%s\n' -o "ProxyCommand=$KM proxy --fdpass $ID" -o ProxyUseFdpass=yes "km-$ID" ;;
    port) printf '%s\n' -p "$PORT" 127.0.0.1 ;;
    pipes) printf '%s\n' -o "ProxyCommand=/usr/sbin/sshd -i -f $SB/etc/sshd_config -E $SB/log/bench.log" "km-$ID" ;;
    listening) printf '%s\n' -p "$LPORT" 127.0.0.1 ;;
  esac
}
for _ in 1 2 3 4 5; do
  for mode in "${MODES[@]}"; do
    SOCKS=$(free_port)
    mapfile -t options < <(mode_options "$mode")
    ssh "${common[@]}" -N -D "127.0.0.1:$SOCKS" "${options[@]}" & SSHD_CLIENT=$!
    until python3 -c "import socket;socket.create_connection(('127.0.0.1',$SOCKS))" 2>/dev/null; do sleep 0.02; done
    ms=$(python3 - "$SOCKS" "$ECHO_PORT" <<'PY'
import socket, struct, sys, threading, time
socks, target = int(sys.argv[1]), int(sys.argv[2])
def channel(errors):
    try:
        s = socket.create_connection(("127.0.0.1", socks))
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", target))
        assert s.recv(10)[1] == 0
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        s.close()
    except Exception as e:  # noqa: BLE001 - counted, reported below
        errors.append(e)
errors = []
threads = [threading.Thread(target=channel, args=(errors,)) for _ in range(200)]
start = time.monotonic()
for t in threads: t.start()
for t in threads: t.join()
if errors: sys.exit("%d channels failed: %s" % (len(errors), errors[0]))
print(int((time.monotonic() - start) * 1000))
PY
)
    kill "$SSHD_CLIENT"; wait "$SSHD_CLIENT" 2>/dev/null || true; SSHD_CLIENT=
    echo "$mode $ms"
  done
done > socks.txt
kill "$ECHO"; ECHO=
medians socks.txt
