#!/usr/bin/env python3
"""Layering check: keeps DESIGN.md's dependency rules true.

Reads `cargo metadata` (the resolved graph) and every member's Cargo.toml, and fails if:

1. a pure crate (lamina-primitives, lamina-interfaces, any *-core) depends, directly or
   transitively through normal dependencies, on tokio, quinn, quinn-proto, memmap2,
   lamina-net, lamina-store, lamina-telemetry or any service crate; a layer's client
   crate (`<layer>/client`) reaches lamina-store or a service crate;
2. a crate of one layer (consensus, data-availability, execution, settlement, bridge)
   depends on a crate of another layer;
3. lamina-test-utils appears as a normal or build dependency anywhere;
4. imports do not point downward (e.g. a core crate depending on a service crate,
   primitives depending on another lamina crate, a library depending on an app);
5. lamina-telemetry is used by anything but an app (node, benches);
6. a member declares a dependency without `workspace = true` (one version table);
7. lamina-node depends on lamina-benches other than as an optional dependency (the load
   harness is behind the binary's `bench` feature, so an operator's build leaves it out);
8. the files of `node/src` import each other in a cycle (`crate::x` paths outside tests):
   shared pieces live in leaf files, and the command files sit above them.

Usage: scripts/check-layering.py [--self-test]
"""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

LAYERS = ["consensus", "data-availability", "execution", "settlement", "bridge", "governance"]
PURE_FORBIDDEN = {"tokio", "quinn", "quinn-proto", "memmap2", "lamina-net", "lamina-store", "lamina-telemetry"}
APPS = {"lamina-node", "lamina-benches", "lamina-examples"}

# Which lamina crates each kind of crate may depend on (normal deps).
def allowed_lamina_deps(kind, layer):
    if kind == "primitives":
        return set()
    if kind == "interfaces":
        return {"lamina-primitives"}
    if kind in ("net", "store"):
        return {"lamina-primitives", "lamina-interfaces"}
    if kind == "telemetry":
        return {"lamina-primitives", "lamina-interfaces"}  # serves interfaces::Health
    if kind == "test-utils":
        return {"lamina-primitives", "lamina-interfaces", "lamina-store", "lamina-net"}
    if kind == "core":
        return {"lamina-primitives", "lamina-interfaces"}
    if kind == "client":
        # a layer's clients: its protocols' messages and typed clients, no service internals
        return {"lamina-primitives", "lamina-interfaces", "lamina-net", f"core:{layer}"}
    if kind == "service":
        return {"lamina-primitives", "lamina-interfaces", "lamina-net", "lamina-store", f"core:{layer}", f"client:{layer}"}
    if kind == "app":
        return None  # anything
    return set()


def classify(pkg, root):
    rel = Path(pkg["manifest_path"]).parent.relative_to(root).as_posix()
    name = pkg["name"]
    if name in APPS:
        return "app", None
    if rel.startswith("common/"):
        return rel.split("/")[1], None
    for layer in LAYERS:
        if rel.startswith(layer + "/"):
            return rel.split("/")[1], layer  # core | service
    return "unknown", None


def check(meta, root):
    errors = []
    members = {p["id"]: p for p in meta["packages"] if p["id"] in set(meta["workspace_members"])}
    by_id = {p["id"]: p for p in meta["packages"]}
    name_of = {pid: by_id[pid]["name"] for pid in by_id}
    info = {pid: classify(p, root) for pid, p in members.items()}
    layer_of_name = {members[pid]["name"]: info[pid] for pid in members}

    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}

    def normal_deps(pid):
        out = []
        for d in nodes[pid]["deps"]:
            kinds = {k["kind"] for k in d["dep_kinds"]}
            if None in kinds:  # normal dependency
                out.append(d["pkg"])
        return out

    def closure(pid):
        seen, stack = set(), [pid]
        while stack:
            for d in normal_deps(stack.pop()):
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return seen

    for pid, pkg in members.items():
        name = pkg["name"]
        kind, layer = info[pid]
        trans = closure(pid)
        trans_names = {name_of[d] for d in trans}
        direct = {name_of[d] for d in normal_deps(pid)}

        # 1. purity
        if kind in ("primitives", "interfaces", "core"):
            bad = (trans_names & PURE_FORBIDDEN) | {n for n in trans_names if n.endswith("-service")}
            if bad:
                errors.append(f"{name} is pure but depends (transitively) on {sorted(bad)}")

        # 1b. clients carry no service internals (storage, servers)
        if kind == "client":
            bad = ({"lamina-store"} & trans_names) | {
                n for n in trans_names if n.startswith("lamina-") and n.endswith("-service")
            }
            if bad:
                errors.append(f"{name} is a client but depends (transitively) on {sorted(bad)}")

        # 2. no cross-layer dependency
        if layer:
            for dn in trans_names:
                dk = layer_of_name.get(dn)
                if dk and dk[1] and dk[1] != layer:
                    errors.append(f"{name} (layer {layer}) depends on {dn} (layer {dk[1]})")

        # 3. test-utils only as a dev-dependency
        for d in nodes[pid]["deps"]:
            if name_of[d["pkg"]] == "lamina-test-utils":
                kinds = {k["kind"] for k in d["dep_kinds"]}
                if None in kinds or "build" in kinds:
                    errors.append(f"{name} has lamina-test-utils as a normal/build dependency")
        if "lamina-test-utils" in trans_names and kind != "test-utils":
            errors.append(f"{name} reaches lamina-test-utils through normal dependencies")

        # 4. downward only
        allowed = allowed_lamina_deps(kind, layer)
        if allowed is not None:
            for dn in direct:
                if not dn.startswith("lamina-"):
                    continue
                dk = layer_of_name.get(dn)
                ok = dn in allowed or (dk and dk[0] in ("core", "client") and f"{dk[0]}:{dk[1]}" in allowed)
                if not ok:
                    errors.append(f"{name} ({kind}) may not depend on {dn}")

        # 5. telemetry only in apps
        if kind != "app" and "lamina-telemetry" in direct:
            errors.append(f"{name} is a library but depends on lamina-telemetry (apps only)")

        # 6. one version table
        manifest = tomllib.loads(Path(pkg["manifest_path"]).read_text())
        tables = [manifest.get(t, {}) for t in ("dependencies", "dev-dependencies", "build-dependencies")]
        for target in manifest.get("target", {}).values():
            tables += [target.get(t, {}) for t in ("dependencies", "dev-dependencies", "build-dependencies")]
        for table in tables:
            for dep, spec in table.items():
                if not (isinstance(spec, dict) and spec.get("workspace") is True):
                    errors.append(f"{name}: dependency {dep} must use `workspace = true`")

        # 7. the binary reaches the harness only through a feature
        if name == "lamina-node":
            spec = manifest.get("dependencies", {}).get("lamina-benches")
            if spec is not None and not (isinstance(spec, dict) and spec.get("optional") is True):
                errors.append("lamina-node depends on lamina-benches without a feature (make it optional, behind `bench`)")

        if kind == "unknown":
            errors.append(f"{name} lives outside the layout of DESIGN.md ({pkg['manifest_path']})")
    return errors


def file_cycles(src):
    """Cycles among the files of one crate's `src`, from their `crate::` paths (test
    modules and comments left out). Returns each cycle's files, sorted."""
    import re

    files = {}
    for f in sorted(Path(src).rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("").as_posix()
        files[rel[: -len("/mod")] if rel.endswith("/mod") else rel] = f
    edges = {m: set() for m in files}
    for m, f in files.items():
        text = f.read_text()
        cut = text.find("#[cfg(test)]\nmod tests")
        text = text if cut < 0 else text[:cut]
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))
        for a, b in re.findall(r"crate::([a-z_0-9]+)(?:::([a-z_0-9]+))?", text):
            for c in ([f"{a}/{b}", a] if b else [a]):
                if c in files:
                    if c != m:
                        edges[m].add(c)
                    break
    return strongly_connected(edges)


def strongly_connected(edges):
    """Tarjan's algorithm: the strongly connected components with more than one node."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def self_test():
    """The checker must catch a planted violation (a check that cannot fail is no check)."""
    import copy

    root = Path(__file__).resolve().parent.parent
    meta = load(root)
    assert check(meta, root) == [], "self-test needs a clean tree"
    bad = copy.deepcopy(meta)
    ids = {p["name"]: p["id"] for p in bad["packages"]}
    tokio = ids.get("tokio")
    prim = ids["lamina-primitives"]
    exec_core = ids["lamina-execution-core"]
    da_core = ids["lamina-da-core"]
    for n in bad["resolve"]["nodes"]:
        if n["id"] == prim and tokio:
            n["deps"].append({"pkg": tokio, "dep_kinds": [{"kind": None}]})
        if n["id"] == exec_core:
            n["deps"].append({"pkg": da_core, "dep_kinds": [{"kind": None}]})
    client = ids.get("lamina-consensus-client")
    service = ids["lamina-consensus-service"]
    for n in bad["resolve"]["nodes"]:
        if n["id"] == client:
            n["deps"].append({"pkg": service, "dep_kinds": [{"kind": None}]})
    errs = check(bad, root)
    assert not client or any("is a client but depends" in e for e in errs), errs
    assert any("lamina-primitives is pure" in e for e in errs) or not tokio, errs
    assert any("layer execution" in e and "lamina-da-core" in e for e in errs), errs
    cycle = strongly_connected({"cli": {"client"}, "client": {"cli"}, "args": set()})
    assert cycle == [["cli", "client"]], cycle
    print("layering self-test: planted violations detected")


def load(root):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline"],
        cwd=root, check=False, capture_output=True, text=True,
    )
    if out.returncode != 0:
        out = subprocess.run(["cargo", "metadata", "--format-version", "1"], cwd=root, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    root = Path(__file__).resolve().parent.parent
    if "--self-test" in sys.argv:
        self_test()
        return 0
    errors = check(load(root), root)
    for cycle in file_cycles(root / "node" / "src"):
        errors.append(f"node/src files import each other in a cycle: {' -> '.join(cycle)}")
    for e in errors:
        print(f"layering: {e}", file=sys.stderr)
    if errors:
        print(f"layering check FAILED ({len(errors)} problems)", file=sys.stderr)
        return 1
    print("layering check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
