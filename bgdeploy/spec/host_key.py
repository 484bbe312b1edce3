"""Parse an OpenSSH public key line (`ssh-ed25519 AAAA... comment`), the form `target.host_key` pins."""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    blob: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.blob).decode("ascii")


def parse_public_key(line: str) -> PublicKey:
    """Return the key; raise ValueError saying what is wrong and how to get a correct line."""
    fields = line.strip().split()
    fix = "paste one line of `ssh-keyscan -t ed25519 HOST` without the leading host name"
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key line ('TYPE BASE64 [comment]'); {fix}")
    if fields[0] not in KEY_TYPES and len(fields) >= 3 and fields[1] in KEY_TYPES:
        raise ValueError(f"starts with a host name {fields[0]!r} (known_hosts format); remove it")
    key_type, data = fields[0], fields[1]
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the key data is not valid base64; {fix}") from None
    if len(blob) < 4:
        raise ValueError(f"the key data is truncated; {fix}")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != key_type.encode("ascii"):
        raise ValueError(f"the key data does not hold a {key_type} key (truncated or mixed up?); {fix}")
    return PublicKey(key_type, blob)
