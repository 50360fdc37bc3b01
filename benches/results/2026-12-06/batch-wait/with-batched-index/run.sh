#!/bin/bash
# HEAD (3d8f9f7) against the working tree (max_unordered = 1 from 16 KiB queued, receipt index written every 32 heights / 8,192 receipts), interleaved.
for r in 1 2 3; do
  for c in head new; do
    case $c in
      head) bin=/tmp/prof/lamina;;
      new) bin=/tmp/exp/lamina-v5;;
    esac
    timeout 400 $bin bench --rates 4000,16000,18000,20000 --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out /tmp/exp/ab5/r$r-$c > /tmp/exp/ab5/r$r-$c.log 2>&1
  done
done
