#!/bin/bash
# A/B: glibc malloc vs jemalloc, alternating, same box, same settings
cd /work/main
for i in 1 2; do
  for a in glibc jemalloc; do
    /tmp/lamina-$a bench --rates 4000,12000 --duration 20s --warmup 3s --drain 10s --chains 2 --out /tmp/ab/$a-$i > /tmp/ab/$a-$i.log 2>&1
    echo "$a-$i exit $?" >> /tmp/ab/done.log
  done
done
echo ALLDONE >> /tmp/ab/done.log
