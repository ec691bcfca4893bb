"""Every file the tool writes is written atomically (issue 26, family 4): two `collapse --plot` runs on one SVG
left a file that did not parse. The mechanism is one door, `atomic.atomic_write` (temporary file, fsync, rename),
that every writer passes through; a scan of the package checks that no writer goes around it, a race of two
processes checks the door, and a FIFO or a folder as --plot is one line naming the flag."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hostile_helpers import assert_user_error, invoke

from entropy_elbo.atomic import check_writable
from entropy_elbo.errors import EntropyElboError

pytest.importorskip("matplotlib")
PACKAGE = Path(__file__).resolve().parents[2] / "entropy_elbo"
WRITERS = {"savefig", "write_text", "write_bytes", "save_file", "dump"}  # calls that write a whole file
OWN_DOORS = {"atomic.py", "saving.py"}  # atomic.atomic_write itself; data.saving's chunked temp-file-and-rename


def writes_outside_the_door(tree: ast.AST) -> list[int]:
    """Lines of whole-file writes that are not inside a lambda handed to atomic_write."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "atomic_write":
            for arg in node.args[1:2]:
                inside.update(id(n) for n in ast.walk(arg))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) in WRITERS and id(node) not in inside]


def test_every_whole_file_write_goes_through_atomic_write() -> None:
    outside = {str(p.relative_to(PACKAGE)): lines for p in sorted(PACKAGE.rglob("*.py")) if p.name not in OWN_DOORS
               for lines in [writes_outside_the_door(ast.parse(p.read_text()))] if lines}
    assert outside == {}


RACE = """
import sys
from matplotlib.figure import Figure
from entropy_elbo.atomic import save_figure
for i in range(int(sys.argv[3])):
    fig = Figure(figsize=(2 + int(sys.argv[2]), 2))
    fig.add_subplot().plot(range(50 * (1 + int(sys.argv[2]))))
    save_figure(fig, sys.argv[1])
"""


def test_two_processes_drawing_one_svg_leave_a_whole_one(tmp_path: Path) -> None:
    svg = tmp_path / "same.svg"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(svg), str(k), "6"], env=env) for k in (0, 1)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert ET.parse(svg).getroot().tag.endswith("svg")  # one whole plot, never one's tail after the other's </svg>
    assert [p.name for p in tmp_path.iterdir()] == ["same.svg"]  # no temporary file left


def test_a_fifo_or_a_folder_as_plot_is_one_line_naming_the_flag(kit: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.svg"
    os.mkfifo(fifo)
    line = assert_user_error(invoke(["collapse", kit / "vae1.safetensors", "--data", kit / "x.npy", "--plot", fifo]),
                             1, f"--plot {fifo}", "named pipe")
    assert "None" not in line
    (tmp_path / "dir.png").mkdir()
    assert_user_error(invoke(["collapse", kit / "vae1.safetensors", "--data", kit / "x.npy", "--plot",
                              tmp_path / "dir.png"]), 1, "--plot", "is a folder", "figure.png")
    with pytest.raises(EntropyElboError, match=r"^--plot .*pipe.svg: is a named pipe \(FIFO\), not a regular file"):
        check_writable(fifo, "--plot")


def test_an_extension_matplotlib_cannot_write_lists_those_it_can(kit: Path, tmp_path: Path) -> None:
    line = assert_user_error(invoke(["collapse", kit / "vae1.safetensors", "--data", kit / "x.npy", "--plot",
                                     tmp_path / "fig.docx"]), 1, "--plot", "'.docx'", r"\.png", r"\.svg")
    assert not (tmp_path / "fig.docx").exists() and "None" not in line
