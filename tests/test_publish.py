"""Publishing into dist/: checked first, moved into place whole, or not at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tmate_forge import compile as compile_stage
from tmate_forge.compile import PRODUCT, CompileConfig
from tmate_forge.errors import VerifyError
from tmate_forge.toolchain import Toolchain

from .conftest import require_tools


def _config(tmp_path: Path) -> CompileConfig:
    toolchain = Toolchain(arch="x86_64", zig=Path("zig"), version="test", bin=tmp_path,
                          cache=tmp_path)  # fmt: skip
    return CompileConfig(arch="x86_64", trees=(), toolchain=toolchain, root=tmp_path,
                         build=tmp_path / "build", dist=tmp_path / "dist", jobs=1)  # fmt: skip


def _linked(config: CompileConfig, source: Path) -> None:
    """Stand a real ELF in for the link output: here a host program, which is dynamic."""
    target = config.build / "prefix" / "bin" / PRODUCT
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)


def test_dynamic_binary_is_refused_and_dist_stays_empty(tmp_path: Path) -> None:
    require_tools("objcopy")
    config = _config(tmp_path)
    _linked(config, Path(shutil.which("true") or "/bin/true"))
    with pytest.raises(VerifyError, match=r"not a self-contained static executable: .*PT_INTERP"):
        compile_stage._publish_binary(config, config.build / "prefix" / "bin" / PRODUCT)
    assert list(config.dist.iterdir()) == []


def test_interrupt_while_publishing_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tools("objcopy")
    config = _config(tmp_path)
    _linked(config, Path(shutil.which("true") or "/bin/true"))

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(compile_stage, "check_static", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compile_stage._publish_binary(config, config.build / "prefix" / "bin" / PRODUCT)
    assert list(config.dist.iterdir()) == []


def test_missing_link_output_names_the_log(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(Exception, match=r"did not install tmate-ssh-server") as caught:
        compile_stage._publish_binary(config, config.build / "prefix" / "bin" / PRODUCT)
    assert "TIP: read the logs in" in str(caught.value)
