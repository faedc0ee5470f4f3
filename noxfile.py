"""Sessions wire the stages of tmate-forge; the stages themselves live in src/tmate_forge.

`nox -l` lists them; `nox --usage` is not needed: each session's docstring says it all.
"""

from __future__ import annotations

import argparse
import platform

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

PYTHON = "3.11"


def _forge(session: nox.Session, stage: str) -> None:
    session.install("-e", ".")
    session.run("tmate-forge", stage, *session.posargs)


@nox.session(python=PYTHON)
def sources(session: nox.Session) -> None:
    """Fetch every pinned source into the cache and verify its digest."""
    _forge(session, "sources")


@nox.session(python=PYTHON)
def patch(session: nox.Session) -> None:
    """Unpack the sources for one architecture and apply our patches (-- --arch ARCH)."""
    _forge(session, "patch")


@nox.session(python=PYTHON)
def compile(session: nox.Session) -> None:
    """Build the static tmate-ssh-server into dist/ARCH (-- --arch ARCH)."""
    _forge(session, "compile")


@nox.session(python=PYTHON)
def apk(session: nox.Session) -> None:
    """Package the static build as a signed Alpine APK and index (-- --arch ARCH)."""
    _forge(session, "apk")


@nox.session(python=PYTHON)
def image(session: nox.Session) -> None:
    """Build the OCI image from the APK with buildah and load it into podman (-- --arch ARCH)."""
    _forge(session, "image")


@nox.session(python=PYTHON)
def verify(session: nox.Session) -> None:
    """Check the image of dist/ARCH under podman with pytest-testinfra (-- --arch ARCH)."""
    session.install("-e", ".[test]")
    parser = argparse.ArgumentParser(prog="nox -s verify --")
    parser.add_argument("--arch", default=platform.machine(), help="x86_64 or aarch64")
    args, pytest_args = parser.parse_known_args(session.posargs)
    session.run("pytest", "-m", "image", "--image-arch", args.arch, *pytest_args)


@nox.session(python=PYTHON)
def release(session: nox.Session) -> None:
    """Build and check every architecture, the image index, SBOMs, sources and SHA256SUMS."""
    session.install("-e", ".[test]")
    session.run("tmate-forge", "release", *session.posargs)
    # The checks of a release: its sums and SBOMs, then each architecture's image under
    # podman with a real tmate session (aarch64 under qemu). --assemble-only skips the
    # image checks: in the release CI each architecture's job has run them already.
    session.run("pytest", "-m", "release", "--release-dist")
    if "--assemble-only" not in session.posargs:
        for arch in ("x86_64", "aarch64"):
            session.run("pytest", "-m", "image", "--image-arch", arch)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite; slow tests build with zig, mirror tests need TMATE_FORGE_MIRROR."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON, tags=["maintenance"], default=False)
def lint(session: nox.Session) -> None:
    """Check the code with ruff and mypy --strict."""
    session.install("-e", ".[test,lint]", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
