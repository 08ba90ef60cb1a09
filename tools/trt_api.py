#!/usr/bin/env python3
"""The TensorRT Python API without TensorRT: type stubs and importable bindings, per version.

For each TensorRT version this makes, under OUT/<version>/:

- ``stubs/tensorrt/*.pyi``: type stubs of the real Python bindings (point MYPYPATH at ``stubs``);
- ``runtime/``: an importable ``tensorrt`` package (put it on PYTHONPATH): the real bindings of that
  version over generated stand-in native libraries. Every class, enum and method is the real one;
  creating a ``Builder`` or ``Runtime`` fails (``TypeError: ... factory function returned nullptr``)
  as on a machine without a usable GPU.

How: ``pip download --no-deps`` fetches the bindings wheel (a few MB; the TensorRT libraries
themselves cannot be installed here). Every symbol the bindings import from libnvinfer,
libnvonnxparser, ... is given a stand-in that returns NULL, built with gcc into a library of each
needed soname and preloaded by the package. pybind11-stubgen, in a private venv under OUT/.venv,
then introspects the bindings; its stubs are cleaned (docstrings dropped, unrenderable lines made
permissive, Dims parameters widened to sequences of ints, IHostMemory given the buffer protocol).

A version is rebuilt only when its stamp (the hash of this file, the Python ABI and the version) no
longer matches; each one is built in a temporary folder and renamed into place, so OUT never holds
a half-written version. Needs: Python >= 3.9, PyPI (or its mirror), gcc, nm and readelf (binutils).

Usage: python tools/trt_api.py --out .cache/trt-api [--versions 8.6.1 10.3.0 ...] [--force]
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import fcntl
import hashlib
import json
import keyword
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

VERSIONS: tuple[str, ...] = ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")
# bindings-only wheels on PyPI, by TensorRT major version
WHEELS: dict[int, str] = {8: "tensorrt-bindings", 10: "tensorrt-cu12-bindings", 11: "tensorrt-cu13-bindings"}
STUBGEN = "pybind11-stubgen==3.0.0"
# a symbol the bindings import is TensorRT's unless one of these, or a non-TensorRT library they need, defines it
PYTHON_SYMBOL = re.compile(r"_?Py")
TENSORRT_LIBRARY = re.compile(r"libnv")
C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STAMP = ".stamp"

# Put first in the bindings' __init__.py: the stand-ins are loaded, globally, before the bindings'
# extension module, whose NEEDED entries then resolve to them by soname. (The names stay in the
# module, and so in its stubs, as they always have.)
PRELOAD = (
    "import ctypes as _c, glob as _g, os as _o\n"
    "for _l in sorted(_g.glob(_o.path.join(_o.path.dirname(__file__), 'libnv*.so.*'))):\n"
    "    _c.CDLL(_l, mode=_c.RTLD_GLOBAL)\n"
)
SHIM = """\
# Real TensorRT {version} Python bindings over stand-in native libraries (no GPU, no TensorRT runtime).
from {module} import *  # noqa: F401,F403
from {module} import __version__  # noqa: F401
"""
# run in the freshly built runtime: the real API of `version`, and no usable TensorRT behind it
SELF_CHECK = """\
import sys, tensorrt
assert tensorrt.__version__ == sys.argv[1], tensorrt.__version__
for make in (tensorrt.Builder, tensorrt.Runtime):
    try:
        make(tensorrt.Logger())
    except TypeError as e:
        assert "nullptr" in str(e), e
    else:
        raise AssertionError(make.__name__ + "() did not fail")
print(sum(isinstance(getattr(tensorrt, n), type) for n in dir(tensorrt)))
"""

_print_lock = threading.Lock()


def say(msg: str, *, err: bool = False) -> None:
    with _print_lock:
        print(f"trt-api: {msg}", file=sys.stderr if err else sys.stdout, flush=True)


class StepError(Exception):
    """A step of one version (or of the setup) failed: ``str()`` is the one line to show."""

    def __init__(self, who: str, step: str, detail: str, output: str = "") -> None:
        super().__init__(f"{who}: {step} failed: {detail}")
        self.output = output


def run(cmd: Sequence[str | Path], who: str, step: str, *, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> str:
    """Runs ``cmd``, quietly; its output comes back, or goes into the StepError when it fails."""
    try:
        res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    except OSError as e:
        raise StepError(who, step, f"cannot run {cmd[0]}: {e}") from e
    out = res.stdout + res.stderr
    if res.returncode != 0:
        last = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
        raise StepError(who, step, f"{Path(str(cmd[0])).name} exited with {res.returncode}"
                        + (f": {last[-1].strip()}" if last else ""), out)
    return out


def tool_key() -> str:
    """What a built version depends on: this file and the interpreter whose wheels it downloads."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(f"{sys.implementation.cache_tag} {platform.machine()} {STUBGEN}".encode())
    return h.hexdigest()


def requirement(version: str) -> str:
    major = int(version.split(".")[0])
    if major not in WHEELS:
        raise StepError(version, "select wheel", f"no bindings wheel known for TensorRT {major}.x "
                        f"(known: {', '.join(f'{m}.x' for m in WHEELS)})")
    return f"{WHEELS[major]}=={version}"


def is_current(out: Path, version: str, key: str) -> bool:
    d = out / version
    try:
        stamp = json.loads((d / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return (stamp.get("key") == key and (d / "stubs" / "tensorrt" / "__init__.pyi").is_file()
            and (d / "runtime" / "tensorrt" / "__init__.py").is_file())


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """One run at a time per OUT (two `make` runs in parallel would otherwise race)."""
    with open(out / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- pybind11-stubgen in a private venv -----------------------------------------------------------
def stubgen_venv(out: Path) -> Path:
    """OUT/.venv with pybind11-stubgen (and pip, for the downloads); its python."""
    venv = out / ".venv"
    py = venv / "bin" / "python"
    marker = venv / ".trt-api"
    want = f"{STUBGEN} {sys.version}"
    if py.exists() and marker.is_file() and marker.read_text() == want:
        return py
    say(f"setup: private venv with {STUBGEN} in {venv}")
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", venv], "setup", "python -m venv")
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", STUBGEN], "setup",
        f"pip install {STUBGEN}")
    marker.write_text(want)  # written last: a venv without it is rebuilt
    return py


# --- one version ------------------------------------------------------------------------------
def download(py: Path, version: str, dest: Path) -> Path:
    req = requirement(version)
    say(f"{version}: download {req}")
    dest.mkdir()
    run([py, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "-d", dest, req], version, f"download {req}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise StepError(version, f"download {req}", f"expected one wheel, got {[w.name for w in wheels]}")
    return wheels[0]


def unpack(wheel: Path, dest: Path, version: str) -> Path:
    """Extracts the wheel; the package folder holding the extension module ``tensorrt*.so``."""
    try:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                path = Path(z.extract(info, dest))
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    path.chmod(mode)
    except (OSError, zipfile.BadZipFile) as e:
        raise StepError(version, "unpack", f"{wheel.name}: {e}") from e
    found = sorted(dest.glob("*/tensorrt*.so"))
    if not found:
        raise StepError(version, "unpack", f"no tensorrt*.so extension module in {wheel.name}")
    return found[0]


def needed_libraries(ext: Path, version: str) -> list[str]:
    out = run(["readelf", "-d", ext], version, "readelf")
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]", out)


def locate(soname: str, version: str) -> Path:
    """Where this machine's linker finds a system library."""
    p = Path(run(["gcc", f"-print-file-name={soname}"], version, "gcc -print-file-name").strip())
    if p.is_absolute() and p.exists():
        return p.resolve()
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        listing = ""
    for line in listing.splitlines():
        name, _, where = line.strip().partition(" => ")
        if name.split(" ")[0] == soname and Path(where).exists():
            return Path(where).resolve()
    raise StepError(version, "stand-ins", f"system library {soname} (needed by the bindings) not found")


def dynamic_symbols(lib: Path, version: str, which: str) -> set[str]:
    """Dynamic symbols of ``lib``, without their version (``memcpy@GLIBC_2.14`` -> ``memcpy``);
    which: "defined", or "undefined" (strong references only: weak ones may stay unresolved)."""
    out = run(["nm", "-D", f"--{which}-only", lib], version, f"nm {lib.name}")
    syms = set()
    for line in out.splitlines():
        f = line.split()
        if which == "defined" and len(f) >= 3:
            syms.add(f[2].split("@")[0])
        elif which == "undefined" and len(f) == 2 and f[0] == "U":
            syms.add(f[1].split("@")[0])
    return syms


def build_stand_ins(ext: Path, work: Path, version: str) -> tuple[list[Path], int]:
    """One library per TensorRT soname the bindings need, each defining every symbol the bindings
    take from TensorRT as a function that returns NULL."""
    needed = needed_libraries(ext, version)
    trt_libs = [n for n in needed if TENSORRT_LIBRARY.match(n)]
    if not trt_libs:
        raise StepError(version, "stand-ins", f"{ext.name} needs no TensorRT library (NEEDED: {needed})")
    system: set[str] = set()
    for n in needed:
        if not TENSORRT_LIBRARY.match(n):
            system |= dynamic_symbols(locate(n, version), version, "defined")
    symbols = sorted(s for s in dynamic_symbols(ext, version, "undefined") - system
                     if not PYTHON_SYMBOL.match(s))
    odd = [s for s in symbols if not C_IDENTIFIER.fullmatch(s)]
    if odd:
        raise StepError(version, "stand-ins", f"symbols that are no C identifier: {odd[:5]}")
    say(f"{version}: stand-ins for {', '.join(trt_libs)} ({len(symbols)} symbols)")
    work.mkdir()
    src = work / "stand_in.c"
    src.write_text("#include <stddef.h>\n" + "".join(f"void* {s}(void){{return NULL;}}\n" for s in symbols))
    obj = work / "stand_in.o"
    run(["gcc", "-c", "-fPIC", "-O0", "-o", obj, src], version, "gcc (stand-ins)")
    libs = []
    for soname in trt_libs:
        lib = work / soname
        run(["gcc", "-shared", f"-Wl,-soname,{soname}", "-o", lib, obj], version, f"gcc (link {soname})")
        libs.append(lib)
    return libs, len(symbols)


def assemble_runtime(ext: Path, libs: list[Path], runtime: Path, version: str) -> str:
    """runtime/<module>/ (the bindings, stand-ins preloaded) and runtime/tensorrt/; the module name."""
    module = ext.parent.name
    runtime.mkdir()
    pkg = runtime / module
    shutil.move(str(ext.parent), pkg)
    for lib in libs:
        shutil.copy2(lib, pkg / lib.name)
    init = pkg / "__init__.py"
    init.write_text(PRELOAD + (init.read_text() if init.exists() else ""))
    if module != "tensorrt":
        (runtime / "tensorrt").mkdir()
        (runtime / "tensorrt" / "__init__.py").write_text(SHIM.format(version=version, module=module))
    return module


def self_check(runtime: Path, version: str) -> int:
    env = dict(os.environ, PYTHONPATH=str(runtime))
    out = run([sys.executable, "-c", SELF_CHECK, version], version, "import check", env=env)
    return int(out.split()[-1])


def make_stubs(py: Path, runtime: Path, module: str, work: Path, stubs: Path, version: str) -> int:
    say(f"{version}: stubs ({STUBGEN})")
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(runtime))
    run([py, "-m", "pybind11_stubgen", module, "-o", work, "--ignore-all-errors"], version,
        "pybind11-stubgen", cwd=work, env=env)
    generated = sorted((work / module).rglob("*.pyi"))
    if not generated:
        raise StepError(version, "pybind11-stubgen", f"no .pyi written for {module}")
    classes = 0
    for f in generated:
        target = stubs / "tensorrt" / f.relative_to(work / module)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = clean_stub(f.read_text(), module)
        except SyntaxError as e:
            raise StepError(version, "clean stubs", f"{f.name}: {e}") from e
        target.write_text(text)
        classes += len(re.findall(r"^class ", text, re.M))
    return classes


def build_version(py: Path, out: Path, version: str, key: str) -> None:
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".build-{version}-"))
    try:
        work, result = tmp / "work", tmp / "result"
        work.mkdir()
        result.mkdir()
        wheel = download(py, version, work / "wheel")
        ext = unpack(wheel, work / "unpacked", version)
        libs, n_symbols = build_stand_ins(ext, work / "native", version)
        module = assemble_runtime(ext, libs, result / "runtime", version)
        n_types = self_check(result / "runtime", version)
        n_classes = make_stubs(py, result / "runtime", module, work / "stubgen", result / "stubs", version)
        (result / STAMP).write_text(json.dumps({
            "key": key, "version": version, "wheel": wheel.name, "stubgen": STUBGEN,
            "python": sys.implementation.cache_tag, "stand_in_symbols": n_symbols}, indent=1) + "\n")
        # swap in: the old version (if any) is moved aside first, so OUT/<version> is whole or absent
        final, old = out / version, tmp / "old"
        if final.exists():
            final.rename(old)
        try:
            result.rename(final)
        except OSError as e:
            if old.exists():
                old.rename(final)
            raise StepError(version, "install", f"cannot rename {result} to {final}: {e}") from e
        say(f"{version}: done in {time.monotonic() - t0:.0f} s ({n_classes} classes in the stubs, "
            f"{n_types} types importable) -> {final}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- all versions -----------------------------------------------------------------------------
def build(out: Path, versions: Sequence[str], *, force: bool, jobs: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with locked(out):
        for stale in out.glob(".build-*"):  # left by a run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        key = tool_key()
        todo = [v for v in versions if force or not is_current(out, v, key)]
        if not todo:
            say(f"up to date: {' '.join(versions)} in {out}")
        else:
            t0 = time.monotonic()
            say(f"building {' '.join(todo)} in {out}"
                + (f" ({' '.join(v for v in versions if v not in todo)} up to date)" if len(todo) < len(versions) else ""))
            try:
                for v in todo:
                    requirement(v)
                py = stubgen_venv(out)
            except StepError as e:
                say(str(e), err=True)
                return 1
            failed: list[StepError] = []
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = {pool.submit(build_version, py, out, v, key): v for v in todo}
                for fut in concurrent.futures.as_completed(futures):
                    try:
                        fut.result()
                    except StepError as err:
                        failed.append(err)
                    except Exception as err:  # noqa: BLE001 - a bug here: still one line naming the version
                        failed.append(StepError(futures[fut], "build", f"{type(err).__name__}: {err}"))
            if failed:  # the failing commands' last lines for the diagnosis, then one line per version
                for f in failed:
                    tail = [ln for ln in f.output.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
                    with _print_lock:
                        sys.stderr.write("".join(f"    {ln}\n" for ln in tail[-15:]))
                for f in failed:
                    say(str(f), err=True)
                return 1
            say(f"built {len(todo)} version(s) in {time.monotonic() - t0:.0f} s")
        # the stamp `make` checks: rewritten (and so newer than its prerequisites) on every success
        (out / STAMP).write_text(json.dumps({"key": key, "versions": list(versions)}) + "\n")
    return 0


# --- stub cleaning ----------------------------------------------------------------------------
DIMS_TYPES = frozenset({"Dims", "Dims2", "Dims3", "Dims4", "DimsHW"})
_KEYWORDS = "|".join(k for k in keyword.kwlist if k not in ("True", "False", "None"))
# a parameter named like a keyword (`from: int`), which pybind11-stubgen writes as it is
KEYWORD_PARAMETER = re.compile(rf"(?:(?<=[(,] )|(?<=\())({_KEYWORDS})(?=:)")
PERMISSIVE_DEF = "{indent}def {name}(*args: typing.Any, **kwargs: typing.Any) -> typing.Any: ..."


def make_parsable(src: str) -> str:
    """Repairs what pybind11-stubgen could not render as Python (raw C++ types in signatures,
    keyword parameter names): such a def accepts anything, any other such line is commented out."""
    src = KEYWORD_PARAMETER.sub(r"\1_", src)
    lines = src.split("\n")
    for _ in range(len(lines) + 1):
        try:
            ast.parse("\n".join(lines))
            return "\n".join(lines)
        except SyntaxError as e:
            i = (e.lineno or 1) - 1
            line = lines[i]
            indent = line[: len(line) - len(line.lstrip())]
            m = re.match(r"\s*def (\w+)\(", line)
            lines[i] = PERMISSIVE_DEF.format(indent=indent, name=m.group(1)) if m else f"{indent}# {line.strip()}"
    raise SyntaxError("stub still unparsable after commenting out every line")


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    return body or [ast.Expr(ast.Constant(...))]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Cleaner(ast.NodeTransformer):
    def visit_Module(self, node: ast.Module) -> ast.Module:
        self.generic_visit(node)
        # drop the package loader's private leftovers (`_l: str = <a stand-in's path>`); keep dunders
        node.body = _without_docstring([
            n for n in node.body
            if not (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and _private(n.target.id))])
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        self.generic_visit(node)
        node.body = _without_docstring(node.body)
        if node.name == "IHostMemory":  # the bindings give it the buffer protocol: bytes(engine) works
            node.body.append(ast.parse("def __buffer__(self, flags: int, /) -> memoryview: ...").body[0])
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        node.body = _without_docstring(node.body)
        # pybind11 converts any sequence of ints to Dims implicitly
        for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
            if isinstance(arg.annotation, ast.Name) and arg.annotation.id in DIMS_TYPES:
                widened = f"{arg.annotation.id} | typing.Sequence[typing.SupportsInt]"
                arg.annotation = ast.parse(widened, mode="eval").body
        return node


def clean_stub(src: str, module: str) -> str:
    """A pybind11-stubgen stub of the bindings module ``module`` as a clean ``tensorrt`` stub."""
    if module != "tensorrt":
        src = re.sub(rf"\b{re.escape(module)}\b", "tensorrt", src)
    tree = ast.fix_missing_locations(_Cleaner().visit(ast.parse(make_parsable(src))))
    text = ast.unparse(tree)
    if not re.search(r"^import typing$", text, re.M):
        text = "import typing\n" + text
    return "# mypy: ignore-errors\n" + text + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, required=True, help="cache folder, e.g. .cache/trt-api")
    ap.add_argument("--versions", nargs="+", default=list(VERSIONS), metavar="V",
                    help=f"TensorRT versions (default: {' '.join(VERSIONS)})")
    ap.add_argument("--force", action="store_true", help="rebuild even the versions that are up to date")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="versions built at once")
    args = ap.parse_args(argv)
    return build(args.out.resolve(), list(dict.fromkeys(args.versions)), force=args.force, jobs=args.jobs)


if __name__ == "__main__":
    sys.exit(main())
