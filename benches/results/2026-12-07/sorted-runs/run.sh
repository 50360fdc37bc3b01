#!/bin/bash
# Interleaved A/B of 2026-12-07 03:49-04:02 UTC on the 2-core box: lamina-old = release build of 4955a5b
# (receipt index: one redb insert per receipt into a table per 4,096 heights), lamina-new = release build of
# 3c3afd2 (the index written in sorted runs into small tables). Each sweep stops at its first failing rate.
# per-module.txt: CPU µs per executed transfer by module, and each module's largest RSS, from results.json.
# redb-alone/: the throwaway program behind the "redb alone" table (cargo build --release; args: total batch cap).
cd /tmp/ab
for r in ${ROUNDS:-1 2 3}; do
  for b in old new; do
    d=/tmp/ab/r$r-$b; rm -rf $d
    ./lamina-$b bench --rates ${RATES:-4000,16000,18000,20000,22000} --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
