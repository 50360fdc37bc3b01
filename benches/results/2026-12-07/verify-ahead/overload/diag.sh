#!/bin/bash
cd /tmp/rt
for r in ${RUNS:-1 2 3 4 5}; do
d=/tmp/rt/diag$r; rm -rf $d
./lamina-diag bench --rates ${RATES:-22000} --duration 20s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 100000 --out $d > $d.log 2>&1
rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
done
echo DIAG DONE
