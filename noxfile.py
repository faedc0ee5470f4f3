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
ARCHES = ("x86_64", "aarch64")
# Seconds nox waits after Ctrl-C before it sends SIGTERM: pytest's fixtures stop and
# remove their containers, volumes and images in that time.
PYTEST_CLEANUP = 60.0


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
    parser.add_argument("--arch", default=platform.machine(), choices=ARCHES)
    args, pytest_args = parser.parse_known_args(session.posargs)
    # -m last: pytest keeps the last one, and verify must not run anything but the image
    # checks. The interrupt timeout gives pytest time to remove its containers on Ctrl-C.
    session.run("pytest", *pytest_args, "-m", "image", "--image-arch", args.arch,
                interrupt_timeout=PYTEST_CLEANUP)  # fmt: skip


@nox.session(python=PYTHON)
def release(session: nox.Session) -> None:
    """Build and check every architecture, the image index, SBOMs, sources and SHA256SUMS."""
    session.install("-e", ".[test]")
    session.run("tmate-forge", "release", *session.posargs)
    # The checks of a release: its sums and SBOMs, then each architecture's image under
    # podman with a real tmate session (aarch64 under qemu). --assemble-only skips the
    # image checks: in the release CI each architecture's job has run them already.
    session.run("pytest", "-m", "release", "--release-dist", interrupt_timeout=PYTEST_CLEANUP)
    if "--assemble-only" not in session.posargs:
        for arch in ARCHES:
            session.run("pytest", "-m", "image", "--image-arch", arch,
                        interrupt_timeout=PYTEST_CLEANUP)  # fmt: skip


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite; slow tests build with zig, mirror tests need TMATE_FORGE_MIRROR."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, interrupt_timeout=PYTEST_CLEANUP)


@nox.session(python=PYTHON, tags=["maintenance"], default=False)
def lint(session: nox.Session) -> None:
    """Check the code with ruff and mypy --strict."""
    session.install("-e", ".[test,lint]", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
