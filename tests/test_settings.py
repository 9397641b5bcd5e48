"""Server settings: VOICELAB_* from the environment and from a .env file (the environment wins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicelab.server.app import create_app
from voicelab.server.settings import SettingsError, load_settings


@pytest.fixture
def env_file(tmp_path, monkeypatch) -> Path:
    for name in ("VOICELAB_MODEL_ID", "VOICELAB_MAX_INPUT_CHARS", "VOICELAB_VOICES_DIR", "VOICELAB_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_text(
        "# one deployment, one file\n"
        "VOICELAB_MODEL_ID=from-file\n"
        "VOICELAB_MAX_INPUT_CHARS=100\n"
        "VOICELAB_API_KEYS=old-key,new-key\n"
        "HF_HUB_OFFLINE=1\n"  # not a voicelab setting: left alone
    )
    return path


def test_env_file_supplies_settings(env_file):
    settings = load_settings(env_file)
    assert settings.model_id == "from-file"
    assert settings.max_input_chars == 100
    assert [key.get_secret_value() for key in settings.api_keys] == ["old-key", "new-key"]


def test_real_environment_wins_over_env_file(env_file, monkeypatch):
    monkeypatch.setenv("VOICELAB_MODEL_ID", "from-env")
    settings = load_settings(env_file)
    assert settings.model_id == "from-env"
    assert settings.max_input_chars == 100  # lines the environment does not set still come from the file


def test_missing_env_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("VOICELAB_MODEL_ID", raising=False)
    assert load_settings(tmp_path / "absent.env").model_id == "orpheus"
    assert load_settings(None).model_id == "orpheus"


def test_typo_in_env_file_is_named_not_ignored(env_file):
    env_file.write_text("VOICELAB_MAX_INPT_CHARS=100\nVOICELAB_MODEL_ID=x\n")
    with pytest.raises(SettingsError, match=r"VOICELAB_MAX_INPT_CHARS is no setting"):
        load_settings(env_file)


def test_bad_value_in_env_file_names_the_variable(env_file):
    env_file.write_text("VOICELAB_MAX_INPUT_CHARS=0\n")
    with pytest.raises(SettingsError, match="VOICELAB_MAX_INPUT_CHARS"):
        load_settings(env_file)


def test_server_reads_env_file_in_working_directory(env_file, monkeypatch):
    monkeypatch.chdir(env_file.parent)  # `make serve` runs in the repository root
    app = create_app()
    assert app.state.settings.model_id == "from-file"


def test_vllm_launcher_reads_the_same_env_file(env_file, monkeypatch, capsys):
    from voicelab.cli import serve_vllm

    monkeypatch.delenv("VOICELAB_BASE_MODEL", raising=False)
    env_file.write_text("VOICELAB_BASE_MODEL=/models/orpheus\n")
    monkeypatch.chdir(env_file.parent)
    assert serve_vllm.main(["--dry-run", "--voices-dir", str(env_file.parent)]) == 0
    assert " serve /models/orpheus " in capsys.readouterr().out
    env_file.write_text("VOICELAB_MAX_LORA_RANK=1000\n")
    assert serve_vllm.main(["--dry-run"]) == 2
    assert "VOICELAB_MAX_LORA_RANK" in capsys.readouterr().err
