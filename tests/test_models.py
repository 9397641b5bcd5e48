"""Model loading (voicelab.models): one contract check and one error for training, the local engine and
the server, shown with a tiny Orpheus whose tokenizer puts the special tokens at shifted ids."""

from __future__ import annotations

import pytest

from voicelab import models, orpheus, testing
from voicelab.audio import write_wav
from voicelab.cli import train_lora
from voicelab.errors import UsageError
from voicelab.training.trainer import DeviceError


@pytest.fixture(scope="module")
def shifted_orpheus_dir(tmp_path_factory):
    """A tiny Orpheus-layout Llama (Orpheus' vocabulary size) whose tokenizer's special ids are off by one."""
    return testing.build_tiny_orpheus(tmp_path_factory.mktemp("shifted_orpheus"), id_shift=1)


@pytest.fixture(scope="module")
def contract_message(shifted_orpheus_dir):
    with pytest.raises(models.ModelLoadError) as info:
        models.load_tokenizer(shifted_orpheus_dir)
    return str(info.value)


def test_the_contract_message_names_the_model_the_ids_and_the_fix(contract_message, shifted_orpheus_dir):
    assert f"{str(shifted_orpheus_dir)!r} is not an Orpheus checkpoint" in contract_message
    start_of_human = orpheus.token_spelling(orpheus.START_OF_HUMAN)
    assert (
        f"{start_of_human} is id {orpheus.START_OF_HUMAN + 1}, not {orpheus.START_OF_HUMAN}"
        in contract_message
    )
    assert "--base-model" in contract_message and "VOICELAB_BASE_MODEL" in contract_message
    assert "canopylabs/orpheus-tts-0.1-pretrained" in contract_message


def test_an_orpheus_tokenizer_and_model_load(tiny_orpheus_dir):
    tokenizer = models.load_tokenizer(tiny_orpheus_dir)
    assert tokenizer.convert_tokens_to_ids(orpheus.token_spelling(orpheus.AUDIO_TOKEN_BASE)) == (
        orpheus.AUDIO_TOKEN_BASE
    )
    model = models.load_base_model(tiny_orpheus_dir, dtype="bf16")
    assert model.get_input_embeddings().num_embeddings == orpheus.VOCAB_SIZE
    assert str(model.dtype) == "torch.bfloat16"


def test_training_refuses_the_tokenizer_with_the_same_message(
    contract_message, shifted_orpheus_dir, tiny_snac_dir, tmp_path, capsys
):
    data = tmp_path / "data"
    write_wav(
        data / "a.wav",
        testing.speech_like_noise([(0.3, 0.05)], orpheus.SAMPLE_RATE)[:, 0],
        orpheus.SAMPLE_RATE,
    )
    (data / "transcript.csv").write_text("filename,text\na,Hello.\n", encoding="utf-8")
    voices = tmp_path / "voices"
    flags = ["--voices-dir", str(voices), "--device", "cpu", "--snac-device", "cpu", "--no-progress"]
    models_flags = ["--base-model", str(shifted_orpheus_dir), "--snac-model", str(tiny_snac_dir)]
    rc = train_lora.main(["bob", str(data), *flags, *models_flags, "--max-steps", "1"])
    assert rc == 2
    assert f"error: {contract_message}\n" in capsys.readouterr().err
    assert not voices.exists() or list(voices.iterdir()) == []


def test_the_local_engine_refuses_the_tokenizer_with_the_same_message(contract_message, shifted_orpheus_dir):
    from voicelab.engine import LocalEngine

    with pytest.raises(models.ModelLoadError) as info:
        LocalEngine(shifted_orpheus_dir)
    assert str(info.value) == contract_message


@pytest.mark.parametrize("engine", ["local", "vllm"])
def test_the_server_refuses_to_start_with_the_same_message(
    engine, contract_message, shifted_orpheus_dir, tiny_snac_dir, tmp_path
):
    """The real start-up (build_backend in the lifespan): no server comes up on a non-Orpheus tokenizer."""
    from voicelab.server.app import create_app
    from voicelab.server.settings import Settings
    from voicelab.testing.server import local_client

    extra = {"vllm_url": "http://127.0.0.1:9"} if engine == "vllm" else {}  # never contacted
    settings = Settings(
        voices_dir=tmp_path, base_model=str(shifted_orpheus_dir), snac_model=str(tiny_snac_dir), **extra
    )
    assert settings.engine_kind == engine
    with pytest.raises(models.ModelLoadError) as info, local_client(create_app(settings)):
        pass
    assert str(info.value) == contract_message


def test_a_model_without_the_orpheus_vocabulary_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    small = LlamaConfig(
        vocab_size=512,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(small).save_pretrained(tmp_path / "llama")
    with pytest.raises(models.ModelLoadError, match=f"512 tokens, not Orpheus' {orpheus.VOCAB_SIZE}"):
        models.load_base_model(tmp_path / "llama")


def test_a_base_model_that_cannot_be_loaded_gets_the_offline_hint(tmp_path):
    missing = tmp_path / "orpheus"
    with pytest.raises(models.ModelLoadError) as info:
        models.load_tokenizer(missing)
    message = str(info.value)
    assert message.startswith(f"cannot load the base model {str(missing)!r}")
    assert "--base-model / VOICELAB_BASE_MODEL" in message
    assert f"`.venv/bin/hf download canopylabs/orpheus-tts-0.1-pretrained --local-dir {missing}`" in message
    hub = models.offline_hint("owner/model", models.BASE_MODEL_SETTING, "the model", "owner/default")
    assert (
        "offline, pass a local folder" in hub and "`.venv/bin/hf download owner/model --local-dir DIR`" in hub
    )


def test_snac_pointed_at_the_orpheus_folder_is_not_told_to_download_into_it(tiny_orpheus_dir):
    with pytest.raises(models.ModelLoadError) as info:
        models.load_snac(tiny_orpheus_dir)
    message = str(info.value)
    assert f"{tiny_orpheus_dir} holds config.json, " in message  # what the folder does hold
    assert "not the SNAC codec (config.json and pytorch_model.bin)" in message
    assert "`.venv/bin/hf download hubertsiuzdak/snac_24khz --local-dir models/snac_24khz`" in message
    assert f"--local-dir {tiny_orpheus_dir}" not in message


def test_load_errors_are_usage_errors():
    assert issubclass(models.ModelLoadError, UsageError)
    assert issubclass(DeviceError, UsageError)


def test_resolve_dtype_names_and_precisions():
    import torch

    assert models.resolve_dtype("fp16") is torch.float16
    assert models.resolve_dtype("bfloat16") is torch.bfloat16
    assert models.resolve_dtype(torch.float32) is torch.float32
    assert models.resolve_dtype(None, "cpu") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        models.resolve_dtype("float7")


def test_a_hub_id_without_network_is_refused_at_once(monkeypatch):
    """No cached copy and a hub whose name does not resolve (``.invalid`` never does): one line now, not a
    minute of retries. Proxies are cleared: behind one, the name need not resolve locally."""
    from huggingface_hub import constants

    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    with pytest.raises(models.ModelLoadError) as info:
        models.check_base_model_source("voicelab-tests/not-a-model")
    message = str(info.value)
    assert "(not in the hub cache, and the hub (hub.invalid) cannot be reached: no network?)" in message
    assert "hf download voicelab-tests/not-a-model --local-dir" in message
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(models.ModelLoadError, match="not in the hub cache, and HF_HUB_OFFLINE is set"):
        models.check_snac_source("voicelab-tests/not-a-codec")
