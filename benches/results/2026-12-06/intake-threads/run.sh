#!/bin/bash
# Intake signature threads per validator: the default (one per core, here 2) against 1
# (`[consensus.mempool] signature_threads`, set through the environment), same binary,
# interleaved rounds on a quiet box.
set -u
BIN=${BIN:-/tmp/lamina-ab}
OUT=${OUT:-/tmp/intake-threads}
for round in ${ROUNDS-1 2 3}; do
  for t in 0 1; do
    LAMINA__CONSENSUS__MEMPOOL__SIGNATURE_THREADS=$t $BIN bench --rates 12000,16000 --duration 15s --warmup 3s \
      --drain 10s --chains 2 --latency-goal-ms 10000 --out $OUT/r$round-t$t > $OUT/r$round-t$t.log 2>&1
  done
done
# Then above the old edge, one round each.
if [ "${HIGH:-0}" = 1 ]; then
  for t in 1 0; do
    LAMINA__CONSENSUS__MEMPOOL__SIGNATURE_THREADS=$t $BIN bench --rates 18000,20000 --duration 15s --warmup 3s \
      --drain 10s --chains 2 --latency-goal-ms 10000 --out $OUT/high-t$t > $OUT/high-t$t.log 2>&1
  done
fi
