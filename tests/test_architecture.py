"""The package's floors (docs/index.md): no module of ``scratchvae`` imports, directly or
through others, a module that imports it back, counting the imports inside functions too; no
function-local import of scratchvae's own modules at all (the only reason for one would be to
dodge a cycle); each constant of the run folder defined once."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scratchvae"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool):
    """The scratchvae modules one import statement loads (explicitly named ones only)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "scratchvae"]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "scratchvae":
        return []
    submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    # "from .pkg import name" runs pkg/__init__ for a name it defines; "from . import sub" only sub
    named_in_package = len(submodules) < len(node.names)
    return ([target] if target in MODULES and named_in_package else []) + submodules


def imports_of(name: str):
    """``[(imported module, line, inside a function)]`` for module ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in resolve(name, child, path.name == "__init__.py"):
                    out.append((target, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


GRAPH = {name: sorted({t for t, _, _ in imports_of(name) if t != name}) for name in MODULES}


def find_cycle(graph):
    """One cycle as a list of modules, or None (depth-first search, three colours)."""
    colour, stack = {}, []

    def dfs(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in sorted(graph):
        if node not in colour:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    assert len(GRAPH) > 40  # every module was read
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    planted = dict(GRAPH)
    planted["scratchvae.runs.config"] = GRAPH["scratchvae.runs.config"] + ["scratchvae.training"]
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1] and "scratchvae.training" in cycle


def test_a_function_local_import_is_counted(tmp_path):
    source = "def f():\n    from .training import train\n"
    tree = ast.parse(source)
    func = tree.body[0]
    assert resolve("scratchvae.runs_fake", func.body[0], False) == ["scratchvae.training"]


def test_no_function_local_import_of_scratchvae_modules():
    local = [f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}"
             for name in MODULES for target, line, inside in imports_of(name) if inside]
    assert local == []


@pytest.mark.parametrize("lower, upper", [
    ("scratchvae.runs", "scratchvae.training"), ("scratchvae.runs", "scratchvae.estimators"),
    ("scratchvae.runs", "scratchvae.figures"), ("scratchvae.estimators", "scratchvae.runs"),
    ("scratchvae.figures", "scratchvae.runs"), ("scratchvae.figures", "scratchvae.training"),
    ("scratchvae.training", "scratchvae.train"), ("scratchvae.models", "scratchvae.runs"),
])
def test_floors_only_look_down(lower, upper):
    """Nothing in ``lower`` (a module or package) reaches ``upper``, however indirectly: the run
    package knows no loop, estimator or figure; the estimators and figures know no run folder."""
    starts = [m for m in GRAPH if m == lower or m.startswith(lower + ".")]
    seen, todo = set(), list(starts)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += GRAPH[m]
    reached = sorted(m for m in seen if m == upper or m.startswith(upper + "."))
    assert reached == [], f"{lower} reaches {reached}"


def test_run_file_names_are_defined_once():
    names = ("EVALUATION_NAME", "CHECKPOINT_NAME", "CONFIG_NAME", "METRICS_NAME", "LOCK_NAME",
             "SESSIONS_NAME", "METRICS_FIELDS", "MAX_LATENT_DIM")
    where = {n: [] for n in names}
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name) and t.id in where:
                        where[t.id].append(name)
    assert all(len(v) == 1 for v in where.values()), where
