#!/usr/bin/env bash
# Live monitoring check (run by .ci/run after the tests): starts a real devnet with the
# given `lamina` binary (every module as its own process, with settlement and the bridge
# relayer), lets it run under a little load, scrapes every node's /metrics and fails if
# a series that a shipped alert or dashboard panel uses is exposed by no node (besides
# the event-only ones listed in check_artifacts.py), or if a live series is unknown to
# the static scan. Needs the venv deploy/check.sh installs (PyYAML).
#
#   deploy/lib/live-metrics-devnet.sh [path/to/lamina]
set -euo pipefail
DEPLOY=$(cd "$(dirname "$0")/.." && pwd)
LAMINA=${1:-$DEPLOY/../target/debug/lamina}
TOOLS=${LAMINA_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina/deploy-tools}
PY=$TOOLS/venv/bin/python
[[ -x $PY ]] || { echo "run deploy/check.sh first (it installs $PY)" >&2; exit 1; }
[[ -x $LAMINA ]] || { echo "no lamina binary at $LAMINA (cargo build -p lamina-node)" >&2; exit 1; }

work=$(mktemp -d)
net=$work/net
down() {
    "$LAMINA" devnet down --dir "$net" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap down EXIT

# A short burst of load first (so dispersal, retrieval, execution and claim series
# exist), then the network stays up for the scrape.
"$LAMINA" devnet up --dir "$net" --keep --load 0 >"$work/up.log" 2>&1 || {
    tail -30 "$work/up.log" >&2
    exit 1
}
for i in 0 1 2 3 4 5 6 7 8 9; do
    "$LAMINA" tx transfer --devnet "$net" --chain 1 --to "$("$LAMINA" keys generate --out "$work/k$i.key" 2>/dev/null)" \
        --amount 7 --from-test-account "$i" --no-wait >/dev/null 2>&1 || true
done
sleep 5
mkdir -p "$work/metrics"
"$PY" - "$net/devnet.json" "$work/metrics" <<'PY'
import json, sys, urllib.request
state = json.load(open(sys.argv[1]))
for n in state["nodes"]:
    body = urllib.request.urlopen(f"http://{n['admin']}/metrics", timeout=10).read().decode()
    open(f"{sys.argv[2]}/{n['name']}.prom", "w").write(body)
print(f"scraped {len(state['nodes'])} nodes")
PY
"$PY" "$DEPLOY/lib/check_artifacts.py" live-metrics "$work/metrics"/*.prom
