#!/bin/bash
# Soak (issue 13): the default devnet topology and load for $1 (default 60m) with
# retention windows short enough to fill within the run. Samples every node's data
# directory every 30 s into $D/disk.csv (t_s,node,bytes); the devnet's own results
# (RSS per process, plots) land in $D/net/results. Not part of CI: it takes the box.
#
#   scripts/soak.sh 60m            # then: scripts/soak.sh report
set -euo pipefail
DUR=${1:-60m}
D=${SOAK_DIR:-/tmp/soak}
BIN=${LAMINA_BIN:-target/release/lamina}
rm -rf "$D"
mkdir -p "$D"
export LAMINA__EXECUTION__RETAIN_HEIGHTS=20000
export LAMINA__EXECUTION__SEGMENT_KIB=16384
export LAMINA__CONSENSUS__LOG_RETAIN_HEIGHTS=20000
export LAMINA__CONSENSUS__LOG_SEGMENT_BYTES=16777216
export LAMINA__DA__RETAIN_HEIGHTS=20000
export LAMINA__DA__PRUNE_INTERVAL_SECS=30
export LAMINA__DA__SEGMENT_BYTES=16777216
export LAMINA__SETTLEMENT__SEGMENT_BYTES=17825792
"$BIN" devnet up --dir "$D/net" --load-duration "$DUR" --idle-cpu 10s --keep-data > "$D/devnet.out" 2>&1 &
PID=$!
T0=$(date +%s)
echo "t_s,node,bytes" > "$D/disk.csv"
while kill -0 $PID 2>/dev/null; do
  if [ -d "$D/net/nodes" ]; then
    for n in "$D"/net/nodes/*; do
      [ -d "$n/data" ] && echo "$(( $(date +%s) - T0 )),$(basename "$n"),$(du -sb "$n/data" 2>/dev/null | cut -f1)" >> "$D/disk.csv"
    done
  fi
  sleep 30
done
echo "devnet exit: $(wait $PID; echo $?)" >> "$D/devnet.out"
