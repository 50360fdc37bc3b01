#!/usr/bin/env bash
# Runs the chain-builder examples end to end (called by .ci/run; needs a prior
# `cargo build -p lamina-examples`):
#   1. one-process: validators, DA nodes and a counter-chain execution node in one
#      process, and a wallet's scenario against them;
#   2. counter-chain: a multi-process devnet of the counter machine (ledger version
#      100) with a settlement node, counter-client's scenario against it, and the
#      chain's claims finalized by settlement (no fraud proofs for custom machines,
#      but claims extend its genesis root and finalize after the window).
# Exits non-zero, with the devnet's logs' tail, if either fails.
set -euo pipefail
bin=${1:-target/debug}
"$bin/one-process"
root=$(mktemp -d)
dir=$root/net
# `devnet down` stops the nodes; the directory (preallocated segments, ~3 GB) goes too.
cleanup() {
    "$bin/counter-chain" devnet down --dir "$dir" >/dev/null 2>&1 || true
    rm -rf "$root"
}
trap cleanup EXIT
"$bin/counter-chain" devnet up --dir "$dir" --keep --load 0 --ledger-version 100 \
    --chains 1 --validators 4 --da-nodes 4 --settlement 1 --settlement-window 4 --heartbeat 200ms \
    --ready-timeout 180s
if ! "$bin/counter-client" --devnet "$dir"; then
    tail -n 20 "$dir"/logs/*.log >&2
    exit 1
fi
for _ in $(seq 1 120); do
    status=$("$bin/counter-chain" settlement status --chain 1 --devnet "$dir" --json)
    if python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["finalized_height"] > 0 else 1)' "$status"; then
        echo "settlement finalized the counter chain: $status" | tr -s ' \n' ' '
        echo
        exit 0
    fi
    sleep 0.5
done
echo "settlement finalized nothing of the counter chain within 60 s: $status" >&2
tail -n 20 "$dir"/logs/settlement-0.log >&2
exit 1
