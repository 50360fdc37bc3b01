#!/bin/bash
# usage: ROUNDS="1 2" BUILDS="final2 idle" RATES=22000,24000 DUR=60s ab60.sh
cd /tmp/mtu
for r in ${ROUNDS:-1}; do
  for b in ${BUILDS:-final2 idle}; do
    d=/tmp/s60/r$r-$b; rm -rf $d
    ( while [ ! -f $d/networks/net-1/genesis.toml ]; do sleep 1; done; sleep 3
      admins=$(grep -A3 'name = "validator' $d/networks/net-1/genesis.toml | grep admin | cut -d'"' -f2)
      while [ -d $d/networks ] && ! [ -f $d/results.json ]; do
        echo "t $(date +%s)"; for a in $admins; do curl -s -m 2 http://$a/metrics | grep -E "^lamina_consensus_(nonce_gaps_released_total|timeouts_total|da_failures_total|wal_sync_seconds_(sum|count)) " | sed "s/^/$a /"; done; sleep 5
      done > $d.gaps 2>&1 ) &
    ./lamina-$b bench --rates ${RATES:-22000,24000} --duration ${DUR:-60s} --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    wait
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/s60/done
