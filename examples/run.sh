#!/usr/bin/env bash
# Runs the chain-builder examples end to end (called by .ci/run; needs a prior
# `cargo build -p lamina-examples`):
#   1. one-process: validators, DA nodes and a counter-chain execution node in one
#      process, and a wallet's scenario against them;
#   2. counter-chain: a multi-process devnet of the counter machine (ledger version
#      100) with a settlement node, and counter-client's scenario against it.
# Exits non-zero, with the devnet's logs' tail, if either fails.
set -euo pipefail
bin=${1:-target/debug}
"$bin/one-process"
dir=$(mktemp -d)/net
cleanup() { "$bin/counter-chain" devnet down --dir "$dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$bin/counter-chain" devnet up --dir "$dir" --keep --load 0 --ledger-version 100 \
    --chains 1 --validators 4 --da-nodes 4 --settlement 1 --ready-timeout 180s
if ! "$bin/counter-client" --devnet "$dir"; then
    tail -n 20 "$dir"/logs/*.log >&2
    exit 1
fi
