#!/bin/bash
# Execution threads per execution node on a shared machine: the default (0: one per
# core, here 2) against 1 (`[execution] threads`, set through the environment), same
# binary (with one intake signature thread per validator), interleaved rounds.
set -u
BIN=${BIN:-/tmp/lamina-new}
OUT=${OUT:-/tmp/exec-threads}
mkdir -p $OUT
for round in ${ROUNDS-1 2}; do
  for t in 1 0; do
    LAMINA__EXECUTION__THREADS=$t $BIN bench --rates 18000,20000 --duration 15s --warmup 3s \
      --drain 10s --chains 2 --latency-goal-ms 10000 --out $OUT/r$round-t$t > $OUT/r$round-t$t.log 2>&1
  done
done
