#!/usr/bin/env bash
# Live smoke test of the deploy artifacts with the real binary (deploy/check.sh --smoke):
#
#  1. gen-network.sh --target local: keys, genesis and 10 homes with the real lamina
#     commands, on loopback addresses 127.28.0.x (the compose topology, same ports);
#     gen-network.sh --target k8s: its ConfigMap, Secrets and Services pass
#     kubernetes-validate --strict;
#  2. starts every node as `lamina <module> start` with the compose file's environment and
#     waits until lamina-probe (the image's HEALTHCHECK) says each one is ready;
#  3. reads every node's /metrics: each lamina_* name must be known to the static scan of
#     check_artifacts.py; promtool's lint findings are printed;
#  4. runs the Prometheus server from Debian's package (the one promtool came from) with
#     rules.yml against the nodes: every target up, every rule evaluates without error,
#     no alert active, and every dashboard query runs (empty results are listed);
#  5. SIGTERM to every node: each must exit 0 ("stopped cleanly") within the compose
#     stop_grace_period.
#
# Needs $LAMINA_BIN (default target/debug/lamina) and the validators installed by
# deploy/check.sh. Only loopback addresses are used. Everything lives in a temp directory
# that is removed at the end (kept with LAMINA_SMOKE_KEEP=1).
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(dirname "$DEPLOY")
TOOLS=${LAMINA_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina/deploy-tools}
PY=$TOOLS/venv/bin/python
PROM=$TOOLS/prometheus/usr/bin
LAMINA_BIN=${LAMINA_BIN:-$ROOT/target/debug/lamina}
READY_TIMEOUT_S=${LAMINA_SMOKE_READY_TIMEOUT:-90}
STOP_TIMEOUT_S=30 # compose stop_grace_period

if [[ ! -x $LAMINA_BIN ]]; then
    echo "smoke: no lamina binary at $LAMINA_BIN (build it with cargo build -p lamina-node, or set LAMINA_BIN)" >&2
    exit 1
fi
LAMINA_BIN=$(cd "$(dirname "$LAMINA_BIN")" && pwd)/$(basename "$LAMINA_BIN")
export LAMINA_BIN
for t in "$PY" "$PROM/promtool" "$PROM/prometheus"; do
    [[ -x $t ]] || {
        echo "smoke: $t is missing; run deploy/check.sh --install first" >&2
        exit 1
    }
done

work=$(mktemp -d)
declare -A pid_of=()
prom_pid=
cleanup() {
    local p
    for p in "${pid_of[@]}" $prom_pid; do
        kill -KILL "$p" 2>/dev/null || true
    done
    if [[ ${LAMINA_SMOKE_KEEP:-0} == 1 ]]; then
        echo "smoke: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
say() { printf 'smoke: %s\n' "$*"; }

# 1. Generate the networks.
say "generating a local network in $work/net with $LAMINA_BIN"
bash "$DEPLOY/scripts/gen-network.sh" --target local --out "$work/net" 2>"$work/gen.log" || {
    cat "$work/gen.log" >&2
    exit 1
}
mapfile -t nodes < <(bash "$DEPLOY/scripts/gen-network.sh" --target local --plan)
for n in "${nodes[@]}"; do
    read -r name module addr _ <<<"$n"
    grep -q "addr = \"$addr\"" "$work/net/genesis.toml" || {
        echo "smoke: genesis does not list $name at $addr" >&2
        exit 1
    }
    [[ -f $work/net/homes/$name/config/config.toml ]] || {
        echo "smoke: $name has no initialized home" >&2
        exit 1
    }
done
# Re-running keeps the network (same genesis digest).
digest=$(sha256sum "$work/net/genesis.toml")
bash "$DEPLOY/scripts/gen-network.sh" --target local --out "$work/net" 2>/dev/null
[[ $(sha256sum "$work/net/genesis.toml") == "$digest" ]] || {
    echo "smoke: re-running gen-network.sh changed the genesis" >&2
    exit 1
}
say "generating the Kubernetes network manifests"
bash "$DEPLOY/scripts/gen-network.sh" --target k8s --out "$work/k8s" 2>/dev/null
"$TOOLS/venv/bin/kubernetes-validate" -k 1.30 --strict "$work/k8s/quic-services.yaml" \
    "$work/k8s/genesis-configmap.yaml" "$work/k8s/keys-secrets.yaml" >/dev/null
"$TOOLS/venv/bin/yamllint" --strict -c "$DEPLOY/.yamllint.yml" "$work/k8s"/*.yaml
# The StatefulSets' init-home script, run as a pod would run it: the key as Kubernetes
# mounts a Secret under fsGroup (mode 0440), the genesis from the ConfigMap; then again,
# as on a pod restart (the key must be kept).
for module in consensus da execution settlement; do
    pod=$module-0
    secret=$work/pod/$pod/etc/lamina/keys genesis_dir=$work/pod/$pod/etc/lamina/genesis
    mkdir -p "$secret" "$genesis_dir" "$work/pod/$pod/tmp"
    install -m 0440 "$work/k8s/keys/$pod.key" "$secret/$pod.key"
    cp "$work/k8s/genesis.toml" "$genesis_dir/genesis.toml"
    script=$("$PY" "$DEPLOY/lib/check_artifacts.py" k8s-init-script "$module")
    script=${script//\/tmp\//$work/pod/$pod/tmp/}
    script=${script//\/etc\/lamina/$work/pod/$pod/etc/lamina}
    for attempt in first restart; do
        if ! env PATH="$(dirname "$LAMINA_BIN"):$PATH" POD_NAME="$pod" LAMINA_HOME="$work/pod/$pod/home" \
            bash -ceu "$script" >"$work/pod/$pod/init-$attempt.log" 2>&1; then
            echo "smoke: the $module init container script failed ($attempt start):" >&2
            cat "$work/pod/$pod/init-$attempt.log" >&2
            exit 1
        fi
    done
    want=$(sed -n 's/^public_key = "\(.*\)"/\1/p' "$work/k8s/keys/$pod.key")
    "$LAMINA_BIN" keys show --home "$work/pod/$pod/home" 2>&1 | grep -q "$want" || {
        echo "smoke: the $module init container did not install $pod's key" >&2
        exit 1
    }
done
say "k8s init containers: homes created and kept across restarts with each pod's key"

# 2. Start every node as compose would: the service's command and environment from
# compose.yaml, except the home (a directory here, a volume there) and the admin server,
# which binds the node's own loopback address instead of 0.0.0.0.
mkdir -p "$work/logs" "$work/metrics"
for n in "${nodes[@]}"; do
    read -r name module addr _ <<<"$n"
    ip=${addr%:*}
    mapfile -t envs < <("$PY" "$DEPLOY/lib/check_artifacts.py" compose-env "$name")
    env -i PATH="$PATH" "${envs[@]}" LAMINA_HOME="$work/net/homes/$name" LAMINA_ADMIN_ADDR="$ip:9100" \
        "$LAMINA_BIN" "$module" start >"$work/logs/$name.log" 2>&1 &
    pid_of[$name]=$!
done
say "started ${#pid_of[@]} nodes; waiting for /readyz (lamina-probe)"
deadline=$((SECONDS + READY_TIMEOUT_S))
for n in "${nodes[@]}"; do
    read -r name _ addr _ <<<"$n"
    ip=${addr%:*}
    until LAMINA_PROBE_HOST=$ip LAMINA_ADMIN_ADDR=$ip:9100 "$DEPLOY/docker/lamina-probe" /readyz 2>/dev/null; do
        if ((SECONDS > deadline)) || ! kill -0 "${pid_of[$name]}" 2>/dev/null; then
            echo "smoke: $name did not become ready; its log:" >&2
            tail -20 "$work/logs/$name.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    LAMINA_PROBE_HOST=$ip LAMINA_ADMIN_ADDR=$ip:9100 "$DEPLOY/docker/lamina-probe" /livez
done
say "all ${#nodes[@]} nodes ready"

# 3. Their metrics.
for n in "${nodes[@]}"; do
    read -r name _ addr _ <<<"$n"
    "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
        "http://${addr%:*}:9100/metrics" >"$work/metrics/$name.prom"
done
"$PY" "$DEPLOY/lib/check_artifacts.py" live-metrics "$work/metrics"/*.prom
lint=$("$PROM/promtool" check metrics <"$work/metrics/consensus-0.prom" 2>&1 || true)
if [[ -n $lint ]]; then
    say "promtool check metrics on consensus-0's /metrics (reported, not failed):"
    sort -u <<<"$lint" | while IFS= read -r line; do printf '    %s\n' "$line"; done
fi

# 4. A real Prometheus with the shipped rules, scraping the nodes.
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
    echo "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}"
    echo "rule_files: [\"$DEPLOY/prometheus/rules.yml\"]"
    echo "scrape_configs:"
    echo "  - job_name: lamina"
    echo "    static_configs:"
    for n in "${nodes[@]}"; do
        read -r name module addr _ <<<"$n"
        echo "      - {targets: [\"${addr%:*}:9100\"], labels: {module: $module, node: $name}}"
    done
} >"$work/prometheus.yml"
"$PROM/promtool" check config "$work/prometheus.yml" >/dev/null
"$PROM/prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$work/logs/prometheus.log" 2>&1 &
prom_pid=$!
say "Prometheus $("$PROM/prometheus" --version 2>&1 | head -1 | awk '{print $3}') on 127.0.0.1:$port"
"$PY" "$DEPLOY/lib/check_artifacts.py" live-prometheus --url "http://127.0.0.1:$port" --targets "${#nodes[@]}"

# 5. SIGTERM: every node drains and exits 0 within the grace period.
for name in "${!pid_of[@]}"; do
    kill -TERM "${pid_of[$name]}"
done
stop_deadline=$((SECONDS + STOP_TIMEOUT_S))
bad=0
for name in "${!pid_of[@]}"; do
    pid=${pid_of[$name]}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < stop_deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "smoke: $name still running ${STOP_TIMEOUT_S}s after SIGTERM" >&2
        bad=1
        continue
    fi
    rc=0
    wait "$pid" || rc=$?
    if ((rc != 0)) || ! grep -q 'stopped cleanly' "$work/logs/$name.log"; then
        echo "smoke: $name exited $rc after SIGTERM; its log:" >&2
        tail -5 "$work/logs/$name.log" >&2
        bad=1
    fi
    unset "pid_of[$name]"
done
kill -TERM "$prom_pid" 2>/dev/null || true
wait "$prom_pid" 2>/dev/null || true
prom_pid=
((bad == 0)) || exit 1
say "every node stopped cleanly (exit 0) after SIGTERM"
