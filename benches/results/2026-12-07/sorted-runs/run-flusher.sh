#!/bin/bash
# 2026-12-07 04:16-04:28 UTC, same AMD EPYC box: lamina-head = release build of bcf69e4 (sorted runs, flush on the
# follower), lamina-bg = 35ccc86 (flush on index::Flusher's thread). c1-bg: one more sweep of 35ccc86 at
# 22000,24000,26000 (04:28). devnet-*: `lamina devnet up --duration 90s` (default topology and load) of 35ccc86
# and of 4955a5b (lamina-old), 04:29-04:32.
# interleaved A/B: head = bcf69e4 (sorted runs, flush inline on the follower) vs bg = 35ccc86 (flush on a thread of its own)
cd /tmp/ab
for r in ${ROUNDS:-1 2 3}; do
  for b in head bg; do
    d=/tmp/ab/f$r-$b; rm -rf $d
    ./lamina-$b bench --rates ${RATES:-4000,18000,20000,22000} --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/ab/ab2done
