"""Encryption of personal data at rest: AES-256-GCM with numbered key versions, and keyed
hashes (HMAC-SHA-256 under a separate key) for lookups.

A sealed value is text: ``ffpii1:<key version>:<base64url(nonce || ciphertext || tag)>``. The
associated data the caller passes (tenant, customer, field) is authenticated with the key
version, so a ciphertext copied to another row or field, or edited, does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from finfactory.primitives.identity.errors import (
    InvalidKeyring,
    PiiIntegrityError,
    UnknownKeyVersion,
)

KEY_BYTES = 32
NONCE_BYTES = 12
MIN_HASH_KEY_BYTES = 32
_PREFIX = "ffpii1"
_TOKEN = re.compile(r"^ffpii1:([1-9][0-9]{0,8}):([A-Za-z0-9_-]+)$")


def generate_key() -> bytes:
    """A fresh random 256-bit key, for an encryption key version or the hash key."""
    return os.urandom(KEY_BYTES)


class PiiKeyring:
    """Encryption keys by version, plus the lookup-hash key. Key material is given by the
    product (from its KMS or secret store) and never leaves this object: it is not in its
    ``repr`` and the object refuses to be pickled or copied.

    New values are sealed with ``current_version`` (the highest version unless given);
    values sealed under any version the keyring still holds stay readable.
    """

    __slots__ = ("_aead", "_current", "_hash_key")

    def __init__(
        self,
        keys: Mapping[int, bytes],
        *,
        hash_key: bytes,
        current_version: int | None = None,
    ) -> None:
        if not keys:
            raise InvalidKeyring("a keyring needs at least one encryption key")
        aead: dict[int, AESGCM] = {}
        for version, key in keys.items():
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise InvalidKeyring("key versions must be positive integers")
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise InvalidKeyring(f"key version {version} must be {KEY_BYTES} bytes")
            aead[version] = AESGCM(key)
        if not isinstance(hash_key, bytes) or len(hash_key) < MIN_HASH_KEY_BYTES:
            raise InvalidKeyring(f"the hash key must be at least {MIN_HASH_KEY_BYTES} bytes")
        if any(hmac.compare_digest(hash_key, key) for key in keys.values()):
            raise InvalidKeyring("the hash key must differ from every encryption key")
        current = max(aead) if current_version is None else current_version
        if current not in aead:
            raise InvalidKeyring(f"current key version {current} is not in the keyring")
        self._aead = aead
        self._current = current
        self._hash_key = bytes(hash_key)

    generate_key = staticmethod(generate_key)

    @property
    def current_version(self) -> int:
        return self._current

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._aead))

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self._current].encrypt(
            nonce, plaintext, _bound(self._current, associated_data)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{_PREFIX}:{self._current}:{body}"

    def decrypt(self, token: str, associated_data: bytes) -> bytes:
        version = self.version_of(token)
        aead = self._aead.get(version)
        if aead is None:
            raise UnknownKeyVersion(f"no key version {version} in the keyring", version=version)
        match = _TOKEN.match(token)
        assert match is not None  # version_of checked the shape
        body = match.group(2)
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            _tampered()
        if len(raw) < NONCE_BYTES + 16:
            _tampered()
        try:
            return aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _bound(version, associated_data)
            )
        except InvalidTag:
            _tampered()

    @staticmethod
    def version_of(token: str) -> int:
        match = _TOKEN.match(token) if isinstance(token, str) else None
        if match is None:
            _tampered()
        return int(match.group(1))

    def lookup_hash(self, purpose: str, value: str) -> str:
        """HMAC-SHA-256 of ``value`` for ``purpose`` (which should name the tenant too, so
        equal values of two tenants do not hash alike)."""
        message = f"{purpose}\x1f{value}".encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"PiiKeyring(versions={list(self.versions)}, current={self._current})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a PiiKeyring holds key material and cannot be pickled or copied")


def _bound(version: int, associated_data: bytes) -> bytes:
    return f"{_PREFIX}:{version}:".encode() + associated_data


def _tampered() -> NoReturn:
    raise PiiIntegrityError("stored personal data failed authentication")
