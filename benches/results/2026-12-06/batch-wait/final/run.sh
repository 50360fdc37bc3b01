#!/bin/bash
# HEAD (3d8f9f7) against the final tree (8fb5172: under load the next batch waits for the previous one),
# interleaved rounds; node data of failed points is deleted after each run (the bench keeps it, ~4 GB).
for r in 1 2; do
  for c in head new; do
    case $c in
      head) bin=/tmp/prof/lamina;;
      new) bin=/tmp/exp/lamina-v6;;
    esac
    timeout 400 $bin bench --rates 4000,16000,18000 --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out /tmp/exp/ab6/r$r-$c > /tmp/exp/ab6/r$r-$c.log 2>&1
    rm -rf /tmp/exp/ab6/r$r-$c/networks/*/nodes/*/data
  done
done
