"""An interrupt in the middle of a real build: it stops, and the rerun resumes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, require_tools

pytestmark = pytest.mark.toolchain


# tmate-forge as a user starts it at a terminal, where Ctrl-C works: a run that inherits
# SIGINT ignored (the background job of a script, which CI may be) keeps it ignored.
_AS_AT_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from tmate_forge.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _forge(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _AS_AT_A_TERMINAL, "--root", str(root), *args],
        stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip


def test_interrupted_build_resumes(tmp_path: Path) -> None:
    require_tools("make", "patch")
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(ROOT / "recipes", root / "recipes")
    shutil.copytree(ROOT / "patches", root / "patches")
    stamps = root / "build" / "x86_64" / "stamps"

    first = _forge(root, "compile", "--arch", "x86_64", "--component", "libevent")
    assert first.stderr is not None
    seen = []
    for line in first.stderr:
        seen.append(line)
        if line.startswith("  $ ") and "make -j" in line:
            break
    time.sleep(3)  # well inside the make step
    first.send_signal(signal.SIGINT)
    rest = first.stderr.read()
    assert first.wait(timeout=60) == 130, "".join(seen) + rest
    assert "ERROR: interrupted; run the same command again to resume" in rest
    assert not (stamps / "compile-libevent.json").exists()
    assert not subprocess.run(["pgrep", "-f", str(root / "build")], capture_output=True).stdout

    second = _forge(root, "compile", "--arch", "x86_64", "--component", "libevent")
    _, err = second.communicate(timeout=900)
    assert second.returncode == 0, err
    assert "libevent: patched tree is current" in err
    assert (stamps / "compile-libevent.json").exists()
    assert (root / "build" / "x86_64" / "prefix" / "lib" / "libevent.a").exists()
