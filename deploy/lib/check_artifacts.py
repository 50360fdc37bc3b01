#!/usr/bin/env python3
"""Checks of deploy/ that no off-the-shelf validator makes (run by deploy/check.sh).

  check_artifacts.py all                      every check below; exit 1 on any problem
  check_artifacts.py dashboard-rules --out F  write the dashboards' queries as a recording-rule
                                              file, so `promtool check rules F` parses them
  check_artifacts.py live-metrics FILE...     compare /metrics samples of running nodes with
                                              what the static scan finds (used by smoke.sh)
  check_artifacts.py live-prometheus --url U --targets N
                                              against a Prometheus scraping N running nodes
                                              with rules.yml: targets up, rules healthy, no
                                              alert active, every dashboard query runs
  check_artifacts.py k8s-init-script MODULE   print the StatefulSet's init-home script
  check_artifacts.py compose-env SERVICE      print the service's environment from compose.yaml
                                              (KEY=VALUE, ${VAR:-default} resolved to defaults)
  check_artifacts.py emitted                  print the metric names the code emits

Checks made by `all`:
  * metric names: every metric used by prometheus/rules.yml and the Grafana dashboards is
    emitted somewhere in the workspace's Rust code (metrics::counter!/gauge!/histogram!
    with a literal name or a `const NAME: &str = "lamina_..."`, plus hand-written
    exposition such as the telemetry crate's process and health gauges). Pending rules
    (prometheus/rules.pending.yml) are reported when their metrics appear, never failed.
  * dashboards: ids, grid positions, targets, variables and the data source uid.
  * compose, Prometheus targets, Kubernetes manifests and the network generator agree:
    the same node names, modules and addresses; healthchecks on /readyz; stop grace
    periods above the node's own shutdown grace; non-root; and so on.
  * Dockerfile and systemd semantics that hadolint and systemd-analyze do not check.

Needs PyYAML (the validators' venv has it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
GEN = DEPLOY / "scripts" / "gen-network.sh"

# Seconds a node needs beyond [node] shutdown_grace_ms: the admin server's drain
# (lamina-telemetry DRAIN_TIMEOUT, 3 s) and the runtime's shutdown timeout (1 s), rounded up.
STOP_MARGIN_S = 5

# Names Prometheus itself provides (not emitted by our code).
PROMETHEUS_BUILTINS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}

# Grafana variables and what to put in their place before parsing a query.
GRAFANA_SUBST = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$module": ".+",
    "$node": ".+",
}

problems: list[str] = []
notes: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------------------------------
# Metric names emitted by the code
# ---------------------------------------------------------------------------------------

RUST_SKIP_DIRS = {"target", "tests", "benches", "examples", ".git", "deploy"}


def rust_sources() -> list[Path]:
    out = []
    for p in sorted(ROOT.rglob("*.rs")):
        parts = set(p.relative_to(ROOT).parts[:-1])
        if parts & RUST_SKIP_DIRS:
            continue
        out.append(p)
    return out


def strip_test_modules(text: str) -> str:
    """Removes `#[cfg(test)] mod x { ... }` blocks (brace-matched, skipping strings,
    chars and comments), so names used only by unit tests do not count as emitted."""
    out = []
    i = 0
    pat = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        j = m.end()
        depth = 1
        n = len(text)
        while j < n and depth:
            c = text[j]
            if text.startswith("//", j):
                j = text.find("\n", j)
                j = n if j < 0 else j
                continue
            if text.startswith("/*", j):
                k = text.find("*/", j + 2)
                j = n if k < 0 else k + 2
                continue
            if c == '"' or (c == "r" and re.match(r'r#*"', text[j:])):
                if c == "r":
                    hashes = re.match(r"r(#*)\"", text[j:]).group(1)
                    end = text.find('"' + hashes, j + 2 + len(hashes))
                    j = n if end < 0 else end + 1 + len(hashes)
                    continue
                j += 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j += 1
                continue
            if c == "'" and re.match(r"'(\\.|[^\\'])'", text[j:]):
                j += len(re.match(r"'(\\.|[^\\'])'", text[j:]).group(0))
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


MACRO = re.compile(r"\b(counter|gauge|histogram)!\s*\(\s*([^,)\s]+)")
CONST = re.compile(r'\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:\'static\s+)?str\s*=\s*"(lamina_[a-z0-9_]+)"')
HAND_TYPE = re.compile(r"#\s*TYPE\s+(lamina_[a-z0-9_]+)\s+(counter|gauge|histogram|summary|untyped)")
HAND_HELPER = re.compile(r'"(lamina_[a-z0-9_]+)"\s*,\s*"(counter|gauge|histogram|summary|untyped)"')


def emitted_metrics() -> dict[str, tuple[str, str]]:
    """name -> (kind, file) of every metric the workspace's non-test code emits."""
    found: dict[str, tuple[str, str]] = {}
    consts: dict[str, str] = {}
    texts = {p: strip_test_modules(p.read_text(errors="replace")) for p in rust_sources()}
    for text in texts.values():
        for name, value in CONST.findall(text):
            consts.setdefault(name, value)
    unresolved = []
    for p, text in texts.items():
        for kind, arg in MACRO.findall(text):
            arg = arg.strip()
            if arg.startswith('"'):
                name = arg.strip('"')
            else:
                name = consts.get(arg.split("::")[-1])
                if name is None:
                    unresolved.append(f"{rel(p)}: {kind}!({arg}, ...)")
                    continue
            if name.startswith("lamina_"):
                found.setdefault(name, (kind, rel(p)))
        for regex in (HAND_TYPE, HAND_HELPER):
            for name, kind in regex.findall(text):
                found.setdefault(name, (kind, rel(p)))
    for u in unresolved:
        notes.append(f"metric name not resolvable statically (ignored): {u}")
    return found


def series_names(name: str, kind: str) -> set[str]:
    """The series names a metric appears under in the exposition. lamina-telemetry
    renders histograms as Prometheus histograms (`_bucket` with `le`, `_sum`, `_count`)."""
    if kind in ("histogram", "summary"):
        return {name, name + "_sum", name + "_count", name + "_bucket"}
    return {name}


def known_series(emitted: dict[str, tuple[str, str]]) -> set[str]:
    out: set[str] = set()
    for name, (kind, _) in emitted.items():
        out |= series_names(name, kind)
    return out


# ---------------------------------------------------------------------------------------
# PromQL: metric names used by an expression
# ---------------------------------------------------------------------------------------

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2", "inf", "nan", "start", "end",
}


def promql_metric_names(expr: str) -> set[str]:
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    s = re.sub(r"'(?:\\.|[^'\\])*'", "''", s)
    s = re.sub(r"#[^\n]*", "", s)  # comments
    s = re.sub(r"\{[^{}]*\}", "{}", s)  # label matchers
    s = re.sub(r"\[[^\[\]]*\]", "[]", s)  # ranges and subqueries
    # label lists of grouping/matching modifiers
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)", s):
        word = m.group(1)
        rest = s[m.end() :].lstrip()
        if word.lower() in PROMQL_KEYWORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def check_names(where: str, expr: str, known: set[str]) -> list[str]:
    missing = []
    for name in sorted(promql_metric_names(expr)):
        if name in PROMETHEUS_BUILTINS:
            continue
        if not name.startswith("lamina_"):
            missing.append(f"{name} (not a lamina_ metric nor a Prometheus built-in)")
        elif name not in known:
            missing.append(name)
    return [f"{where}: metric {m} is not emitted by any code in the workspace" for m in missing]


def rule_exprs(path: Path) -> list[tuple[str, str]]:
    doc = yaml.safe_load(path.read_text())
    out = []
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            out.append((f"{rel(path)}: {g['name']}/{r.get('alert') or r.get('record')}", r["expr"]))
    return out


# ---------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------


def dashboard_files() -> list[Path]:
    return sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def all_panels(panels: list) -> list:
    out = []
    for p in panels:
        out.append(p)
        out.extend(all_panels(p.get("panels", [])))
    return out


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    d = json.loads(path.read_text())
    out = []
    for p in all_panels(d.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((f"{rel(path)}: panel {p.get('id')} {p.get('title')!r} {t.get('refId')}", t["expr"]))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", q or "")
            if m:
                out.append((f"{rel(path)}: variable {v['name']}", m.group(1)))
    return out


def substitute(expr: str) -> str:
    for k in sorted(GRAFANA_SUBST, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_SUBST[k])
    return expr


def check_dashboard(path: Path, provisioned_uids: set[str]) -> None:
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        problem(f"{rel(path)}: not JSON: {e}")
        return
    for key in ("uid", "title", "schemaVersion", "panels"):
        if key not in d:
            problem(f"{rel(path)}: missing {key!r}")
    variables = {v.get("name") for v in d.get("templating", {}).get("list", [])}
    builtins = {"__rate_interval", "__interval", "__range", "__all"}
    ids = set()
    for p in all_panels(d.get("panels", [])):
        where = f"{rel(path)}: panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            problem(f"{where}: duplicate panel id")
        ids.add(p.get("id"))
        gp = p.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
            problem(f"{where}: bad gridPos {gp}")
        if p.get("type") in ("row", "text"):
            continue
        ds = p.get("datasource", {})
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        if uid not in provisioned_uids and uid != "${datasource}":
            problem(f"{where}: data source {uid!r} is neither ${{datasource}} nor a provisioned uid")
        if not p.get("targets"):
            problem(f"{where}: no queries")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(refs) != len(set(refs)) or None in refs:
            problem(f"{where}: refIds missing or repeated: {refs}")
        for t in p.get("targets", []):
            for var in re.findall(r"\$\{?(\w+)", t.get("expr", "")):
                if var not in variables and var not in builtins:
                    problem(f"{where}: query uses ${var}, which is not a dashboard variable")
    dsvars = [v for v in d.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
    for v in dsvars:
        if v.get("current", {}).get("value") not in provisioned_uids:
            problem(f"{rel(path)}: data source variable defaults to {v.get('current')}, not a provisioned uid")


def dashboard_rules(out: Path) -> None:
    """The dashboards' queries as recording rules (Grafana variables substituted)."""
    rules = []
    for path in dashboard_files():
        for i, (where, expr) in enumerate(dashboard_queries(path)):
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:q{i}", "expr": substitute(expr)})
    out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    print(f"{len(rules)} dashboard queries written to {out}")


# ---------------------------------------------------------------------------------------
# Topology: the generator's plan against compose, Prometheus and Kubernetes
# ---------------------------------------------------------------------------------------


def plan(target: str) -> list[dict]:
    r = subprocess.run(["bash", str(GEN), "--target", target, "--plan"], capture_output=True, text=True, check=True)
    nodes = []
    for line in r.stdout.splitlines():
        name, module, addr, chain = line.split()
        ip, port = addr.rsplit(":", 1)
        nodes.append({"name": name, "module": module, "ip": ip, "port": int(port), "chain": chain})
    return nodes


def duration_s(v) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)", str(v)):
        total += float(num) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def node_shutdown_grace_s() -> float:
    src = ROOT / "node" / "src" / "config.rs"
    m = re.search(r"NodeSection\s*\{[^}]*shutdown_grace_ms:\s*([0-9_]+)", src.read_text())
    if not m:
        problem(f"{rel(src)}: cannot find the default [node] shutdown_grace_ms (update check_artifacts.py)")
        return 10.0
    return int(m.group(1).replace("_", "")) / 1000


def check_compose(nodes: list[dict], grace: float) -> None:
    path = DEPLOY / "compose" / "compose.yaml"
    c = yaml.safe_load(path.read_text())
    services = c.get("services", {})
    where = rel(path)
    names = {n["name"] for n in nodes}
    lamina_services = {k for k, v in services.items() if "lamina-probe" in json.dumps(v.get("healthcheck", {}))}
    if lamina_services != names:
        problem(f"{where}: node services {sorted(lamina_services)} differ from the generator's {sorted(names)}")
    net = (c.get("networks", {}).get("lamina") or {}).get("ipam", {}).get("config", [{}])[0]
    subnet = ipaddress.ip_network(net.get("subnet", "0.0.0.0/32"))
    ip_range = ipaddress.ip_network(net["ip_range"]) if "ip_range" in net else None
    init = services.get("init", {})
    init_vols = {str(v).split(":")[1] for v in init.get("volumes", [])}
    for n in nodes:
        s = services.get(n["name"])
        if s is None:
            continue
        w = f"{where}: service {n['name']}"
        if s.get("command", [None])[0] != n["module"] or s.get("command", [None, None])[1] != "start":
            problem(f"{w}: command {s.get('command')} is not [{n['module']!r}, 'start']")
        ip = (s.get("networks", {}).get("lamina") or {}).get("ipv4_address")
        if ip != n["ip"]:
            problem(f"{w}: ipv4_address {ip} but genesis (gen-network.sh --target compose) lists {n['ip']}")
        elif ipaddress.ip_address(ip) not in subnet or (ip_range and ipaddress.ip_address(ip) in ip_range):
            problem(f"{w}: {ip} must be in {subnet} and outside the dynamic ip_range {ip_range}")
        test = s.get("healthcheck", {}).get("test", [])
        if "/readyz" not in test:
            problem(f"{w}: healthcheck {test} does not probe /readyz")
        sgp = duration_s(s.get("stop_grace_period", "10s"))
        if sgp < grace + STOP_MARGIN_S:
            problem(f"{w}: stop_grace_period {sgp}s < shutdown grace {grace}s + {STOP_MARGIN_S}s")
        if s.get("stop_signal", "SIGTERM") != "SIGTERM":
            problem(f"{w}: stop_signal must be SIGTERM")
        vols = [str(v) for v in s.get("volumes", [])]
        if f"{n['name']}:/var/lib/lamina" not in vols:
            problem(f"{w}: its home volume {n['name']} is not mounted at /var/lib/lamina")
        if f"/homes/{n['name']}" not in init_vols:
            problem(f"{where}: the init service does not mount {n['name']}'s home at /homes/{n['name']}")
        if s.get("depends_on", {}).get("init", {}).get("condition") != "service_completed_successfully":
            problem(f"{w}: must wait for init (service_completed_successfully)")
        env = s.get("environment", {})
        if env.get("LAMINA_HOME") != "/var/lib/lamina" or not str(env.get("LAMINA_ADMIN_ADDR", "")).endswith(":9100"):
            problem(f"{w}: LAMINA_HOME/LAMINA_ADMIN_ADDR must be /var/lib/lamina and *:9100 (the image's probe port)")
    cmd = init.get("command", [])
    if "--target" not in cmd or cmd[cmd.index("--target") + 1] != "compose":
        problem(f"{where}: the init service must run gen-network with --target compose")


def check_prometheus_targets(nodes: list[dict]) -> None:
    path = DEPLOY / "prometheus" / "prometheus.yml"
    p = yaml.safe_load(path.read_text())
    job = next((j for j in p.get("scrape_configs", []) if j.get("job_name") == "lamina"), None)
    if job is None:
        problem(f"{rel(path)}: no job `lamina`")
        return
    scraped = {}
    for sc in job.get("static_configs", []):
        for t in sc.get("targets", []):
            scraped[t] = sc.get("labels", {}).get("module")
    want = {f"{n['name']}:9100": n["module"] for n in nodes}
    if scraped != want:
        problem(f"{rel(path)}: job lamina scrapes {scraped}, expected {want} (every compose node, with its module)")
    rules = {str(DEPLOY / "prometheus" / r) for r in p.get("rule_files", [])}
    if str(DEPLOY / "prometheus" / "rules.pending.yml") in rules:
        problem(f"{rel(path)}: must not load rules.pending.yml")


def k8s_docs() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((DEPLOY / "k8s" / "base").glob("*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if d:
                out.append((path, d))
    return out


def check_k8s(nodes: list[dict], grace: float) -> None:
    docs = k8s_docs()
    kust = next((d for p, d in docs if d.get("kind") == "Kustomization"), None)
    if kust is None:
        problem("deploy/k8s/base: no kustomization.yaml")
    else:
        for r in kust.get("resources", []):
            if not (DEPLOY / "k8s" / "base" / r).exists():
                problem(f"deploy/k8s/base/kustomization.yaml: resource {r} does not exist")
        listed = set(kust.get("resources", []))
        for p in sorted((DEPLOY / "k8s" / "base").glob("*.yaml")):
            if p.name != "kustomization.yaml" and p.name not in listed:
                problem(f"deploy/k8s/base/kustomization.yaml: {p.name} is not listed")
    services = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "Service"}
    pdbs = [d for _, d in docs if d.get("kind") == "PodDisruptionBudget"]
    by_module: dict[str, int] = {}
    for n in nodes:
        by_module[n["module"]] = by_module.get(n["module"], 0) + 1
    seen = set()
    for path, d in docs:
        if d.get("kind") != "StatefulSet":
            continue
        name = d["metadata"]["name"]
        w = f"{rel(path)}: StatefulSet {name}"
        seen.add(name)
        spec = d["spec"]
        if spec.get("replicas") != by_module.get(name):
            problem(f"{w}: replicas {spec.get('replicas')} but the network has {by_module.get(name)} {name} nodes")
        if spec.get("podManagementPolicy") != "Parallel":
            problem(f"{w}: podManagementPolicy must be Parallel (pods become ready only together)")
        svc = services.get(spec.get("serviceName"))
        if not svc or svc["spec"].get("clusterIP") != "None" or not svc["spec"].get("publishNotReadyAddresses"):
            problem(f"{w}: serviceName must name a headless Service with publishNotReadyAddresses")
        sel = spec["selector"]["matchLabels"]
        tpl = spec["template"]
        if any(tpl["metadata"]["labels"].get(k) != v for k, v in sel.items()):
            problem(f"{w}: selector {sel} does not match the pod labels")
        if tpl["metadata"]["labels"].get("app.kubernetes.io/component") != name:
            problem(f"{w}: pods need app.kubernetes.io/component={name} (Prometheus' module label)")
        ps = tpl["spec"]
        if ps.get("terminationGracePeriodSeconds", 30) < grace + STOP_MARGIN_S:
            problem(f"{w}: terminationGracePeriodSeconds below shutdown grace {grace}s + {STOP_MARGIN_S}s")
        if not ps.get("securityContext", {}).get("runAsNonRoot"):
            problem(f"{w}: pod securityContext must set runAsNonRoot")
        main = next((c for c in ps["containers"] if c["name"] == "lamina"), None)
        if main is None:
            problem(f"{w}: no container `lamina`")
            continue
        if main.get("args") != [name, "start"]:
            problem(f"{w}: container args {main.get('args')} are not [{name!r}, 'start']")
        ports = {p["name"]: p for p in main.get("ports", [])}
        if ports.get("admin", {}).get("containerPort") != 9100 or ports.get("quic", {}).get("protocol") != "UDP":
            problem(f"{w}: needs ports admin (9100/TCP) and quic (UDP)")
        env = {e["name"]: e.get("value") for e in main.get("env", [])}
        if not str(env.get("LAMINA_ADMIN_ADDR", "")).endswith(":9100"):
            problem(f"{w}: LAMINA_ADMIN_ADDR must serve on port 9100 (the probes' port)")
        if env.get("LAMINA_LISTEN_ADDR", "").split(":")[0] != "0.0.0.0":
            problem(f"{w}: LAMINA_LISTEN_ADDR must bind 0.0.0.0 (genesis lists the Service ClusterIP)")
        for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            hg = main.get(probe, {}).get("httpGet", {})
            if hg.get("path") != path_ or hg.get("port") not in ("admin", 9100):
                problem(f"{w}: {probe} must GET {path_} on the admin port")
        if main.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
            problem(f"{w}: container must set allowPrivilegeEscalation: false")
        secrets = [v["secret"]["secretName"] for v in ps.get("volumes", []) if "secret" in v]
        if secrets != [f"lamina-keys-{name}"]:
            problem(f"{w}: key Secret {secrets} is not lamina-keys-{name} (what gen-network.sh writes)")
        cms = [v["configMap"]["name"] for v in ps.get("volumes", []) if "configMap" in v]
        if cms != ["lamina-genesis"]:
            problem(f"{w}: genesis ConfigMap {cms} is not lamina-genesis")
        if not spec.get("volumeClaimTemplates"):
            problem(f"{w}: no volumeClaimTemplates for the home")
        if by_module.get(name, 0) > 1 and not any(p["spec"]["selector"]["matchLabels"] == sel for p in pdbs):
            problem(f"{w}: no PodDisruptionBudget selects its pods")
    missing = set(by_module) - seen
    if missing:
        problem(f"deploy/k8s/base: no StatefulSet for {sorted(missing)}")


def check_k8s_services(nodes_k8s: list[dict], generated: Path) -> None:
    docs = [d for d in yaml.safe_load_all(generated.read_text()) if d]
    ips = {d["metadata"]["name"]: d["spec"]["clusterIP"] for d in docs}
    want = {n["name"]: n["ip"] for n in nodes_k8s}
    if ips != want:
        problem(f"gen-network.sh --services-only: ClusterIPs {ips} differ from the genesis addresses {want}")


# ---------------------------------------------------------------------------------------
# Dockerfile and systemd semantics
# ---------------------------------------------------------------------------------------


def check_dockerfile() -> None:
    path = DEPLOY / "docker" / "Dockerfile"
    text = path.read_text()
    final = text[text.rfind("\nFROM ") :]
    w = rel(path)
    if not re.search(r'^ENTRYPOINT \["lamina"\]\s*$', final, re.M):
        problem(f'{w}: the final stage needs ENTRYPOINT ["lamina"] (exec form: lamina is PID 1)')
    if not re.search(r"^STOPSIGNAL SIGTERM\s*$", final, re.M):
        problem(f"{w}: needs STOPSIGNAL SIGTERM")
    if not re.search(r"^HEALTHCHECK .*CMD .*/readyz", final, re.M):
        problem(f"{w}: needs a HEALTHCHECK on /readyz")
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem(f"{w}: the final stage must run as a non-root USER")
    for src in re.findall(r"^COPY (?!--from)(\S+) ", final, re.M):
        if not (ROOT / src).exists():
            problem(f"{w}: COPY source {src} does not exist")


def check_systemd(grace: float) -> None:
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        text = path.read_text()
        w = rel(path)
        m = re.search(r"^TimeoutStopSec=(\S+)", text, re.M)
        if not m or duration_s(m.group(1)) < grace + STOP_MARGIN_S:
            problem(f"{w}: TimeoutStopSec must be at least shutdown grace {grace}s + {STOP_MARGIN_S}s")
        for key in ("LimitNOFILE=", "StateDirectory=", "Restart=on-failure", "NoNewPrivileges=yes", "KillSignal=SIGTERM"):
            if not re.search(rf"^{re.escape(key)}", text, re.M):
                problem(f"{w}: missing {key}")
        if re.search(r"^User=root", text, re.M) or not re.search(r"^User=\S+", text, re.M):
            problem(f"{w}: must run as a dedicated non-root User=")


# ---------------------------------------------------------------------------------------


def provisioned_datasource_uids() -> set[str]:
    uids = set()
    for p in sorted((DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.yml")):
        for ds in yaml.safe_load(p.read_text()).get("datasources", []):
            uids.add(ds.get("uid"))
    return uids


def cmd_all() -> int:
    emitted = emitted_metrics()
    known = known_series(emitted)
    if not emitted:
        problem("found no emitted metrics at all: the scan of the Rust sources is broken")
    used = 0
    for path in [DEPLOY / "prometheus" / "rules.yml"]:
        for where, expr in rule_exprs(path):
            used += 1
            for p in check_names(where, expr, known):
                problem(p)
    uids = provisioned_datasource_uids()
    for path in dashboard_files():
        check_dashboard(path, uids)
        for where, expr in dashboard_queries(path):
            used += 1
            for p in check_names(where, substitute(expr), known):
                problem(p)
    pending = DEPLOY / "prometheus" / "rules.pending.yml"
    for where, expr in rule_exprs(pending):
        if not check_names(where, expr, known):
            notes.append(f"{where}: every metric it needs is now emitted; move it to rules.yml (with a test)")

    grace = node_shutdown_grace_s()
    nodes = plan("compose")
    check_compose(nodes, grace)
    check_prometheus_targets(nodes)
    check_k8s(nodes, grace)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(GEN), "--target", "k8s", "--services-only", "--out", tmp], check=True)
        check_k8s_services(plan("k8s"), Path(tmp) / "quic-services.yaml")
    check_dockerfile()
    check_systemd(grace)

    for n in notes:
        print(f"note: {n}")
    print(f"{len(emitted)} metric names emitted by the code; {used} rule and dashboard queries checked")
    if problems:
        for p in problems:
            print(f"problem: {p}", file=sys.stderr)
        return 1
    print("all consistent")
    return 0


# Series that exist only after an event (a fault, a slash, a view timeout, a light-client
# sample): a healthy network need not show them, so live-metrics lists them without
# failing. Every other series a rule or panel uses must be on some node's /metrics.
EVENT_ONLY = {
    "lamina_net_errors_total",
    "lamina_net_handshake_failures_total",
    "lamina_settlement_slashed_total",
    "lamina_consensus_timeouts_total",
    "lamina_da_misbehaving_answers_total",
    "lamina_da_samples_total",
}


def cmd_live(files: list[str]) -> int:
    """Every lamina_* series in live /metrics output must be known to the static scan
    (otherwise the scan misses a way the code emits metrics), and every series the rules
    and dashboards use must be emitted by one of these running nodes, except the
    EVENT_ONLY ones (listed, not failed)."""
    emitted = emitted_metrics()
    known = known_series(emitted)
    live: set[str] = set()
    helped: set[str] = set()
    for f in files:
        for line in Path(f).read_text().splitlines():
            if line.startswith("# HELP "):
                helped.add(line.split()[2])
            elif line and not line.startswith("#"):
                live.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    unknown = sorted(n for n in live if n.startswith("lamina_") and n not in known)
    for n in unknown:
        problem(f"live metric {n} is not found by the static scan of the code (fix emitted_metrics())")
    # Every series says what it is: `# HELP` text (describe_* in the emitting crate's
    # describe_metrics()).
    for n in sorted(n for n in live if n.startswith("lamina_")):
        base = n.removesuffix("_sum").removesuffix("_count").removesuffix("_bucket")
        if base not in helped and n not in helped:
            problem(f"live metric {n} has no # HELP text (add it to its crate's describe_metrics())")
    used: set[str] = set()
    for _, expr in rule_exprs(DEPLOY / "prometheus" / "rules.yml"):
        used |= promql_metric_names(expr)
    for path in dashboard_files():
        for _, expr in dashboard_queries(path):
            used |= promql_metric_names(substitute(expr))
    idle = sorted(n for n in used - live if n.startswith("lamina_"))
    print(f"{len(live)} live series names from {len(files)} nodes; rules and dashboards use {len(used)} names")
    for n in idle:
        base = n.removesuffix("_sum").removesuffix("_count").removesuffix("_bucket")
        where = emitted.get(base, ("?", "?"))[1]
        if n in EVENT_ONLY or base in EVENT_ONLY:
            print(f"  event-only, not seen on these nodes: {n}  ({where})")
        elif base not in emitted:
            problem(f"{n} is used by a rule or dashboard but no code emits it")
        else:
            problem(f"{n} is used by a rule or dashboard and emitted by the code ({where}), but no running node exposes it")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


def prom_get(url: str, path: str, **params) -> dict:
    import urllib.parse
    import urllib.request

    q = ("?" + urllib.parse.urlencode(params)) if params else ""
    with urllib.request.urlopen(f"{url}{path}{q}", timeout=10) as r:
        body = json.loads(r.read().decode())
    if body.get("status") != "success":
        raise RuntimeError(f"{path}{q}: {body}")
    return body["data"]


def cmd_live_prometheus(url: str, targets: int, timeout_s: float = 60) -> int:
    """Waits until Prometheus has scraped every target twice and evaluated the rules,
    then checks targets, rule health, alerts and every dashboard query."""
    import time

    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        try:
            up = prom_get(url, "/api/v1/query", query='count_over_time(up{job="lamina"}[1m]) >= 3')
            groups = prom_get(url, "/api/v1/rules")["groups"]
            evaluated = all(r.get("lastEvaluation", "").startswith("2") and r.get("evaluationTime", 0) > 0
                            for g in groups for r in g["rules"])
            if len(up["result"]) == targets and groups and evaluated:
                break
            last = f"{len(up['result'])}/{targets} targets scraped 3 times, rules evaluated: {evaluated}"
        except Exception as e:  # Prometheus still starting
            last = str(e)
        if time.monotonic() > deadline:
            problem(f"Prometheus did not scrape every target and evaluate the rules within {timeout_s}s: {last}")
            break
        time.sleep(1)
    if not problems:
        up = prom_get(url, "/api/v1/query", query='up{job="lamina"}')["result"]
        down = [r["metric"].get("node") for r in up if r["value"][1] != "1"]
        if len(up) != targets or down:
            problem(f"targets: {len(up)} of {targets} present, down: {down}")
        for g in prom_get(url, "/api/v1/rules")["groups"]:
            for r in g["rules"]:
                if r.get("health") != "ok":
                    problem(f"rule {g['name']}/{r['name']}: health {r.get('health')}: {r.get('lastError')}")
        active = prom_get(url, "/api/v1/alerts")["alerts"]
        for a in active:
            problem(f"alert {a['labels'].get('alertname')} is {a['state']} on a healthy network: {a['labels']}")
        empty = []
        n = 0
        for path in dashboard_files():
            for where, expr in dashboard_queries(path):
                n += 1
                try:
                    res = prom_get(url, "/api/v1/query", query=substitute(expr))["result"]
                except Exception as e:
                    problem(f"{where}: query failed: {e}")
                    continue
                if not res:
                    empty.append(where)
        print(f"Prometheus: {len(up)} targets up, rules healthy, {len(active)} alerts active, "
              f"{n} dashboard queries ran ({n - len(empty)} with data)")
        if empty:
            print("dashboard queries without data on this network (their metrics are not emitted by these nodes yet):")
            for w in empty:
                print(f"  {w}")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_compose_env(service: str) -> int:
    c = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    env = c["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    for k, v in env.items():
        v = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
        if "$" in v:
            print(f"compose-env: cannot resolve {k}={v}", file=sys.stderr)
            return 1
        print(f"{k}={v}")
    return 0


def cmd_k8s_init_script(module: str) -> int:
    for _, d in k8s_docs():
        if d.get("kind") == "StatefulSet" and d["metadata"]["name"] == module:
            init = d["spec"]["template"]["spec"]["initContainers"][0]
            print(init["args"][0], end="")
            return 0
    print(f"no StatefulSet {module}", file=sys.stderr)
    return 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("all")
    dr = sub.add_parser("dashboard-rules")
    dr.add_argument("--out", required=True, type=Path)
    lm = sub.add_parser("live-metrics")
    lm.add_argument("files", nargs="+")
    lp = sub.add_parser("live-prometheus")
    lp.add_argument("--url", required=True)
    lp.add_argument("--targets", required=True, type=int)
    ki = sub.add_parser("k8s-init-script")
    ki.add_argument("module")
    ce = sub.add_parser("compose-env")
    ce.add_argument("service")
    sub.add_parser("emitted")
    a = ap.parse_args()
    if a.cmd == "all":
        return cmd_all()
    if a.cmd == "dashboard-rules":
        dashboard_rules(a.out)
        return 0
    if a.cmd == "live-metrics":
        return cmd_live(a.files)
    if a.cmd == "k8s-init-script":
        return cmd_k8s_init_script(a.module)
    if a.cmd == "compose-env":
        return cmd_compose_env(a.service)
    if a.cmd == "live-prometheus":
        return cmd_live_prometheus(a.url, a.targets)
    for name, (kind, f) in sorted(emitted_metrics().items()):
        print(f"{name}\t{kind}\t{f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
