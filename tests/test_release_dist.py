"""The finished release in dist/, as a careful user would check it before trusting it.

`nox -s release` runs these after `tmate-forge release` (with --release-dist: a missing
release fails them). In the test suite they check dist/ when it holds a finished
release, and skip otherwise.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from tmate_forge.arch import ARCHES
from tmate_forge.compile import PRODUCT
from tmate_forge.ocilayout import read_image

from .conftest import ROOT, require_tools

pytestmark = pytest.mark.release

DIST = ROOT / "dist"
PER_ARCH = (PRODUCT, f"{PRODUCT}.debug", f"{PRODUCT}-launch", f"{PRODUCT}-launch.debug")


@pytest.fixture(scope="module")
def sums(request: pytest.FixtureRequest) -> dict[str, str]:
    path = DIST / "SHA256SUMS"
    if not path.is_file():
        reason = "no finished release in dist/ (no SHA256SUMS): run `nox -s release`"
        if request.config.getoption("--release-dist"):
            pytest.fail(reason)
        pytest.skip(reason)
    return {name: digest for digest, name in
            (line.split("  ", 1) for line in path.read_text().splitlines())}  # fmt: skip


def _version(sums: dict[str, str]) -> str:
    (index,) = [n for n in sums if "/" not in n and n.endswith(".oci.tar")]
    return index.removeprefix(f"{PRODUCT}-").removesuffix(".oci.tar")


def test_sha256sum_checks_every_file(sums: dict[str, str]) -> None:
    done = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=DIST,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len(sums)


def test_every_artifact_is_there_with_its_sbom(sums: dict[str, str]) -> None:
    version = _version(sums)
    expected = {f"{PRODUCT}-{version}.oci.tar", f"{PRODUCT}-{version}-sources.tar.gz"}
    for arch in ARCHES:
        names = (*PER_ARCH, f"{PRODUCT}-{version}.apk", f"{PRODUCT}-{version}.oci.tar")
        expected |= {f"{arch}/{name}" for name in names}
        expected |= {f"{arch}/APKINDEX.tar.gz", f"{arch}/{PRODUCT}.manifest.json"}
    missing = sorted(name for name in expected if name not in sums)
    assert missing == []
    without_sbom = sorted(
        name for name in expected
        if not name.endswith(("sources.tar.gz", "APKINDEX.tar.gz", ".json"))
        and f"{name}.spdx.json" not in sums
    )  # fmt: skip
    assert without_sbom == []
    assert [name for name in sums if name.startswith("keys/")], "no signing key is published"


def test_sboms_are_valid_spdx(sums: dict[str, str]) -> None:
    sboms = [name for name in sums if name.endswith(".spdx.json")]
    assert len(sboms) == 2 * 6 + 1
    for name in sboms:
        document = parse_file(str(DIST / name))
        assert validate_full_spdx_document(document) == [], name
        described = document.packages[0]
        artifact = DIST / name.removesuffix(".spdx.json")
        assert described.checksums[0].value == hashlib.sha256(artifact.read_bytes()).hexdigest()


def test_sbom_sources_are_the_files_in_the_bundle(sums: dict[str, str]) -> None:
    version = _version(sums)
    bundle_name = f"{PRODUCT}-{version}-sources"
    with tarfile.open(DIST / f"{bundle_name}.tar.gz") as bundle:
        digests = {}
        for member in bundle.getmembers():
            content = bundle.extractfile(member) if member.isreg() else None
            if content is not None:
                relative = member.name.removeprefix(f"{bundle_name}/")
                digests[relative] = hashlib.sha256(content.read()).hexdigest()
    document = json.loads((DIST / "x86_64" / f"{PRODUCT}.spdx.json").read_text())
    components = [p for p in document["packages"][1:] if p.get("packageFileName")]
    assert {p["name"] for p in components} >= {"libssh", "mbedtls", "libevent", "ncurses",
                                               "msgpack-c", PRODUCT}  # fmt: skip
    for package in components:
        assert digests[package["packageFileName"]] == package["checksums"][0]["checksumValue"]
    for patch in document["files"]:
        assert digests[patch["fileName"].removeprefix("./")] == next(
            c["checksumValue"] for c in patch["checksums"] if c["algorithm"] == "SHA256"
        )
    assert any(name.startswith("recipes/") for name in digests)
    assert any(name.startswith("src/tmate_forge/") for name in digests)


def test_image_index_holds_both_architectures(sums: dict[str, str]) -> None:
    require_tools("skopeo")
    version = _version(sums)
    index = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{DIST / f'{PRODUCT}-{version}.oci.tar'}"],
        capture_output=True, text=True, check=True).stdout)  # fmt: skip
    by_platform = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    for arch, platform in (("x86_64", "amd64"), ("aarch64", "arm64")):
        image = read_image(DIST / arch / f"{PRODUCT}-{version}.oci.tar")
        assert by_platform[platform] == image.manifest_digest
