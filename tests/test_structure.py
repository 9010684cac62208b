"""The package structure: dependencies point one way and no two files import each other.

    curation   finetune   eval        the three stages: none imports another's modules
         \\        |        /
          judging (judge engine)      used by curation (ratings) and eval (judging)
              |
          contract                    the example schema, readers, IO, Argilla connection, models

Imports are read from the source with ``ast`` (top-level and function-level alike), so a new import that
breaks the rule fails here before it ships.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "judging", "curation", "finetune", "eval")
ALLOWED = {  # what each package may import besides itself
    "contract": set(),
    "judging": {"contract"},
    "curation": {"contract", "judging"},
    "finetune": {"contract"},
    "eval": {"contract", "judging"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _files() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


FILES = _files()


def _imports(module: str, path: Path) -> set[str]:
    """Project modules ``module`` imports (absolute names, relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            # the longest project module that the name starts with
            while name and name not in FILES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(m, p) for m, p in FILES.items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package):
    bad = sorted(f"{m} imports {dep}" for m, deps in GRAPH.items() if m.split(".")[0] == package
                 for dep in deps if dep.split(".")[0] not in ALLOWED[package] | {package})
    assert not bad, "imports against the package layering (tests/test_structure.py):\n" + "\n".join(bad)


def test_no_import_cycles_between_files():
    """Tarjan's strongly connected components over the file-level import graph (a package's
    ``__init__`` importing its own submodules is not a cycle of two ideas, so it is left out)."""
    graph = {m: {d for d in deps if not (m == d.rpartition(".")[0] or d == m.rpartition(".")[0])}
             for m, deps in GRAPH.items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "files that import each other:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_graph_sees_imports():
    """The checker itself: it finds known edges (so an empty graph cannot pass the tests above)."""
    assert "contract.schema" in GRAPH["contract.readers"]
    assert "judging" in GRAPH["curation.score"]
    assert any(d.startswith("contract") for d in GRAPH["finetune.data"])
