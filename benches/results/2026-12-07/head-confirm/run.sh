#!/bin/bash
# 2026-12-07 00:05-00:17 UTC: N=5 RATES=18000,20000 with the release build of 6d5c720 (HEAD at the start of the day).
# repeated edge runs with outcome reasons logged; keeps logs, drops node data
for i in $(seq 1 ${N:-5}); do
  d=/tmp/rej/L$i; rm -rf $d
  /work/main/target/release/lamina bench --rates ${RATES:-18000,20000} --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 100000 --log-level "warn,lamina::execution::outcomes=debug,lamina_consensus_service=info" --out $d > $d.log 2>&1
  rm -rf $d/networks/*/nodes/*/data
  rm -rf /tmp/.tmp* 2>/dev/null
done
echo LOOP DONE >> /tmp/rej/loop.done
