"""A base model is known by its content: the same model at another path serves the voice, another refuses it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from voicelab.cli import serve_vllm
from voicelab.model_identity import ModelIdentity, fingerprint_model, model_identity
from voicelab.server.registry import scan_voices
from voicelab.testing.voices import write_voice_folder
from voicelab.voice import VoiceMetadata


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of the test's own (the user's cache is never read)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def base_copy(tiny_orpheus_dir, tmp_path):
    """The tiny Orpheus copied to another machine's path."""
    return shutil.copytree(tiny_orpheus_dir, tmp_path / "elsewhere" / "orpheus")


def _cache_snapshot(cache, hub_id, source):
    owner, name = hub_id.split("/")
    repo = cache / f"models--{owner}--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    return shutil.copytree(source, repo / "snapshots" / "abc123")


def _voice_trained_on(voices, name, recorded, fingerprint=None, hub_id=None):
    folder = write_voice_folder(voices, name, base_model=recorded)
    meta = VoiceMetadata.read(folder)
    meta = replace(meta, base_model_fingerprint=fingerprint, base_model_hub_id=hub_id)
    (folder / "voice.json").write_text(meta.to_json())
    return folder


def test_fingerprint_follows_content_not_path_or_sharding(tiny_orpheus_dir, base_copy, tmp_path):
    from transformers import AutoModelForCausalLM

    original = fingerprint_model(tiny_orpheus_dir)
    assert original and original == fingerprint_model(base_copy)
    model = AutoModelForCausalLM.from_pretrained(tiny_orpheus_dir)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")  # same weights, several files
    shutil.copy(tiny_orpheus_dir / "config.json", tmp_path / "sharded" / "config.json")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    assert fingerprint_model(tmp_path / "sharded") == original


def test_fingerprint_changes_with_weights_or_config_but_not_provenance(base_copy):
    import torch
    from safetensors.torch import load_file, save_file

    original = fingerprint_model(base_copy)
    config_path = base_copy / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "_name_or_path": "/x", "transformers_version": "9.9"}))
    assert fingerprint_model(base_copy) == original  # where it came from is not what it is
    config_path.write_text(json.dumps({**config, "rope_theta": 1.0}))
    assert fingerprint_model(base_copy) != original
    config_path.write_text(json.dumps(config))
    weights = load_file(base_copy / "model.safetensors")
    name = next(k for k in sorted(weights) if "layers.1.mlp.down_proj" in k)
    weights[name] = weights[name] + torch.full_like(weights[name], 1e-3)  # a fine-tune of one projection
    save_file(weights, base_copy / "model.safetensors", metadata={"format": "pt"})
    assert fingerprint_model(base_copy) not in (None, original)


def test_hub_id_is_found_in_the_cache_without_network(tiny_orpheus_dir, hub_cache):
    snapshot = _cache_snapshot(hub_cache, "org/orpheus", tiny_orpheus_dir)
    identity = model_identity("org/orpheus")
    assert identity.hub_id == "org/orpheus"
    assert identity.fingerprint == fingerprint_model(tiny_orpheus_dir)
    assert model_identity(str(snapshot)).hub_id == "org/orpheus"  # a cache folder names its repository
    assert model_identity("org/not-downloaded") == ModelIdentity("org/not-downloaded", fingerprint=None)


def test_same_model_at_another_path_serves_the_voice(tiny_orpheus_dir, base_copy, tmp_path, hub_cache):
    recorded = model_identity(str(tiny_orpheus_dir))
    voices = tmp_path / "voices"
    _voice_trained_on(voices, "alice", "/other/machine/orpheus", recorded.fingerprint)
    scan = scan_voices(voices, base_model=str(base_copy))
    assert list(scan.voices) == ["alice"], scan.skipped


def test_another_model_is_refused_with_the_reason(tiny_orpheus_dir, tmp_path, hub_cache):
    from voicelab import testing

    other = testing.build_tiny_orpheus(tmp_path / "other", seed=1)
    voices = tmp_path / "voices"
    _voice_trained_on(voices, "alice", "/other/machine/orpheus", fingerprint_model(tiny_orpheus_dir))
    scan = scan_voices(voices, base_model=str(other))
    assert scan.voices == {}
    assert "different models" in scan.skipped["alice"] and "/other/machine/orpheus" in scan.skipped["alice"]


def test_older_voice_without_fingerprint(tiny_orpheus_dir, base_copy, tmp_path, hub_cache):
    voices = tmp_path / "voices"
    _voice_trained_on(voices, "moved", "/gone/orpheus")  # the recorded folder is not on this machine
    _voice_trained_on(voices, "here", str(tiny_orpheus_dir))  # it is: its content is compared
    scan = scan_voices(voices, base_model=str(base_copy))
    assert list(scan.voices) == ["here"]
    assert "records no fingerprint" in scan.skipped["moved"]
    assert "VOICELAB_BASE_MODEL=/gone/orpheus" in scan.skipped["moved"]


def test_hub_id_recorded_at_training_matches_the_served_hub_id(tiny_orpheus_dir, tmp_path, hub_cache):
    voices = tmp_path / "voices"
    _voice_trained_on(voices, "alice", "/models/orpheus", hub_id="org/orpheus")
    _voice_trained_on(voices, "bob", "/models/orpheus", fingerprint="v1:abc")
    scan = scan_voices(voices, base_model="org/orpheus")  # not downloaded here: no fingerprint to compare
    assert list(scan.voices) == ["alice"]
    assert "Hugging Face cache" in scan.skipped["bob"]


def test_vllm_launcher_serves_the_voice_on_the_moved_model(tiny_orpheus_dir, base_copy, tmp_path, capsys):
    voices = tmp_path / "voices"
    _voice_trained_on(voices, "alice", "/other/machine/orpheus", fingerprint_model(tiny_orpheus_dir))
    argv = ["--dry-run", "--voices-dir", str(voices), "--base-model", str(base_copy)]
    assert serve_vllm.main(argv) == 0
    out = capsys.readouterr().out
    assert f"alice={(voices / 'alice').resolve()}" in out and f" serve {base_copy} " in out
