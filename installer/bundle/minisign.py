"""minisign's key and signature files, in pure Python (stdlib-only; see ed25519.py).

The formats (https://jedisct1.github.io/minisign/), all base64 on the line after a comment line:

    public key   "Ed" | key id (8) | Ed25519 public key (32)
    secret key   "Ed" | kdf "\\0\\0" (unencrypted) | "B2" | salt (32) | opslimit (8) | memlimit (8)
                 | key id (8) | seed (32) + public key (32) | BLAKE2b-256("Ed" | key id | sk)
                 (minisign -W writes zeros there; both are read)
    signature    "ED" | key id (8) | Ed25519 signature of BLAKE2b-512(file) (64)
                 then "trusted comment: ..." and base64 of the global signature:
                 Ed25519 over (the signature's 64 bytes | the trusted comment's text)

Only the prehashed "ED" signatures are written; "Ed" (legacy, the whole file signed) are read
too. Encrypted secret keys (kdf "Sc") are refused with a hint: `minisign -C` removes the password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from . import ed25519
from .errors import REFUSED, SETUP, BundleError

_UNTRUSTED = "untrusted comment: "
_TRUSTED = "trusted comment: "


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes
    key: bytes

    @property
    def key_id_hex(self) -> str:
        # minisign prints the id as a big-endian hex number of the little-endian 8 bytes
        return self.key_id[::-1].hex().upper()

    def to_text(self) -> str:
        body = base64.b64encode(b"Ed" + self.key_id + self.key).decode()
        return f"{_UNTRUSTED}minisign public key {self.key_id_hex}\n{body}\n"


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    seed: bytes

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key_id, ed25519.public_key(self.seed))

    def to_text(self) -> str:
        sk = self.seed + self.public.key
        checksum = hashlib.blake2b(b"Ed" + self.key_id + sk, digest_size=32).digest()
        blob = (b"Ed" + b"\0\0" + b"B2" + bytes(32) + bytes(8) + bytes(8)
                + self.key_id + sk + checksum)
        return (f"{_UNTRUSTED}minisign secret key (unencrypted; keep it off the network)\n"
                f"{base64.b64encode(blob).decode()}\n")


@dataclass(frozen=True)
class Signature:
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes


def generate() -> SecretKey:
    return SecretKey(os.urandom(8), os.urandom(32))


def _decode(text: str, what: str, source: str) -> bytes:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].startswith(_UNTRUSTED):
        raise BundleError(f"{source} is not a minisign {what} file",
                          f"give the {what} file written by `gemba bundle keygen` or minisign",
                          SETUP)
    try:
        return base64.b64decode(lines[1].strip(), validate=True)
    except binascii.Error:
        raise BundleError(f"{source}: the {what} is not valid base64",
                          f"give the {what} file written by `gemba bundle keygen` or minisign",
                          SETUP) from None


def parse_public_key(text: str, source: str = "the public key") -> PublicKey:
    # a bare base64 key (as `minisign -P` takes it) is accepted as well as a key file
    if not text.lstrip().startswith(_UNTRUSTED):
        text = f"{_UNTRUSTED}\n{text.strip()}\n"
    blob = _decode(text, "public key", source)
    if len(blob) != 42 or blob[:2] != b"Ed":
        raise BundleError(f"{source} is not an Ed25519 minisign public key",
                          "give the .pub file written by `gemba bundle keygen` or minisign -G",
                          SETUP)
    return PublicKey(blob[2:10], blob[10:42])


def parse_secret_key(text: str, source: str = "the secret key") -> SecretKey:
    blob = _decode(text, "secret key", source)
    if len(blob) != 158 or blob[:2] != b"Ed" or blob[4:6] != b"B2":
        raise BundleError(f"{source} is not an Ed25519 minisign secret key",
                          "give the .key file written by `gemba bundle keygen` or minisign -G",
                          SETUP)
    if blob[2:4] != b"\0\0":
        raise BundleError(f"{source} is protected by a password, which gemba cannot read",
                          "remove the password on the signing machine: minisign -C -s KEYFILE "
                          "(then keep the file offline), or make a new key with "
                          "`gemba bundle keygen`", SETUP)
    key_id, sk, checksum = blob[54:62], blob[62:126], blob[126:158]
    # minisign -W leaves the checksum of an unencrypted key all zeros and never reads it
    expected = hashlib.blake2b(b"Ed" + key_id + sk, digest_size=32).digest()
    if checksum != bytes(32) and checksum != expected:
        raise BundleError(f"{source} is damaged: its checksum does not match",
                          "use a good copy of the key", SETUP)
    secret = SecretKey(key_id, sk[:32])
    if secret.public.key != sk[32:]:
        raise BundleError(f"{source} is damaged: its public half does not match",
                          "use a good copy of the key", SETUP)
    return secret


def sign_bytes(secret: SecretKey, data: bytes, trusted_comment: str,
               untrusted_comment: str = "signature from gemba bundle secret key") -> str:
    """The text of a .minisig file for `data` (prehashed, as minisign writes by default)."""
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise ValueError("a trusted comment is one line")
    digest = hashlib.blake2b(data, digest_size=64).digest()
    signature = ed25519.sign(secret.seed, digest)
    global_signature = ed25519.sign(secret.seed, signature + trusted_comment.encode())
    return (f"{_UNTRUSTED}{untrusted_comment}\n"
            f"{base64.b64encode(b'ED' + secret.key_id + signature).decode()}\n"
            f"{_TRUSTED}{trusted_comment}\n"
            f"{base64.b64encode(global_signature).decode()}\n")


def parse_signature(text: str, source: str) -> Signature:
    lines = text.splitlines()
    bad = BundleError(f"{source} is not a minisign signature file",
                      "the bundle was damaged or edited: get a fresh copy from the build machine")
    if len(lines) < 4 or not lines[0].startswith(_UNTRUSTED) or not lines[2].startswith(_TRUSTED):
        raise bad
    try:
        blob = base64.b64decode(lines[1].strip(), validate=True)
        global_signature = base64.b64decode(lines[3].strip(), validate=True)
    except binascii.Error:
        raise bad from None
    if len(blob) != 74 or blob[:2] not in (b"ED", b"Ed") or len(global_signature) != 64:
        raise bad
    return Signature(blob[:2], blob[2:10], blob[10:74], lines[2][len(_TRUSTED):],
                     global_signature)


def verify_bytes(trusted: list[PublicKey], data: bytes, signature_text: str,
                 source: str) -> tuple[PublicKey, str]:
    """The key that signed `data` and the trusted comment; BundleError naming the reason."""
    signature = parse_signature(signature_text, source)
    by_id = {key.key_id: key for key in trusted}
    key = by_id.get(signature.key_id)
    signer = signature.key_id[::-1].hex().upper()
    if key is None:
        known = ", ".join(k.key_id_hex for k in trusted) or "none"
        raise BundleError(f"{source} is signed by key {signer}, which this box does not trust "
                          f"(trusted: {known})",
                          "get a bundle signed with the site's key, or, if the key was replaced, "
                          "add the new public key with --trust FILE (docs/offline.md, Keys)")
    message = (hashlib.blake2b(data, digest_size=64).digest()
               if signature.algorithm == b"ED" else data)
    if not ed25519.verify(key.key, message, signature.signature):
        raise BundleError(f"{source}: the signature does not match the signed file "
                          f"(key {signer})",
                          "the bundle was changed after it was signed: do not install it; get a "
                          "fresh copy from the build machine", REFUSED)
    if not ed25519.verify(key.key, signature.signature + signature.trusted_comment.encode(),
                          signature.global_signature):
        raise BundleError(f"{source}: the trusted comment was changed after signing",
                          "do not install this bundle; get a fresh copy from the build machine",
                          REFUSED)
    return key, signature.trusted_comment


def read_public_keys(paths: list[Path]) -> list[PublicKey]:
    keys = []
    for path in paths:
        try:
            keys.append(parse_public_key(path.read_text(encoding="utf-8"), str(path)))
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError(f"cannot read the public key {path}: {exc}",
                              "give the .pub file written by `gemba bundle keygen`", SETUP) \
                from None
    return keys
