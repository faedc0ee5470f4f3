"""The ELF checks catch what they exist for, on objects made here with the host's cc."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tmate_forge.elfcheck import check_static, inspect
from tmate_forge.errors import VerifyError

from .conftest import require_tools


def _cc(tmp_path: Path, source: str, *flags: str) -> Path:
    require_tools("cc")
    (tmp_path / "probe.c").write_text(source)
    out = tmp_path / "probe.o" if "-c" in flags else tmp_path / "probe"
    subprocess.run(["cc", *flags, str(tmp_path / "probe.c"), "-o", str(out)], check=True)
    return out


def test_strong_undefined_symbol_is_reported(tmp_path: Path) -> None:
    source = "extern int missing(void);\n__attribute__((weak)) int maybe(void);\n"
    source += "int main(void) { return missing() + (maybe ? maybe() : 0); }\n"
    report = inspect(_cc(tmp_path, source, "-c", "-fno-pic"))
    assert report.undefined == ("missing",)


def test_dynamic_executable_is_refused(tmp_path: Path) -> None:
    binary = _cc(tmp_path, "int main(void) { return 0; }\n")
    with pytest.raises(VerifyError, match=r"PT_INTERP.*dynamic section"):
        check_static(binary, "x86_64")


def test_wrong_machine_is_refused(tmp_path: Path) -> None:
    binary = _cc(tmp_path, "int main(void) { return 0; }\n", "-static")
    with pytest.raises(VerifyError, match="machine is EM_X86_64, expected EM_AARCH64"):
        check_static(binary, "aarch64")
    assert check_static(binary, "x86_64").interpreter is False
