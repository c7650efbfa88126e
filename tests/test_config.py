"""Settings: defaults for everything; a wrong key or type names the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.config import Paths, effective_settings, load_settings
from appliance.errors import ConfigError
from tests.conftest import GembaHome


def test_missing_config_file_means_all_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "absent.toml")
    assert settings.daemon.host == "127.0.0.1"
    assert settings.daemon.port == 8765
    assert settings.model.id == "smollm2-135m-instruct-q4_1"


def test_unknown_key_is_named_with_file_and_allowed_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[daemon]\nprot = 9000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = caught.value.message
    assert str(config) in message
    assert "daemon.prot" in message
    assert "port" in message  # the allowed keys are listed


def test_wrong_type_is_named_with_the_value_given(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[model]\nn_ctx = "big"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "model.n_ctx" in caught.value.message
    assert "'big'" in caught.value.message


def test_out_of_range_value_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[daemon]\nport = 70000\n")
    with pytest.raises(ConfigError, match="daemon.port"):
        load_settings(config)


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[daemon\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)


def test_effective_settings_say_where_each_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[daemon]\nport = 9100\n")
    rows = {row.key: row for row in effective_settings(load_settings(config), config)}
    assert rows["daemon.port"].value == 9100
    assert rows["daemon.port"].source == f"file {config}"
    assert rows["daemon.host"].source == "default"
    assert rows["daemon.port"].doc  # every field documents itself


def test_gemba_home_puts_everything_in_one_folder(tmp_path: Path) -> None:
    paths = Paths.from_env({"GEMBA_HOME": str(tmp_path)})
    assert paths.config_file == tmp_path / "config.toml"
    assert paths.db_file == tmp_path / "data" / "gemba.db"
    assert paths.models_dir == tmp_path / "models"


def test_without_gemba_home_paths_follow_xdg(tmp_path: Path) -> None:
    paths = Paths.from_env({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "d")})
    assert paths.config_file == tmp_path / ".config" / "gemba" / "config.toml"
    assert paths.db_file == tmp_path / "d" / "gemba" / "gemba.db"
    assert paths.log_dir == tmp_path / ".local" / "state" / "gemba" / "logs"


def test_cli_names_a_bad_key_without_traceback(gemba_home: GembaHome) -> None:
    gemba_home.write_config("[daemon]\nport = 9000\nshout = true\n")
    result = gemba_home.gemba("config", "show")
    assert result.returncode == 78
    assert "daemon.shout" in result.stderr
    assert str(gemba_home.config_file) in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_config_show_json_lists_paths_and_sources(gemba_home: GembaHome) -> None:
    shown = json.loads(gemba_home.gemba("config", "show", "--json", check=True).stdout)
    assert shown["paths"]["db_file"] == str(gemba_home.db_file)
    port = next(row for row in shown["settings"] if row["key"] == "daemon.port")
    assert port["value"] == gemba_home.port
    assert port["source"].startswith("file ")


def test_cli_config_show_hides_the_api_key(gemba_home: GembaHome) -> None:
    gemba_home.write_config('[daemon]\napi_key = "s3cret-key"\n')
    result = gemba_home.gemba("config", "show", check=True)
    assert "s3cret-key" not in result.stdout


@pytest.mark.parametrize("text, key", [
    ('[model]\nkv_cache_type = "q8_0"\nflash_attn = false\n', "flash_attn"),
    ("[generation]\nmax_tokens = 4096\nmax_tokens_limit = 1024\n", "max_tokens_limit"),
    ('[model]\nkv_cache_type = "q2"\n', "model.kv_cache_type"),
])
def test_settings_that_contradict_each_other_are_refused(tmp_path: Path, text: str,
                                                         key: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=key):
        load_settings(config)
