#!/bin/bash
cd /tmp/rt
for r in ${ROUNDS:-1 2 3}; do
  for b in base ahead; do
    d=/tmp/rt/v$r-$b; rm -rf $d
    ./lamina-$b bench --rates ${RATES:-20000,22000,24000} --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/rt/ab2done
