"""The package's floors: a module imports only from its own floor or the floors below it,
and no modules import each other in a cycle. Read from the source (every import statement,
those inside functions too), so a lazy import cannot hide a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A module belongs to the floor of the longest prefix that names it.
FLOORS = [
    ("base", ["tsmap.fileio", "tsmap.progress", "tsmap.malloc", "tsmap.distributed"]),
    ("data", ["tsmap.data"]),
    ("frames", ["tsmap.frames"]),
    ("videomap", ["tsmap.videomap"]),
    ("heads", ["tsmap.heads"]),
    ("training", ["tsmap.training", "tsmap.train_config"]),
    ("evaluation", ["tsmap.evaluation"]),  # metrics, plots, fusion and explain: used by the steps
    ("steps", ["tsmap.steps", "tsmap.finetune"]),
    ("report", ["tsmap.report", "tsmap.demo"]),
    ("cli", ["tsmap.cli", "tsmap.__main__", "tsmap.api", "tsmap"]),  # tsmap.api and tsmap: the Python API
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "tsmap").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _floor(module: str) -> int:
    best, level = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{module} is on no floor: add it to FLOORS"
    return level


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The tsmap modules ``module`` imports (``from pkg import sub`` counts as the submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {n for n in names if n in modules and n != module}
    return out


def test_modules_import_only_from_their_floor_or_below():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for target in _imports(module, path, modules):
            if _floor(target) > _floor(module):
                wrong.append(f"{module} ({FLOORS[_floor(module)][0]}) imports {target} ({FLOORS[_floor(target)][0]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_floor_check_sees_a_wrong_import(tmp_path):
    """The checker itself: a data module importing the CLI is caught."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from tsmap.cli import main\n")
    modules = {**_modules(), "tsmap.data.bad": path}
    targets = _imports("tsmap.data.bad", path, modules)
    assert "tsmap.cli" in targets and _floor("tsmap.cli") > _floor("tsmap.data.bad")
