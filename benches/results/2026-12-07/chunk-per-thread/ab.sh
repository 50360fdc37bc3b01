#!/bin/bash
cd /tmp/mtu
for r in ${ROUNDS:-1 2 3}; do
  for b in ${BUILDS:-base mtu}; do
    d=/tmp/mtu/r$r-$b; rm -rf $d
    grep Udp: /proc/net/snmp | tail -1 > $d.udp0
    ./lamina-$b bench --rates ${RATES:-20000,22000,24000} --duration 15s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1
    grep Udp: /proc/net/snmp | tail -1 > $d.udp1
    rm -rf $d/networks/*/nodes/*/data; rm -rf /tmp/.tmp* 2>/dev/null
  done
done
echo AB DONE > /tmp/mtu/done
