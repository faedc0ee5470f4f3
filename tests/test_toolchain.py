"""zig, run from one place in the cache, so that builds from any checkout are the same."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tmate_forge.toolchain import _stable_zig, musl_version, zig_binary


def test_zig_is_placed_once_in_the_cache_and_runs_from_there(tmp_path: Path) -> None:
    installed = zig_binary()
    zig = _stable_zig(installed, "0.17.1", tmp_path)
    assert zig == tmp_path / "zig-0.17.1" / "zig"
    assert subprocess.run([str(zig), "version"], capture_output=True, text=True,
                          check=True).stdout.strip() == "0.17.1"  # fmt: skip
    assert (zig.parent / "lib" / "libc" / "musl").is_dir()
    inode = zig.stat().st_ino
    assert _stable_zig(installed, "0.17.1", tmp_path) == zig
    assert zig.stat().st_ino == inode  # not copied again
    assert [p.name for p in tmp_path.iterdir()] == ["zig-0.17.1"]  # no partial copy left


def test_an_incomplete_copy_is_replaced(tmp_path: Path) -> None:
    broken = tmp_path / "zig-0.17.1"
    broken.mkdir()
    (broken / "zig").write_text("not zig")
    zig = _stable_zig(zig_binary(), "0.17.1", tmp_path)
    assert zig.read_bytes()[:4] == b"\x7fELF"


def test_musl_version_is_read_from_zig() -> None:
    assert musl_version(zig_binary()) == "1.2.5"
