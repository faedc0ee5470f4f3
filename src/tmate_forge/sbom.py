"""SPDX 2.3 JSON SBOMs: one per release artifact, written and validated by spdx-tools.

Each document describes one artifact (by its file name and SHA-256) and the components
linked into it: for every component its version, licence, the SHA-256 of its source as
it lies in the corresponding-source bundle, and the patches applied to it, each a file
with a PATCH_APPLIED relationship. The creation time is the release's
SOURCE_DATE_EPOCH and the namespace is derived from the artifact's digest, so the same
artifact gives the same document.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from license_expression import get_spdx_licensing
from spdx_tools.spdx.model import (
    Actor,
    ActorType,
    Checksum,
    ChecksumAlgorithm,
    CreationInfo,
    Document,
    File,
    FileType,
    Package,
    PackagePurpose,
    Relationship,
    RelationshipType,
    SpdxNoAssertion,
)
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

from .atomic import write_atomically
from .digest import file_sha256
from .errors import VerifyError
from .sourcebundle import BundledSource

TOOL = "tmate-forge"


@dataclass(frozen=True, kw_only=True)
class Component:
    """One component linked into an artifact, as the compile manifest records it."""

    name: str
    version: str
    license: str  # SPDX expression
    download: str | None  # SPDX download location: the URL, or git+URL@commit
    source: BundledSource | None  # its file in the source bundle; None for the toolchain's
    patches: tuple[Path, ...]  # our patch files applied to it
    comment: str = ""


@dataclass(frozen=True, kw_only=True)
class Artifact:
    path: Path
    purpose: PackagePurpose
    components: tuple[str, ...]  # names of the components linked into it
    license: str  # one expression for the whole artifact


def _id(text: str) -> str:
    return "SPDXRef-" + "".join(c if c.isalnum() or c in ".-" else "-" for c in text)


def _sha(path: Path, algorithm: str) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


def sbom_document(
    artifact: Artifact, components: Sequence[Component], bundle_name: str, created: int
) -> Document:
    licensing = get_spdx_licensing()
    digest = file_sha256(artifact.path)
    name = artifact.path.name
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name=name,
        document_namespace=f"https://tmate-forge.invalid/spdx/{name}-{digest}",
        creators=[Actor(ActorType.TOOL, TOOL)],
        created=datetime.fromtimestamp(created, tz=UTC).replace(tzinfo=None),
        document_comment=f"Sources of every component are in {bundle_name}.",
    )
    top = Package(
        spdx_id=_id(f"artifact-{name}"),
        name=name,
        download_location=SpdxNoAssertion(),
        file_name=name,
        files_analyzed=False,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, digest)],
        license_concluded=licensing.parse(artifact.license),
        license_declared=SpdxNoAssertion(),
        copyright_text=SpdxNoAssertion(),
        primary_package_purpose=artifact.purpose,
    )
    packages, files = [top], []
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, top.spdx_id)]
    linked = (RelationshipType.STATIC_LINK if artifact.purpose == PackagePurpose.APPLICATION
              else RelationshipType.CONTAINS)  # fmt: skip
    by_name = {component.name: component for component in components}
    for component in (by_name[n] for n in artifact.components):
        package = Package(
            spdx_id=_id(f"component-{component.name}"),
            name=component.name,
            version=component.version,
            download_location=component.download or SpdxNoAssertion(),
            files_analyzed=False,
            file_name=component.source.path if component.source else None,
            checksums=(
                [Checksum(ChecksumAlgorithm.SHA256, component.source.sha256)]
                if component.source
                else []
            ),
            license_concluded=licensing.parse(component.license),
            license_declared=licensing.parse(component.license),
            copyright_text=SpdxNoAssertion(),
            primary_package_purpose=PackagePurpose.LIBRARY
            if component.name != "tmate-ssh-server"
            else PackagePurpose.APPLICATION,
            source_info=_patches_text(component),
            comment=component.comment or None,
        )
        packages.append(package)
        relationships.append(Relationship(top.spdx_id, linked, package.spdx_id))
        for patch in component.patches:
            file = File(
                name=f"./patches/{component.name}/{patch.name}",
                spdx_id=_id(f"patch-{component.name}-{patch.name}"),
                checksums=[Checksum(ChecksumAlgorithm.SHA1, _sha(patch, "sha1")),
                           Checksum(ChecksumAlgorithm.SHA256, _sha(patch, "sha256"))],
                file_types=[FileType.SOURCE],
                license_concluded=SpdxNoAssertion(),
                copyright_text=SpdxNoAssertion(),
            )  # fmt: skip
            files.append(file)
            relationships.append(
                Relationship(file.spdx_id, RelationshipType.PATCH_APPLIED, package.spdx_id)
            )
    return Document(creation_info=info, packages=packages, files=files,
                    relationships=relationships)  # fmt: skip


def _patches_text(component: Component) -> str:
    if not component.patches:
        return "built from the pinned source with no patches"
    names = ", ".join(patch.name for patch in component.patches)
    return f"built from the pinned source with our patches {names}, in that order"


def write_sbom(document: Document, path: Path) -> None:
    """Validate the document, then write it as JSON beside its final name and rename it."""
    problems = validate_full_spdx_document(document)
    if problems:
        text = "\n".join(f"  {p.validation_message}" for p in problems[:10])
        raise VerifyError(f"{path}: the SBOM is not valid SPDX 2.3:\n{text}",
                          tip="this is a bug in tmate-forge's SBOM writer; report it")  # fmt: skip
    stream = io.StringIO()
    write_document_to_stream(document, stream, validate=False)
    # Dumped again with sorted keys: the same document gives the same bytes.
    data: dict[str, Any] = json.loads(stream.getvalue())
    write_atomically(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
