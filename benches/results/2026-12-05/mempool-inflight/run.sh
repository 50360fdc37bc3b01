#!/bin/bash
# The mempool's "batches in flight" rule: two runs of the same binary, same settings as
# ../alloc-ab (whose jemalloc rows are the "before"), on a quiet box.
for i in 1 2; do
  /tmp/lamina-now bench --rates 4000,12000 --duration 20s --warmup 3s --drain 10s --chains 2 --out /tmp/ab2/now-$i > /tmp/ab2/now-$i.log 2>&1
done
