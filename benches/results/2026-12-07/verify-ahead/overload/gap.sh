#!/bin/bash
cd /tmp/rt
for r in 1 2 3; do
d=/tmp/rt/gap$r; rm -rf $d
./lamina-base bench --rates 22000,24000,26000 --duration 20s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 100000 --out $d > $d.log 2>&1 &
bp=$!
while kill -0 $bp 2>/dev/null; do
  sleep 2
  for j in $d/networks/*/devnet.json; do
    [ -f $j ] || continue
    for a in $(python3 -c "import json,sys; d=json.load(open('$j')); print(' '.join(n['admin'] for n in d['nodes'] if n['module']=='consensus'))" 2>/dev/null); do
      m=$(curl -s -m 1 http://$a/metrics | grep -E "^lamina_consensus_(nonce_gaps_released_total|mempool_parked)" | tr '\n' ' ')
      echo "$(date +%T) $a $m"
    done
  done >> $d.gaps
done
rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
done
echo GAP DONE
