"""Secrets at rest: cluster tokens, SSH keys, kubeconfigs and secret config keys are stored
Fernet-encrypted. Everything a box decrypts (and its own key) is remembered by the process's
redaction registry, so the log filter can mask it (see ``redaction.py``)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets as _random
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rke2_manager.config import Settings
from rke2_manager.redaction import REGISTRY


class SecretBox:
    """Encrypts and decrypts strings with the service's key."""

    def __init__(self, key_material: str) -> None:
        digest = hashlib.sha256(key_material.encode()).digest()
        fernet_key = base64.urlsafe_b64encode(digest)
        self._fernet = Fernet(fernet_key)
        self._key_material = (key_material, key_material.strip(), fernet_key.decode())
        REGISTRY.pin(self._key_material)

    def key_material(self) -> list[str]:
        """The master key and the Fernet key derived from it: to redact, never to show."""
        return list(self._key_material)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """Use ``RKE2M_SECRET_KEY``, or a key generated once into the data directory."""
        if settings.secret_key:
            return cls(settings.secret_key)
        path = Path(settings.data_dir) / "secret.key"
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(_random.token_urlsafe(32))
        return cls(path.read_text().strip())

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The plaintext of ``token``; ValueError if this key did not encrypt it. The plaintext
        is remembered for log redaction."""
        try:
            plain = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this RKE2M_SECRET_KEY") from exc
        REGISTRY.remember(plain)
        return plain


def new_cluster_token() -> str:
    return _random.token_hex(32)


def new_ssh_keypair(comment: str) -> tuple[str, str]:
    """Return ``(private_key_openssh, public_key_line)`` for a fresh ed25519 key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} {comment}"


def public_key_of(private_openssh: str) -> str:
    """The OpenSSH public key line of a private key; ValueError if it is not a valid key."""
    key = serialization.load_ssh_private_key(private_openssh.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
