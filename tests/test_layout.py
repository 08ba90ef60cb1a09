"""The package layout: stage packages whose imports point only down, no import cycle at any level
(function-local imports included), few loose modules, and a root that imports nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "detnet_trt"

# Stage packages, bottom to top. A module may import its own stage and the stages below it; a stage
# never imports a stage of the same rank (they are peers) or above it.
RANKS = {
    "_version": 0, "core": 0,
    "models": 1, "trt": 1,
    "export": 2, "runtime": 2,
    "data": 3,
    "evaluation": 4,
    "quantize": 5,
    "build": 6,
    "apps": 7, "training": 7,
    "serving": 8,
    "cli": 9,
    "__init__": 10, "__main__": 10,
}
LOOSE_MODULES_MAX = 6
HEAVY = ("cv2", "onnx", "onnxruntime", "torch", "tensorrt", "pycuda")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every package module ``name`` imports, at any depth of the file (function-local included)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "detnet_trt")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "detnet_trt":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
    # an import of a.b.c also runs a/__init__ and a/b/__init__, but those edges belong to a and a.b
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), or a node importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_stage_has_a_rank() -> None:
    stages = {_stage(m) for m in MODULES}
    assert stages <= set(RANKS), f"new top-level module or package without a rank: {sorted(stages - set(RANKS))}"


def test_imports_point_only_down() -> None:
    upward = []
    for src, targets in GRAPH.items():
        for dst in targets:
            a, b = _stage(src), _stage(dst)
            if a != b and RANKS[b] >= RANKS[a]:
                upward.append(f"{src} -> {dst} ({a} rank {RANKS[a]}, {b} rank {RANKS[b]})")
    assert not upward, "imports that do not point down:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(GRAPH) == []


def test_no_import_cycle_between_packages() -> None:
    """Inside every package, its direct children (modules and sub-packages) import without a cycle."""
    problems = []
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    for pkg in sorted(packages):
        depth = len(pkg.split(".")) + 1
        children: dict[str, set[str]] = defaultdict(set)
        for src, targets in GRAPH.items():
            if not src.startswith(pkg + ".") or src == pkg:
                continue
            a = ".".join(src.split(".")[:depth])
            for dst in targets:
                if dst.startswith(pkg + ".") and dst != pkg:
                    b = ".".join(dst.split(".")[:depth])
                    if a != b:
                        children[a].add(b)
        for comp in _cycles(dict(children)):
            problems.append(f"{pkg}: {' <-> '.join(comp)}")
    assert not problems, "package-level import cycles:\n" + "\n".join(problems)


def test_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_few_loose_modules_at_the_top() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_MODULES_MAX, loose


def _imported_top_level(args: list[str]) -> set[str]:
    """Top-level module names a fresh interpreter imports for ``args`` (``python -X importtime``)."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    names = set()
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "detnet_trt" in names  # the measurement saw the package
    return names


@pytest.mark.parametrize(
    "args",
    [["-c", "import detnet_trt"], ["-m", "detnet_trt", "--help"], ["-c", "import detnet_trt.cli; detnet_trt.cli.main(['build', '--help'])"]],
    ids=["import", "--help", "build --help"],
)
def test_import_and_help_load_nothing_heavy(args: list[str]) -> None:
    try:
        loaded = _imported_top_level(args)
    except SystemExit:  # pragma: no cover - argparse exits after --help inside -c
        raise
    assert not loaded & set(HEAVY), f"{' '.join(args)} imported {sorted(loaded & set(HEAVY))}"


def test_lazy_attributes_resolve() -> None:
    import detnet_trt

    for name in detnet_trt.__all__:
        assert getattr(detnet_trt, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        detnet_trt.nope  # noqa: B018


MAX_LINES, MAX_PARAMS = 80, 8


def test_functions_are_small_or_say_why() -> None:
    """No package function over ~80 lines or ~8 parameters without a reason on its ``def`` line."""
    big = []
    for name, path in sorted(MODULES.items()):
        lines = path.read_text(encoding="utf-8").split("\n")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            count = len(params) + bool(a.vararg) + bool(a.kwarg)
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if (length > MAX_LINES or count > MAX_PARAMS) and "#" not in lines[node.lineno - 1]:
                big.append(f"{name}.{node.name}: {length} lines, {count} parameters")
    assert not big, "functions over the size limits without a reason comment on the def line:\n" + "\n".join(big)
