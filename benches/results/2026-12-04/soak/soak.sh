#!/bin/bash
# Soak (issue 13): the default devnet topology and load for $1 (default 60m), with
# retention windows short enough to fill within the run; disk of every node's data
# directory sampled every 30 s into $D/disk.csv (t_s,node,bytes).
DUR=${1:-60m}
D=/tmp/soak
rm -rf $D
mkdir -p $D
export LAMINA__EXECUTION__RETAIN_HEIGHTS=20000
export LAMINA__EXECUTION__SEGMENT_KIB=16384
export LAMINA__CONSENSUS__LOG_RETAIN_HEIGHTS=20000
export LAMINA__CONSENSUS__LOG_SEGMENT_BYTES=16777216
export LAMINA__DA__RETENTION_SECS=600
cd /work/main
target/release/lamina devnet up --dir $D/net --load-duration $DUR --idle-cpu 10s --keep-data > $D/devnet.out 2>&1 &
PID=$!
T0=$(date +%s)
echo "t_s,node,bytes" > $D/disk.csv
while kill -0 $PID 2>/dev/null; do
  if [ -d $D/net/nodes ]; then
    for n in $D/net/nodes/*; do
      [ -d $n/data ] && echo "$(( $(date +%s) - T0 )),$(basename $n),$(du -sb $n/data 2>/dev/null | cut -f1)" >> $D/disk.csv
    done
  fi
  sleep 30
done
echo "devnet exit: $(wait $PID; echo $?)" >> $D/devnet.out
