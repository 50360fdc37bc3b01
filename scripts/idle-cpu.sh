#!/usr/bin/env bash
# CPU of every process of an idle devnet (default topology, `--load 0`) over 30 s, read
# from /proc/<pid>/stat. Usage: scripts/idle-cpu.sh [lamina binary] [extra `devnet up` flags]
set -euo pipefail
LAMINA=${1:-target/release/lamina}
shift || true
dir=$(mktemp -d)
# `devnet down` stops the nodes; the directory (preallocated segments, ~3 GB) goes too.
trap '"$LAMINA" devnet down --dir "$dir/net" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$LAMINA" devnet up --dir "$dir/net" --keep --load 0 "$@" >/dev/null
sleep 5
mapfile -t nodes < <(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));[print(n['name'],n['pid']) for n in d['nodes']]" "$dir/net/devnet.json")
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A before
for n in "${nodes[@]}"; do before[$n]=$(ticks "${n#* }"); done
sleep 30
hz=$(getconf CLK_TCK)
total=0
for n in "${nodes[@]}"; do
    d=$(($(ticks "${n#* }") - before[$n]))
    total=$((total + d))
    awk -v n="${n% *}" -v d="$d" -v hz="$hz" 'BEGIN { printf "%-14s %5.1f%%\n", n, d / hz / 30 * 100 }'
done
awk -v d="$total" -v hz="$hz" 'BEGIN { printf "total          %5.1f%% of one core\n", d / hz / 30 * 100 }'
