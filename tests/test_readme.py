"""The README's command examples run, and the figures stated beside them reproduce.

Every fenced shell block preceded by the line ``<!-- readme-test -->`` is run, command by
command, as a user would type it: in an empty temporary folder, with the package's ``detnet-trt``
command, the repository files the commands name (``detnet_trt/assets/...``) linked into that
folder. Each command must exit 0. A command whose comment states a COCO figure (``# AP 63.85``
for ``eval``, ``# FP32 AP 63.85, INT8 AP 63.83`` for ``quantize --val-data``) must print it, to
the last digit stated (the README says which figures are deterministic; only
those are written this way). Blocks may hold only ``detnet-trt`` commands (no shell: nothing is
run through one), one a line, ``\\`` continuing a line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = "<!-- readme-test -->"
FENCE = re.compile(r"^```(sh|bash|shell|console)?\s*$")
# a COCO metric the comment states (`AP 63.85`, or a model's: `INT8 AP 63.83`), and where the
# commands print it: `detnet-trt eval`'s metric lines, `quantize --val-data`'s FP32 / INT8 rows
FIGURE = re.compile(r"\b(?:(FP32|INT8) )?(AP|AP50|AP75|APs|APm|APl)\s+(\d+\.\d+)\b")
EVAL_LINE = r"=\s*(-?\d+\.\d+)\s+\({name}\)"
GATE_ROW = r"^\s*{row}\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s*$"
GATE_COLUMNS = ("AP", "AP50", "AP75")


@dataclass(frozen=True)
class Command:
    line: int  # README line number, for messages
    argv: tuple[str, ...]
    comment: str


def readme_blocks(text: str) -> list[list[Command]]:
    """The marked blocks of ``text``, each a list of commands (comments kept apart)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARK:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or not FENCE.match(lines[j].strip()):
            raise AssertionError(f"README.md:{i + 1}: {MARK} must be followed by a ```sh fenced block")
        cmds: list[Command] = []
        k, pending, start = j + 1, "", 0
        while k < len(lines) and lines[k].strip() != "```":
            raw = lines[k]
            if not pending:
                start = k + 1
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
            else:
                full = pending + raw
                pending = ""
                if full.strip():
                    cmds.append(_command(start, full))
            k += 1
        if k >= len(lines):
            raise AssertionError(f"README.md:{j + 1}: the fenced block is not closed")
        blocks.append(cmds)
        i = k + 1
    return blocks


def _command(line: int, text: str) -> Command:
    m = re.search(r"(?:^|\s)#\s", text)  # a comment: '#' after a blank, as the shell reads it
    code, comment = (text[: m.start()], text[m.end() :]) if m else (text, "")
    return Command(line, tuple(shlex.split(code)), comment.strip())


def test_readme_has_runnable_blocks_and_they_parse():
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert blocks, f"no {MARK} block in README.md"
    for cmds in blocks:
        assert cmds, "an empty readme-test block"
        for c in cmds:
            assert c.argv[0] == "detnet-trt", f"README.md:{c.line}: only detnet-trt commands run here, got {c.argv[0]!r}"


def test_parser_reads_continuations_comments_and_refuses_unmarked_fences():
    text = "\n".join([
        "intro", MARK, "```sh",
        "detnet-trt synth --out d \\", "    --images 4  # AP 1.25", "", "detnet-trt eval --model 'a b.pt'", "```",
        "```sh", "detnet-trt never-run", "```",
    ])
    (block,) = readme_blocks(text)
    assert [c.argv for c in block] == [
        ("detnet-trt", "synth", "--out", "d", "--images", "4"), ("detnet-trt", "eval", "--model", "a b.pt")]
    assert block[0].comment == "AP 1.25" and block[0].line == 4 and block[1].comment == ""
    with pytest.raises(AssertionError, match="must be followed by"):
        readme_blocks(f"{MARK}\nnot a fence\n")


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "detnet-trt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "detnet_trt"]


def _link_repo_files(argv: tuple[str, ...], work: Path) -> None:
    """Repository files a command names by a relative path are there in the work folder too."""
    for tok in argv:
        for part in tok.split("="):
            if part and not part.startswith("-") and not os.path.isabs(part) and (REPO / part).is_file():
                dst = work / part
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.symlink_to(REPO / part)


def check_figures(cmd: Command, output: str) -> list[str]:
    """What the comment states and the output does not show (empty: all reproduced)."""
    problems = []
    for row, name, value in FIGURE.findall(cmd.comment):
        what = f"{row} {name} {value}".strip()
        printed = None
        if row and name in GATE_COLUMNS:
            m = re.search(GATE_ROW.format(row=row), output, re.MULTILINE)
            printed = m.group(1 + GATE_COLUMNS.index(name)) if m else None
        elif not row:
            m = re.search(EVAL_LINE.format(name=re.escape(name)), output)
            printed = m.group(1) if m else None
        if printed is None:
            problems.append(f"{what}: not printed")
        elif round(float(printed), len(value.split(".")[1])) != float(value):
            problems.append(f"{what}: printed {printed}")
    return problems


def test_check_figures_compares_to_the_stated_digits():
    out = " AP @[IoU=0.50:0.95 | area=all | maxDets=100]  =  63.85   (AP)\n AP50 ... =  83.92   (AP50)\n"
    assert check_figures(Command(1, ("detnet-trt",), "AP 63.85, AP50 83.9"), out) == []
    assert check_figures(Command(1, ("detnet-trt",), "AP 63.9"), out) == []
    assert check_figures(Command(1, ("detnet-trt",), "AP 63.7"), out) == ["AP 63.7: printed 63.85"]
    assert check_figures(Command(1, ("detnet-trt",), "APs 50.7"), out) == ["APs 50.7: not printed"]
    gate = "              AP    AP50    AP75\n  FP32     63.85   83.92   71.53\n  INT8     63.83   84.19   71.38\n"
    assert check_figures(Command(1, ("detnet-trt",), "FP32 AP 63.85, INT8 AP 63.83, INT8 AP75 71.4"), gate) == []
    assert check_figures(Command(1, ("detnet-trt",), "INT8 AP 63.7"), gate) == ["INT8 AP 63.7: printed 63.83"]
    assert check_figures(Command(1, ("detnet-trt",), "INT8 AP 63.83"), out) == ["INT8 AP 63.83: not printed"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(readme_blocks(README.read_text(encoding="utf-8")))))
def test_readme_block_runs_and_reproduces_its_figures(index, tmp_path):
    cmds = readme_blocks(README.read_text(encoding="utf-8"))[index]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    for cmd in cmds:
        _link_repo_files(cmd.argv, tmp_path)
        proc = subprocess.run([*_cli(), *cmd.argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        shown = " ".join(cmd.argv)
        assert proc.returncode == 0, f"README.md:{cmd.line}: `{shown}` exited {proc.returncode}:\n{proc.stderr[-2000:]}"
        problems = check_figures(cmd, proc.stdout + proc.stderr)
        assert not problems, f"README.md:{cmd.line}: `{shown}` did not reproduce {problems}"

