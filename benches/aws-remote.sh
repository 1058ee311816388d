#!/usr/bin/env bash
# `km create` beside `km create --remote` (through the management Lambda the simulator runs),
# side by side in one simulator. Run inside the AWS simulator, from the repository root:
#
#   cargo build --features aws
#   scripts/aws-sim -- benches/aws-remote.sh target/debug/km 3
#
# Each round: a create here, a create through the manager, the remote one destroyed through the
# manager, the local one destroyed here. Prints one line per timing, in seconds.
set -euo pipefail

km=$(realpath "${1:?usage: benches/aws-remote.sh <km binary> [rounds]}")
rounds=${2:-3}
HOME=$(mktemp -d)
export HOME
trap 'rm -rf "$HOME"' EXIT

"$km" init --aws --region us-east-1 --instance-profile "$AWS_SIM_INSTANCE_PROFILE" >/dev/null 2>&1
python3 - <<'PY'
import io, os, zipfile
import boto3
kw = dict(region_name="us-east-1", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
          aws_access_key_id="testing", aws_secret_access_key="testing")
boto3.client("s3", **kw).create_bucket(Bucket="km-artifacts")
code = io.BytesIO()
zipfile.ZipFile(code, "w").writestr("bootstrap", "#!/bin/sh\n")
boto3.client("lambda", **kw).create_function(
    FunctionName="km-manager", Runtime="provided.al2023", Handler="bootstrap",
    Role="arn:aws:iam::123456789012:role/km-sandbox", Code={"ZipFile": code.getvalue()}, Timeout=300)
PY
"$km" init --aws --region us-east-1 --instance-profile "$AWS_SIM_INSTANCE_PROFILE" \
  --sidecars --artifact-bucket km-artifacts >/dev/null 2>&1

seconds() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

for _ in $(seq "$rounds"); do
  start=$(seconds); id=$("$km" create profiles/ec2.yaml 2>/dev/null); end=$(seconds)
  echo "create $(elapsed "$start" "$end")"
  start=$(seconds); remote=$("$km" create profiles/ec2.yaml --remote 2>/dev/null); end=$(seconds)
  echo "create --remote $(elapsed "$start" "$end")"
  start=$(seconds); "$km" destroy "$remote" --remote --yes >/dev/null 2>&1; end=$(seconds)
  echo "destroy --remote $(elapsed "$start" "$end")"
  "$km" destroy "$id" --yes >/dev/null 2>&1
done
