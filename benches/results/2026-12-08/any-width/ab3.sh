#!/bin/bash
# usage: ROUNDS="3" BUILDS="base ls" RATES=20000,22000 TAG=x ab3.sh ; samples DA nodes' wchar (bytes written) every 5 s
cd /tmp/mtu
for r in ${ROUNDS:-1}; do
  for b in ${BUILDS:-base ls}; do
    d=/tmp/s60/$TAG-r$r-$b; rm -rf $d
    ( while [ ! -f $d/networks/net-1/genesis.toml ]; do sleep 1; done; sleep 2
      while [ -d $d/networks ] && ! [ -f $d/results.json ]; do
        echo "t $(date +%s) $(for p in $(pgrep -f "lamina-$b da start"); do grep wchar /proc/$p/io | cut -d' ' -f2; done | paste -sd+ | bc)"; sleep 5
      done > $d.wchar 2>&1 ) &
    ./lamina-$b bench --rates ${RATES:-20000} --duration ${DUR:-30s} --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    wait
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/s60/$TAG.done
