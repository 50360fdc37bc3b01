#!/bin/bash
cd /tmp/rt; d=/tmp/rt/sc; rm -rf $d
RATE=${RATE:-20000}
./lamina-base bench --rates $RATE --duration 20s --warmup 3s --drain 10s --chains 2 --latency-goal-ms 10000 --out $d > $d.log 2>&1 &
sleep 16
E=context-switches,task-clock
for s in fdatasync fsync sendmsg sendmmsg recvmsg recvmmsg recvfrom sendto futex epoll_wait sched_yield write pwrite64 writev read; do E=$E,syscalls:sys_enter_$s; done
for n in "consensus start.*validator-1" "da start.*da-1" "execution start.*execution-0"; do
  p=$(pgrep -f "lamina-base $n")
  perf stat -e $E -p $p -o /tmp/rt/sc-$(echo $n | cut -d' ' -f1).txt -- sleep 5 &
done
wait
echo SC DONE
