"""The package signing key: from TMATE_FORGE_SIGNING_KEY, or made once, as abuild-keygen does.

apk trusts a package when /etc/apk/keys holds a public key whose file name is the one
the signature names, so the key's name travels with it: NAME.rsa is the private key and
NAME.rsa.pub the public one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import log
from .apkv2 import KEY_NAME, SigningKey
from .errors import SigningKeyError

MIN_BITS = 2048
NEW_KEY_BITS = 4096


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "tmate-forge"


def load_signing_key() -> SigningKey:
    """The key named by TMATE_FORGE_SIGNING_KEY, else the user's own, made on first use."""
    if explicit := os.environ.get("TMATE_FORGE_SIGNING_KEY"):
        return read_signing_key(Path(explicit), source="TMATE_FORGE_SIGNING_KEY")
    folder = config_home() / "keys"
    existing = sorted(folder.glob("*.rsa"))
    if existing:
        return read_signing_key(existing[0], source=str(folder))
    return _make_signing_key(folder)


def read_signing_key(path: Path, *, source: str) -> SigningKey:
    tip = f"point {source} at a PEM RSA private key of {MIN_BITS} bits or more"
    try:
        pem = path.read_bytes()
    except OSError as err:
        raise SigningKeyError(f"{source}: cannot read {path}: {err.strerror}", tip=tip) from err
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise SigningKeyError(
            f"{source}: {path} is not an unencrypted PEM private key: {err}", tip=tip
        ) from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError(
            f"{source}: {path} holds a {type(key).__name__.removeprefix('_')} key; "
            "apk verifies RSA signatures only",
            tip=tip,
        )
    if key.key_size < MIN_BITS:
        raise SigningKeyError(
            f"{source}: {path} is a {key.key_size}-bit RSA key; expected {MIN_BITS} or more",
            tip=tip,
        )
    name = path.name if path.name.endswith(".rsa") else f"{path.stem}.rsa"
    if not KEY_NAME.fullmatch(f"{name}.pub"):
        raise SigningKeyError(f"{source}: {path}: the public key would be named {name}.pub, "
                              "which is not one word of letters, digits and ._+@-",
                              tip="rename the key file, e.g. to mykey.rsa")  # fmt: skip
    return SigningKey(name=f"{name}.pub", private=key)


def _make_signing_key(folder: Path) -> SigningKey:
    """Make tmate-forge-XXXXXXXX.rsa (mode 0600) and its .pub, written whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=NEW_KEY_BITS)
    path = folder / f"tmate-forge-{secrets.token_hex(4)}.rsa"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(pem)
    os.replace(partial, path)
    path.with_name(path.name + ".pub").write_bytes(public_pem(key))
    log.info(f"made a new package signing key: {path} (keep it; its .pub is what users trust)")
    return SigningKey(name=f"{path.name}.pub", private=key)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
