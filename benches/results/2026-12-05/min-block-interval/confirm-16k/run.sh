#!/bin/bash
# Confirmation at this box's edge: 16,000 tx/s, the two binaries interleaved, two rounds.
for i in 1 2; do
  for b in base new50; do
    /tmp/lamina-$b bench --rates 16000 --duration 20s --warmup 3s --drain 10s --chains 2 --out /tmp/ab5/$b-$i > /tmp/ab5/$b-$i.log 2>&1
  done
done
