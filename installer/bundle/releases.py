"""The box's side-by-side releases (stdlib-only): releases/<version>/, `current`, rollback.

    ROOT/releases/<version>/    one virtual environment per release, built in place
    ROOT/current -> releases/<version>   switched atomically (a new link, then rename)
    ROOT/keys/*.pub             the public keys bundles must be signed with
    HOME/data/gemba.db          backed up to HOME/data/backups/ before every switch

The current release and the two newest others are kept; older ones are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from .errors import NOT_FOUND, STORAGE, BundleError
from .manifest import version_key

MARKER = "gemba-release.json"
KEEP_PREVIOUS = 2


def releases_dir(root: Path) -> Path:
    return root / "releases"


def keys_dir(root: Path) -> Path:
    return root / "keys"


def installed(root: Path) -> list[str]:
    """Complete releases (with their marker), oldest version first."""
    folder = releases_dir(root)
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if (p / MARKER).is_file()]
    return sorted(names, key=version_key)


def current(root: Path) -> str | None:
    link = root / "current"
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def release_info(root: Path, version: str) -> dict[str, object]:
    try:
        return json.loads((releases_dir(root) / version / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": version}


def _fsync_dir(folder: Path) -> None:
    # A deliberate copy of installer.commission's: this module runs from the bundle's install.py
    # on a box with no gemba yet, so it may import only the standard library.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch(root: Path, version: str) -> None:
    """Point `current` at releases/<version> in one rename: never a moment without a link."""
    temporary = root / f".current.{os.getpid()}.tmp"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(f"releases/{version}", temporary)
    os.replace(temporary, root / "current")
    _fsync_dir(root)


def prune(root: Path) -> list[str]:
    """Remove all but the current release and the two newest others; the removed versions."""
    now = current(root)
    others = [v for v in installed(root) if v != now]
    removed = others[:-KEEP_PREVIOUS] if len(others) > KEEP_PREVIOUS else []
    for version in removed:
        shutil.rmtree(releases_dir(root) / version, ignore_errors=True)
    return removed


def previous(root: Path) -> str | None:
    now = current(root)
    older = [v for v in installed(root)
             if now is None or version_key(v) < version_key(now)]
    return older[-1] if older else None


def rollback(root: Path) -> tuple[str | None, str]:
    """Switch `current` back to the newest release older than it: (from, to)."""
    now = current(root)
    target = previous(root)
    if target is None:
        raise BundleError(f"no earlier release to roll back to in {releases_dir(root)} "
                          f"(current: {now or 'none'})",
                          "install a bundle instead: gemba bundle install PATH", NOT_FOUND)
    switch(root, target)
    return now, target


def backup_database(home: Path, before_version: str) -> Path | None:
    """A consistent copy of HOME/data/gemba.db (SQLite's backup API), or None without one."""
    database = home / "data" / "gemba.db"
    if not database.is_file():
        return None
    backups = home / "data" / "backups"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = backups / f"gemba-{stamp}-before-{before_version}.db"
    try:
        backups.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
    except (OSError, sqlite3.Error) as exc:
        raise BundleError(f"cannot back up the database {database} to {backups}: {exc}",
                          "free space on the data disk or stop the program holding the "
                          "database, then install again (nothing was switched)", STORAGE) \
            from None
    return target
