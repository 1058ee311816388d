#!/usr/bin/env bash
# How long `km vscode server` takes to place a 60 MB server tarball, over each channel, side by
# side in one run: a local sandbox (ssh through `km proxy --fdpass`) and an EC2 sandbox in the
# AWS simulator (ssh through `km proxy` → `aws ssm start-session`). Run from the repository root:
#
#   cargo build --release --features aws
#   scripts/aws-sim -- benches/vscode-server.sh target/release/km 3
#
# The tarball is a stand-in (a product.json and 60 MB that do not compress) made here; each
# round places a new commit, so nothing is skipped as already there.
set -euo pipefail

km=$(realpath "${1:?usage: benches/vscode-server.sh <km binary> [rounds]}")
rounds=${2:-3}
: "${AWS_SIM_DIR:?run this inside scripts/aws-sim -- …}"
HOME=$(mktemp -d /tmp/km-bench.XXXXXX)
export HOME
profiles=$(realpath profiles)
cleanup() {
  [ -n "${ec2:-}" ] && "$km" destroy "$ec2" --yes --force >/dev/null 2>&1
  [ -n "${local_sb:-}" ] && "$km" destroy "$local_sb" --yes --force >/dev/null 2>&1
  rm -rf "$HOME"
}
trap cleanup EXIT

arch=x64
[ "$(uname -m)" = aarch64 ] && arch=arm64
tarball() { # commit → path of a 60 MB stand-in server tarball for it
  local tree="$HOME/tree-$1" top
  top="$tree/vscode-server-linux-$arch"
  mkdir -p "$top/bin"
  printf '{"commit": "%s", "quality": "stable"}\n' "$1" >"$top/product.json"
  head -c 60M /dev/urandom >"$top/node"
  tar -czf "$HOME/$1.tar.gz" -C "$tree" "vscode-server-linux-$arch"
  rm -rf "$tree"
  echo "$HOME/$1.tar.gz"
}
seconds() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

"$km" init >/dev/null 2>&1
local_sb=$("$km" create "$profiles/default.yaml" 2>/dev/null)
"$km" init --aws --region us-east-1 --instance-profile "$AWS_SIM_INSTANCE_PROFILE" >/dev/null 2>&1
ec2=$("$km" create "$profiles/ec2.yaml" 2>/dev/null)

for round in $(seq "$rounds"); do
  for sb in "$local_sb" "$ec2"; do
    commit=$(printf '%040d' "$round${#sb}$RANDOM")
    file=$(tarball "$commit")
    start=$(seconds)
    "$km" vscode server "$sb" --commit "$commit" --from "$file" >/dev/null 2>&1
    end=$(seconds)
    echo "$( [ "$sb" = "$ec2" ] && echo ec2 || echo local ) $(( $(stat -c %s "$file") / 1048576 )) MB $(elapsed "$start" "$end") s"
    rm -f "$file"
  done
done
