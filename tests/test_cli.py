from __future__ import annotations

import os
from pathlib import Path

import pytest

from tmate_forge.arch import parse_arch
from tmate_forge.cli import main
from tmate_forge.cmd import logged, require_tool
from tmate_forge.errors import BuildError, BusyError, ToolMissingError, UsageError
from tmate_forge.lock import exclusive

from .conftest import ROOT


def test_unknown_arch_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(ROOT), "compile", "--arch", "arm64"]) == UsageError.exit_code
    err = capsys.readouterr().err
    assert "ERROR: --arch: expected one of x86_64, aarch64, got 'arm64'" in err
    assert "TIP: pass --arch x86_64 or --arch aarch64" in err


def test_arch_defaults_to_host() -> None:
    assert parse_arch(None) in ("x86_64", "aarch64")
    assert parse_arch("aarch64") == "aarch64"


def test_unknown_component_lists_known(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--root", str(ROOT), "compile", "--component", "libevnt"]
    assert main(argv) == UsageError.exit_code
    err = capsys.readouterr().err
    assert "no recipe named 'libevnt'; did you mean 'libevent'? (known: libevent, libssh," in err


def test_failing_step_shows_log_tail_and_path(tmp_path: Path) -> None:
    log_file = tmp_path / "demo.log"
    script = "for i in $(seq 1 60); do echo line $i; done; echo 'cc: error: boom' >&2; exit 3"
    with pytest.raises(BuildError) as caught:
        logged(["sh", "-c", script], cwd=tmp_path, log_file=log_file, what="build demo")
    message = str(caught.value)
    assert "build demo: sh exited with 3" in message
    assert f"--- last lines of {log_file} ---" in message
    assert "cc: error: boom" in message
    assert "line 60" in message
    assert "line 10\n" not in message  # only the tail, the whole log stays in the file
    assert f"TIP: read the full log: {log_file}" in message
    assert "line 10\n" in log_file.read_text()


def test_missing_tool_says_how_to_install() -> None:
    with pytest.raises(ToolMissingError, match=r"no-such-tool-xyz: not found on PATH; it is "
                       r"needed to test\nTIP: install it \(Debian: apt-get install"):  # fmt: skip
        require_tool("no-such-tool-xyz", "test")


@pytest.mark.parametrize(
    "argv",
    [["--root", "/elsewhere", "compile"], ["compile", "--root", "/elsewhere"]],
    ids=["before-the-stage", "after-the-stage"],
)
def test_root_is_honoured_before_and_after_the_stage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 3
    assert "ERROR: /elsewhere/recipes: no recipes (*.toml) found" in capsys.readouterr().err


def test_debug_and_root_work_after_the_stage_too(capsys: pytest.CaptureFixture[str]) -> None:
    # nox passes its arguments after the stage: `nox -s compile -- --debug --arch arm64`.
    assert main(["compile", "--root", str(ROOT), "--debug", "--arch", "arm64"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "ERROR: --arch: expected one of x86_64, aarch64, got 'arm64'" in err


def test_unusable_cache_folder_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("TMATE_FORGE_CACHE", str(not_a_folder))
    monkeypatch.setenv("TMATE_FORGE_MIRROR", str(tmp_path))
    assert main(["--root", str(ROOT), "sources"]) == 9
    err = capsys.readouterr().err
    assert f"ERROR: {not_a_folder}" in err
    assert "Not a directory" in err
    assert "Traceback" not in err


def test_second_run_in_the_same_build_folder_is_refused(tmp_path: Path) -> None:
    busy = rf"another tmate-forge run \(pid {os.getpid()}\)"
    with (
        exclusive(tmp_path / "build"),
        pytest.raises(BusyError, match=busy),
        exclusive(tmp_path / "build"),
    ):
        pass
    with exclusive(tmp_path / "build"):  # released when the first run ended
        pass


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SOURCE_DATE_EPOCH", "abc"),
        ("SOURCE_DATE_EPOCH", "\u00b2"),  # a digit to str.isdigit, not to int()
        ("SOURCE_DATE_EPOCH", "99999999999"),  # past what a tar header holds
        ("SOURCE_DATE_EPOCH", "1" * 5000),  # more digits than int() converts
        ("TMATE_FORGE_PACKAGER", "a\nb"),
    ],
)
@pytest.mark.parametrize("stage", ["apk", "image", "release"])
def test_bad_package_setting_fails_before_any_build(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variable: str,
    value: str,
    stage: str,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("TMATE_FORGE_SIGNING_KEY", raising=False)
    monkeypatch.setenv(variable, value)
    assert main(["--root", str(tmp_path / "no-project"), stage]) == UsageError.exit_code
    assert f"ERROR: {variable}=" in capsys.readouterr().err
