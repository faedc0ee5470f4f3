from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tmate_forge.errors import RecipeError, SigningKeyError
from tmate_forge.layout import default_cache
from tmate_forge.pkgver import check_pkgver, snapshot_pkgver
from tmate_forge.signing import load_signing_key, read_signing_key

from .alpine import apk, extract_alpine


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def test_first_use_makes_a_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMATE_FORGE_SIGNING_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    first = load_signing_key()
    keys = tmp_path / "tmate-forge" / "keys"
    private = keys / first.name.removesuffix(".pub")
    assert private.stat().st_mode & 0o777 == 0o600
    assert (keys / first.name).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert first.private.key_size == 4096
    again = load_signing_key()
    assert again.name == first.name
    assert [p.name for p in keys.iterdir() if p.name.endswith(".partial")] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read", id="missing"),
        pytest.param(b"not a key", "is not an unencrypted PEM private key", id="garbage"),
        pytest.param(_pem(ec.generate_private_key(ec.SECP256R1())), "apk verifies RSA "
                     "signatures only", id="not-rsa"),
        pytest.param(_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
                     "is a 1024-bit RSA key; expected 2048 or more", id="short"),
    ],
)  # fmt: skip
def test_unsuitable_signing_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, message: str
) -> None:
    path = tmp_path / "packager.rsa"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("TMATE_FORGE_SIGNING_KEY", str(path))
    with pytest.raises(SigningKeyError, match=f"TMATE_FORGE_SIGNING_KEY: .*{message}"):
        load_signing_key()


def test_key_name_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ops@example.org-5f1e.rsa"
    path.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    assert read_signing_key(path, source="test").name == "ops@example.org-5f1e.rsa.pub"


def test_snapshot_pkgver() -> None:
    committed = date(2023, 6, 2)
    assert snapshot_pkgver("2.3.0-68-gd7334ee4", committed, 0, where="t") == "2.3.0_git20230602-r0"
    assert snapshot_pkgver("2.3.0", committed, 1, where="t") == "2.3.0-r1"


@pytest.mark.parametrize("bad", ["2.3.0-beta", "v2.3.0-r0", "2.3.0_git-r", "2.3.0"])
def test_bad_pkgver_is_refused(bad: str) -> None:
    with pytest.raises(RecipeError, match=r"is not an Alpine version"):
        check_pkgver(bad, where="recipes/tmate-ssh-server.toml")


def test_apk_orders_our_snapshot_after_its_release(tmp_path: Path) -> None:
    root = extract_alpine(default_cache(), tmp_path)
    ours = snapshot_pkgver("2.3.0-68-gd7334ee4", date(2023, 6, 2), 0, where="t")
    for other, expected in (("2.3.0-r0", ">"), ("2.3.1-r0", "<"), (ours, "=")):
        compared = apk(root, "version", "-t", ours, other)
        assert compared.stdout.strip() == expected, (other, compared.stdout, compared.stderr)
    invalid = subprocess.run(["chroot", str(root), "/sbin/apk", "version", "-c", "2.3.0.git"],
                             capture_output=True, text=True)  # fmt: skip
    assert invalid.returncode != 0


def test_interrupted_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmate_forge import apk as apk_stage

    target = tmp_path / "dist" / "x86_64" / "tmate-ssh-server-1.0-r0.apk"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the previous package")

    def interrupted(self: Path, data: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        apk_stage._write_atomically(target, b"the new package")
    monkeypatch.undo()
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert target.read_bytes() == b"the previous package"


@pytest.mark.parametrize("name", ["two words.rsa", "evil\nkey.rsa", "-leading.rsa"])
def test_a_key_name_that_would_break_a_listing_is_refused(tmp_path: Path, name: str) -> None:
    """The name goes into the package's signature entry, dist/keys and SHA256SUMS."""
    path = tmp_path / name
    path.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(SigningKeyError, match="not one word of letters"):
        read_signing_key(path, source="test")
