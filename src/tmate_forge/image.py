"""Stage `image`: a minimal OCI image, built by buildah from scratch out of the APK.

Its one layer is the package's payload (read back from the .apk, so the two cannot
drift apart) minus OpenRC, plus the base layout of rootfs.py. The launcher is the
entrypoint. The layout buildah writes is packed into dist/ARCH/NAME-VERSION.oci.tar with
fixed times, so two builds from the same inputs give the same bytes, not only the same
manifest digest. The archive is then copied into the local container storage.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import log
from .apkread import read_payload
from .arch import Arch
from .atomic import replacing
from .cmd import capture, require_tool
from .compile import PRODUCT
from .digest import sha256_bytes
from .errors import ForgeError
from .launcher import LAUNCHER
from .ocilayout import OciImage, pack_layout, read_image
from .rootfs import KEYS_FOLDER, image_files, write_rootfs_tar

REPOSITORY = f"localhost/{PRODUCT}"
PORT = "2222/tcp"
# What the server's jail needs, and nothing more: unshare of its namespaces (SYS_ADMIN),
# chroot (SYS_CHROOT), and the drop to nobody (SETGID for setgroups, SETUID). The image
# tests drop each in turn and watch a session fail.
CAPABILITIES = ("SYS_ADMIN", "SYS_CHROOT", "SETGID", "SETUID")

_SCRATCH = "image."  # the prefix of the stage's scratch folders in build/ARCH
PLATFORMS: dict[Arch, tuple[str, str]] = {"x86_64": ("amd64", ""), "aarch64": ("arm64", "v8")}


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    arch: Arch
    package: Path  # the signed APK whose payload becomes the image
    version: str  # the package's version with its release: 2.3.0_git20230602-r0
    revision: str  # the commit of tmate-ssh-server that was built
    source: str  # where that source is published
    licenses: str  # one SPDX expression for everything linked into the binary
    created: int  # seconds since the epoch: SOURCE_DATE_EPOCH or the commit's time
    work: Path  # build/ARCH, for the scratch folder
    dist: Path  # dist/ARCH
    load: bool  # copy the image into the local container storage afterwards


@dataclass(frozen=True, kw_only=True)
class ImageResult:
    archive: Path
    image: OciImage
    name: str  # the name it has, or would have, in the local container storage
    loaded: bool


def local_name(arch: Arch, version: str) -> str:
    """The host's architecture gets the plain version tag; another gets -ARCH after it, so
    that building both never hides the image the host can run behind one it cannot."""
    suffix = "" if arch == platform.machine() else f"-{arch}"
    return f"{REPOSITORY}:{version}{suffix}"


def build_image(config: ImageConfig) -> ImageResult:
    """Build the image; the caller holds the lock of build/ARCH."""
    require_tool("buildah", "build the OCI image")
    name = local_name(config.arch, config.version)
    archive = config.dist / f"{PRODUCT}-{config.version}.oci.tar"
    config.work.mkdir(parents=True, exist_ok=True)
    for stale in config.work.glob(f"{_SCRATCH}*"):  # left by a run that was SIGKILLed
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(dir=config.work, prefix=_SCRATCH))
    try:
        files = image_files(read_payload(config.package))
        rootfs = scratch / "rootfs.tar"
        write_rootfs_tar(files, config.created, rootfs)
        log.info(f"{len(files)} paths from {config.package.name}, OpenRC left out")
        layout = scratch / "layout"
        # The reference inside the archive names the architecture, so that loading it
        # with `podman load` never replaces the host's image with another architecture's.
        reference = f"{REPOSITORY}:{config.version}-{config.arch}"
        _buildah_commit(config, rootfs, f"oci:{layout}:{reference}")
        with replacing(archive) as partial:
            pack_layout(layout, partial, config.created)
            image = read_image(partial)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    loaded = config.load and _load(archive, name)
    return ImageResult(archive=archive, image=image, name=name, loaded=loaded)


def working_container(work: Path) -> str:
    """The name of this build folder's buildah container: one per checkout and arch."""
    return f"tmate-forge-{work.name}-{sha256_bytes(str(work).encode())[:12]}"


def _buildah_commit(config: ImageConfig, rootfs: Path, destination: str) -> None:
    name = working_container(config.work)
    # Left by a run that was SIGKILLed (nothing else uses it: the caller holds the lock).
    with contextlib.suppress(ForgeError):
        capture(["buildah", "rm", name], echo=False)
    container = capture(["buildah", "from", "--quiet", "--name", name, "scratch"]).strip()
    try:
        capture(["buildah", "add", "--quiet", container, str(rootfs), "/"])
        capture(["buildah", "config", *_config_flags(config), container])
        capture(["buildah", "commit", "--quiet", "--identity-label=false",
                 "--disable-compression=false", "--timestamp", str(config.created),
                 container, destination])  # fmt: skip
    except BaseException:
        # The first error is the one to report; a failing clean-up only gets a line.
        with contextlib.suppress(ForgeError):
            capture(["buildah", "rm", container])
        raise
    capture(["buildah", "rm", container])


def _config_flags(config: ImageConfig) -> list[str]:
    architecture, variant = PLATFORMS[config.arch]
    created = datetime.fromtimestamp(config.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = {
        "org.opencontainers.image.title": PRODUCT,
        "org.opencontainers.image.description": (
            "tmate server: share terminals over SSH (static musl build, no shell)"
        ),
        "org.opencontainers.image.version": config.version,
        "org.opencontainers.image.revision": config.revision,
        "org.opencontainers.image.source": config.source,
        "org.opencontainers.image.licenses": config.licenses,
        "org.opencontainers.image.created": created,
    }
    flags = [
        "--os", "linux",
        "--arch", architecture,
        "--entrypoint", f'["/usr/bin/{LAUNCHER}"]',
        "--env", "LANG=C.UTF-8",
        "--port", PORT,
        "--volume", f"/{KEYS_FOLDER}",
        # The launcher forwards SIGTERM to the server and is gone within a second.
        "--stop-signal", "SIGTERM",
        "--workingdir", "/",
        "--created-by", f"tmate-forge image {config.version}",
    ]  # fmt: skip
    if variant:
        flags += ["--variant", variant]
    for key, value in annotations.items():
        flags += ["--annotation", f"{key}={value}"]
    # buildah adds empty base.name and base.digest for FROM scratch; there is no base.
    flags += ["--annotation", "org.opencontainers.image.base.name-",
              "--annotation", "org.opencontainers.image.base.digest-"]  # fmt: skip
    return flags


def _load(archive: Path, name: str) -> bool:
    """Copy the archive into the local container storage, when podman is here to use it.

    The archive is the stage's product; a failure to load it is reported, not fatal.
    """
    later = f"load it later with `podman load -i {archive}`"
    if shutil.which("podman") is None or shutil.which("skopeo") is None:
        log.info(f"podman or skopeo is not installed: the image was not loaded; {later}")
        return False
    previous = _image_id(name)
    try:
        capture(["skopeo", "copy", "--quiet", f"oci-archive:{archive}",
                 f"containers-storage:{name}"])  # fmt: skip
    except ForgeError as err:
        log.info(f"WARNING: the image was not loaded: {err.message.splitlines()[-1]}; {later}")
        return False
    if previous and previous != _image_id(name):
        # The image this name had before, now untagged: remove it unless a container or
        # another name still uses it.
        with contextlib.suppress(ForgeError):
            capture(["podman", "image", "rm", previous], echo=False)
    return True


def _image_id(name: str) -> str:
    try:
        return capture(["podman", "image", "inspect", "--format", "{{.Id}}", name],
                       echo=False).strip()  # fmt: skip
    except ForgeError:
        return ""


def run_line(name: str) -> str:
    """The `podman run` line the README documents, for this image. The host name is an
    example to replace: this machine's own name is often one that clients cannot reach."""
    caps = ",".join(CAPABILITIES)
    return (f"podman run -d --name tmate -p 2222:2222 --cap-drop ALL --cap-add {caps} "
            f"--read-only --tmpfs /tmp -v tmate-keys:/{KEYS_FOLDER} "
            f"-e SSH_HOSTNAME=tmate.example.org {name}")  # fmt: skip
