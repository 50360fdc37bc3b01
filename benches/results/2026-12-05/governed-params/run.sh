#!/usr/bin/env bash
# A/B of issue 14's governed parameters and DA governance followers (2026-12-05):
# base = cb6dd77, new = d8c3c56, both `cargo build --release -p lamina-node`, run
# back to back twice on the 2-core box, then the idle-CPU script for each.
set -euo pipefail
for r in 1 2; do
    for b in base new; do
        XDG_DATA_HOME=/tmp/ab/xdg-$b /tmp/lamina-$b bench --rates 12000,16000 --duration 20s \
            --warmup 3s --drain 10s --chains 2 --out "$b"3-$r
    done
done
for b in base new; do scripts/idle-cpu.sh /tmp/lamina-$b; done
