#!/bin/bash
cd /tmp/rt; d=/tmp/rt/prof; rm -rf $d
./lamina-base bench --rates 20000 --duration 20s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1 &
sleep 16
v=$(pgrep -f "lamina-base consensus start.*validator-1")
a=$(pgrep -f "lamina-base da start.*da-1")
e=$(pgrep -f "lamina-base execution start.*execution-0")
echo "v=$v a=$a e=$e"
perf record -F 499 --call-graph dwarf,32768 -p $v,$a,$e -o /tmp/rt/perf.data -- sleep 6 2>&1 | tail -2
wait
echo PROF DONE
