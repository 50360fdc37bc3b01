#!/bin/bash
cd /tmp/rt
for r in ${ROUNDS:-1 2}; do
  for b in two one; do
    d=/tmp/rt/r$r-$b; rm -rf $d
    if [ $b = one ]; then export TOKIO_WORKER_THREADS=1; else unset TOKIO_WORKER_THREADS; fi
    ./lamina-base bench --rates ${RATES:-20000,22000,24000} --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/rt/abdone
