"""podtui's config file: 0600 on write, a warning naming the fix when others can read it."""

from __future__ import annotations

import stat

import pytest

from podtui.config import ConfigError, load_config, save_config, update_config


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_0600_and_round_trips_awkward_values(tmp_path):
    path = tmp_path / "cfg" / "config.toml"
    data = {"runpod": {"api_key": "rpa_x", "image": 'ghcr.io/a/b:1 "q"\n\\ ü'},
            "hosts": {"box": {"target": "root@10.0.0.2:2222", "identity": "~/.ssh/id"}}}
    save_config(data, path)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    loaded = load_config(path)
    assert loaded.data == data and loaded.warnings == []
    update_config("runpod", {"api_url": "https://api.runpod.io"}, path)
    assert load_config(path).get("runpod", "api_key") == "rpa_x" and mode(path) == 0o600


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604])
def test_group_or_world_readable_file_warns_with_the_chmod_fix(tmp_path, bad_mode):
    path = tmp_path / "config.toml"
    save_config({"runpod": {"api_key": "rpa_secret_value"}}, path)
    path.chmod(bad_mode)
    config = load_config(path)
    assert config.warnings == [f"warning: {path} is readable by other users (mode {bad_mode:03o}) and may "
                               f"hold an API key; fix: chmod 600 {path}"]
    assert "rpa_secret_value" not in repr(config)


def test_invalid_toml_is_named_and_the_file_left_alone(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[runpod\napi_key = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    assert path.read_text() == "[runpod\napi_key = 1\n"


def test_missing_file_is_an_empty_config(tmp_path):
    assert load_config(tmp_path / "none.toml").data == {}
