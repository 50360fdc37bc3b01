#!/bin/bash
# Interleaved A/B of 2026-12-07 00:40-00:53 UTC: lamina-head = release build of 6d5c720 (redb receipt index),
# lamina-new = release build of 21995dc (the index as an LSM). Rounds 1-2 with RATES=4000,16000,18000,20000,
# rounds 3-4 with ROUNDS="3 4" RATES=16000,18000,20000,22000 (every sweep stopped at its first failing rate).
# lsm-index-wip.patch: the LSM index as it stood after the review (branch lsm-index-wip, not on main; see DESIGN.md,
# "Long-lived nodes"): git apply it on 6d5c720 or later (Cargo.lock regenerates).
# interleaved A/B: head (redb index) vs new (fjall index)
cd /tmp/ab3
for r in ${ROUNDS:-1 2}; do
  for b in head new; do
    d=/tmp/ab3/r$r-$b; rm -rf $d
    ./lamina-$b bench --rates ${RATES:-4000,16000,18000,20000} --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/ab3/done
