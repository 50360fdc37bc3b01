#!/bin/bash
# usage: ROUNDS="1 2" BUILDS="old base" RATES=22000 DUR=30s TAG=x ab.sh
cd /tmp/mtu
for r in ${ROUNDS:-1}; do
  for b in ${BUILDS:-old base}; do
    d=/tmp/s60/$TAG-r$r-$b; rm -rf $d
    ./lamina-$b bench --rates ${RATES:-22000} --duration ${DUR:-30s} --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/s60/$TAG.done
