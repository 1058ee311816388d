#!/usr/bin/env bash
# km's own overhead on the AWS path, for docs/BENCHMARKS.md: `ssh true` latency and a 256 MiB
# transfer to an EC2 sandbox through km proxy → `aws ssm start-session` (aws-sim's stand-in,
# which runs the instance's `sshd -i`), next to a local sandbox through `km proxy` (stdio form)
# and `km proxy --fdpass`, interleaved in one run inside scripts/aws-sim.
# Usage: scripts/aws-sim -- benches/aws-sim.sh [target/release/km] [rounds]
# The simulator is not AWS: the figures show what km and the session hand-off add, not SSM.
set -euo pipefail
BENCHES="$(cd "$(dirname "$0")" && pwd)"
KM="$(realpath "${1:-target/release/km}")"
ROUNDS="${2:-20}"
PROFILES="$(realpath "$(dirname "$0")/../profiles")"
: "${AWS_SIM_DIR:?run this inside scripts/aws-sim -- …}"
HOME="$(mktemp -d /tmp/km-bench.XXXXXX)"
export HOME
cleanup() {
  [ -n "${EC2:-}" ] && "$KM" destroy "$EC2" --yes --force >/dev/null 2>&1
  [ -n "${LOCAL:-}" ] && "$KM" destroy "$LOCAL" --yes --force >/dev/null 2>&1
  rm -rf "$HOME"
}
trap cleanup EXIT
cd "$HOME"
# The store is DynamoDB (in the simulator); each sandbox's platform comes from its profile.
"$KM" init >/dev/null 2>&1
"$KM" init --aws --region us-east-1 --instance-profile "$AWS_SIM_INSTANCE_PROFILE" >/dev/null 2>&1
EC2=$("$KM" create "$PROFILES/ec2.yaml" 2>/dev/null)
LOCAL=$("$KM" create "$PROFILES/default.yaml" 2>/dev/null)

via() { # via <sandbox> <user> <proxy flags…> -- <remote command…>
  local sb="$1" user="$2"; shift 2
  local flags=()
  while [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  ssh -F none -T -o BatchMode=yes -o IdentitiesOnly=yes -i "$HOME/.km/keys/$sb" -l "$user" \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$HOME/.km/known_hosts" \
    -o HostKeyAlias="km-$sb" "${flags[@]}" "km-$sb" "$@"
}
ec2() { via "$EC2" sandbox -o ProxyCommand="$KM proxy $EC2" -- "$@"; }
local_stdio() { via "$LOCAL" "$(id -un)" -o ProxyCommand="$KM proxy $LOCAL" -- "$@"; }
local_fdpass() { via "$LOCAL" "$(id -un)" -o ProxyCommand="$KM proxy --fdpass $LOCAL" -o ProxyUseFdpass=yes -- "$@"; }
MODES=(ec2 local_stdio local_fdpass)

# shellcheck source=benches/measure.sh
. "$BENCHES/measure.sh"
measure_latency "$ROUNDS"
measure_throughput
