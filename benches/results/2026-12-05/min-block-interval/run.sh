#!/bin/bash
# The minimum block interval: the binary before it (base, 7f97a8a minus the change) and
# with it (new, default 50 ms), back to back on a quiet box, same settings.
for b in base new50; do
  /tmp/lamina-$b bench --rates 4000,12000,16000,20000 --duration 20s --warmup 3s --drain 10s --chains 2 --out /tmp/ab4/$b > /tmp/ab4/$b.log 2>&1
done
