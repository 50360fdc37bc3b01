#!/bin/bash
# usage: ROUNDS="1 2" BUILDS="base anyw" RATES=20000 TAG=x ab2.sh ; scrapes DA nodes' stored columns / attestations at the end of the load
cd /tmp/mtu
for r in ${ROUNDS:-1}; do
  for b in ${BUILDS:-base anyw}; do
    d=/tmp/s60/$TAG-r$r-$b; rm -rf $d
    ( while [ ! -f $d/networks/net-1/genesis.toml ]; do sleep 1; done; sleep 3
      admins=$(grep -A3 'name = "da-' $d/networks/net-1/genesis.toml | grep admin | cut -d'"' -f2)
      while [ -d $d/networks ] && ! [ -f $d/results.json ]; do
        echo "t $(date +%s)"; for a in $admins; do curl -s -m 2 http://$a/metrics | grep -E "^lamina_da_node_(columns_stored_total|attestations_total) " | sed "s/^/$a /"; done; sleep 5
      done > $d.da 2>&1 ) &
    ./lamina-$b bench --rates ${RATES:-20000} --duration ${DUR:-30s} --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    wait
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/s60/$TAG.done
