"""Shared fixtures: tiny recipes and archives made on the fly, and the real project."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, at the tests' root, because pytest reads options before it collects folders.
    parser.addoption(
        "--image-arch",
        default=None,
        help="check the image that `nox -s image` wrote to dist/ARCH (what `nox -s verify` "
        "passes); without it the image tests build the host's image, or skip with no mirror",
    )
    parser.addoption(
        "--release-dist",
        action="store_true",
        help="check the finished release in dist/ (what `nox -s release` passes), failing "
        "if there is none; without it those checks skip when dist/ holds no release",
    )


def make_archive(folder: Path, name: str, files: dict[str, str]) -> tuple[Path, str]:
    """A .tar.gz holding files under one top folder; returns its path and SHA-256."""
    path = folder / name
    top = name.removesuffix(".tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for relative, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{relative}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def archive_recipe(name: str, sha256: str, url: str, **extra: str) -> str:
    """The text of a minimal archive recipe."""
    lines = "\n".join(f"{key} = {value}" for key, value in extra.items())
    return textwrap.dedent(f"""\
        name = "{name}"
        version = "1.0"
        license = "MIT"
        license_files = ["COPYING"]
        homepage = "https://example.invalid/"
        depends = []

        [source]
        url = "{url}"
        sha256 = "{sha256}"
        {lines}

        [build]
        system = "autotools"
        """)


RecipeWriter = Callable[[str, str], Path]


@pytest.fixture
def recipe_dir(tmp_path: Path) -> tuple[Path, RecipeWriter]:
    folder = tmp_path / "recipes"
    folder.mkdir()

    def write(name: str, text: str) -> Path:
        path = folder / f"{name}.toml"
        path.write_text(text)
        return path

    return folder, write


def mirror_with_tmate() -> str | None:
    """TMATE_FORGE_MIRROR when one of its folders holds tmate-ssh-server's repository."""
    mirrors = os.environ.get("TMATE_FORGE_MIRROR", "")
    for mirror in mirrors.split():
        if "://" in mirror or any(
            (Path(mirror) / n).is_dir() for n in ("tmate-ssh-server.git", "tmate-ssh-server")
        ):
            return mirrors
    return None


NEEDS_MIRROR = (
    "needs tmate-ssh-server's source: put a clone (or bare clone) of "
    "tmate-ssh-server at commit d7334ee4 in a folder as tmate-ssh-server.git and set "
    "TMATE_FORGE_MIRROR to that folder"
)


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH: run scripts/setup-host")
