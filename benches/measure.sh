# Shared by the benchmark scripts (sourced, not run): the interleaved `ssh true` latency and
# 256 MiB throughput rounds over the modes in MODES, each mode a function that runs ssh with
# the remote command it is given. BLOB_BYTES overrides the transfer size for a quick check.
# shellcheck shell=bash

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now_us() { date +%s%6N; }
# Prints "<mode> <median>" for every mode, from "<mode> <value>" lines in file $1.
medians() { for mode in "${MODES[@]}"; do echo "$mode $(awk -v m="$mode" '$1==m {print $2}' "$1" | median)"; done; }

measure_latency() { # measure_latency <rounds>
  echo "## ssh true, median of $1 interleaved rounds (ms)"
  for _ in $(seq "$1"); do
    for mode in "${MODES[@]}"; do
      t0=$(now_us); "$mode" true; t1=$(now_us); echo "$mode $(( (t1 - t0) / 1000 ))"
    done
  done > latency.txt
  medians latency.txt
}

measure_throughput() {
  local bytes="${BLOB_BYTES:-268435456}"
  echo "## $((bytes / 1048576)) MiB into the sandbox, timed by the remote side from first to last byte (MB/s, median of 3)"
  head -c "$bytes" /dev/urandom > blob
  for _ in 1 2 3; do
    for mode in "${MODES[@]}"; do
      # shellcheck disable=SC2016 # expanded by the sandbox's shell, on purpose
      ns=$("$mode" 'start=$(date +%s%N); cat > /dev/null; end=$(date +%s%N); echo $((end - start))' < blob)
      echo "$mode $(( bytes * 1000 / ns ))"
    done
  done > throughput.txt
  medians throughput.txt
}
