"""MANIFEST.json: every file of a bundle with its size and sha256, signed (stdlib-only).

Verification happens before anything on the box changes, in this order: the signature (a known
key, an intact manifest and trusted comment), then the files: none missing, none extra, each
with the listed size and sha256. A refusal names the file or the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import minisign
from .errors import NOT_FOUND, REFUSED, BundleError

MANIFEST = "MANIFEST.json"
SIGNATURE = "MANIFEST.json.minisig"
FORMAT = 1
_COMMENT = re.compile(r"^gemba-bundle version=(\S+)")
_GET_FRESH = "do not install it; copy the bundle again from the build machine and verify again"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version_key(version: str) -> tuple[int, ...]:
    """Bundle versions are dotted numbers (0.1.0.202506011200); compared number by number."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def trusted_comment(version: str, created_utc: str) -> str:
    return f"gemba-bundle version={version} created={created_utc}"


def bundle_files(bundle: Path) -> list[str]:
    """Every path in the bundle but the manifest and its signature, relative, with '/'."""
    names = []
    for path in sorted(bundle.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        name = path.relative_to(bundle).as_posix()
        if name not in (MANIFEST, SIGNATURE):
            names.append(name)
    return names


def file_entries(bundle: Path, progress: Any = None) -> dict[str, dict[str, Any]]:
    entries = {}
    for name in bundle_files(bundle):
        path = bundle / name
        entries[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        if progress:
            progress(name)
    return entries


def write_signed(bundle: Path, manifest: dict[str, Any], secret: minisign.SecretKey) -> None:
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    (bundle / MANIFEST).write_bytes(data)
    comment = trusted_comment(manifest["version"], manifest["created_utc"])
    (bundle / SIGNATURE).write_text(
        minisign.sign_bytes(secret, data, comment,
                            f"gemba bundle {manifest['version']}, signed by key "
                            f"{secret.public.key_id_hex}"), encoding="utf-8")


@dataclass(frozen=True)
class Verified:
    manifest: dict[str, Any]
    key: minisign.PublicKey

    @property
    def version(self) -> str:
        return self.manifest["version"]


def verify_signature(bundle: Path, trusted: list[minisign.PublicKey]) -> Verified:
    for name in (MANIFEST, SIGNATURE):
        if not (bundle / name).is_file():
            raise BundleError(f"{bundle / name} is missing: this is not a complete gemba bundle",
                              "give the folder made by `gemba bundle build` (the one holding "
                              "install.py and MANIFEST.json)", NOT_FOUND)
    data = (bundle / MANIFEST).read_bytes()
    key, comment = minisign.verify_bytes(
        trusted, data, (bundle / SIGNATURE).read_text(encoding="utf-8", errors="replace"),
        SIGNATURE)
    try:
        manifest = json.loads(data)
    except ValueError:
        raise BundleError(f"{MANIFEST} is signed but not JSON", _GET_FRESH) from None
    match = _COMMENT.match(comment)
    if (not match or not isinstance(manifest, dict) or manifest.get("version") != match.group(1)
            or manifest.get("format") != FORMAT):
        raise BundleError(f"{SIGNATURE}: the trusted comment ({comment!r}) does not name the "
                          f"manifest's version, or the manifest's format is not {FORMAT}",
                          "use a bundle built by this gemba version's `gemba bundle build`")
    return Verified(manifest, key)


def verify_files(bundle: Path, manifest: dict[str, Any], progress: Any = None) -> None:
    listed: dict[str, dict[str, Any]] = manifest["files"]
    present = set(bundle_files(bundle))
    problems = [f"{name} is missing" for name in sorted(set(listed) - present)]
    problems += [f"{name} is not in the manifest (an extra file)"
                 for name in sorted(present - set(listed))]
    for name in sorted(set(listed) & present):
        path = bundle / name
        expected = listed[name]
        if path.is_symlink() or not path.is_file():
            problems.append(f"{name} is not a regular file")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"{name} was changed: {path.stat().st_size} bytes, "
                            f"the manifest says {expected['size']}")
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"{name} was changed: its sha256 is not the manifest's "
                            f"({expected['sha256'][:16]}...)")
        if progress:
            progress(name)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])})" \
            if len(problems) > 1 else ""
        raise BundleError(f"bundle refused: {problems[0]}{more}", _GET_FRESH, REFUSED)


def verify_bundle(bundle: Path, trusted: list[minisign.PublicKey],
                  progress: Any = None) -> Verified:
    """The signed manifest of an intact bundle, or BundleError naming what is wrong."""
    verified = verify_signature(bundle, trusted)
    verify_files(bundle, verified.manifest, progress)
    return verified
