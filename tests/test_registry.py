"""Voice registry: which folders become voices, which are skipped and why, and reloads against an engine."""

from __future__ import annotations

import json
import logging

import anyio
import pytest

from voicelab.engine.base import EngineRequestError, EngineUnavailableError, Voice
from voicelab.server.registry import VoiceNotFoundError, VoiceRegistry, scan_voices
from voicelab.testing.voices import write_voice_folder
from voicelab.voice import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, VOICE_FILE

BASE = "org/orpheus-base"


class RecordingEngine:
    """Records load/unload calls; ``refuse`` maps a voice name to the error its load raises."""

    def __init__(self, refuse: dict[str, Exception] | None = None):
        self.loaded: dict[str, Voice] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse or {}

    async def load_voice(self, voice: Voice) -> None:
        self.calls.append(("load", voice.name))
        if voice.name in self.refuse:
            raise self.refuse[voice.name]
        self.loaded[voice.name] = voice

    async def unload_voice(self, name: str) -> None:
        self.calls.append(("unload", name))
        self.loaded.pop(name, None)


def test_valid_voices_are_found_with_their_prompt_prefix(tmp_path):
    write_voice_folder(tmp_path, "alice", base_model=BASE, rank=32, prompt_prefix="Alice: ")
    write_voice_folder(tmp_path, "bob_2", base_model=BASE)
    scan = scan_voices(tmp_path, base_model=BASE, max_lora_rank=64)
    assert sorted(scan.voices) == ["alice", "bob_2"]
    alice = scan.voices["alice"]
    assert alice.voice.prompt_prefix == "Alice: "
    assert alice.voice.adapter_path == (tmp_path / "alice").resolve()
    assert alice.rank == 32
    assert scan.skipped == {}


def test_junk_in_the_voices_folder_is_ignored_or_explained(tmp_path):
    write_voice_folder(tmp_path, "good", base_model=BASE)
    (tmp_path / "README.md").write_text("notes")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "checkpoint only").mkdir()
    scan = scan_voices(tmp_path, base_model=BASE)
    assert list(scan.voices) == ["good"]
    assert "no adapter_config.json" in scan.skipped["empty"]
    assert "invalid voice name" in scan.skipped["checkpoint only"]
    assert "README.md" not in scan.skipped and ".cache" not in scan.skipped


def test_missing_voices_folder_is_an_empty_registry(tmp_path):
    scan = scan_voices(tmp_path / "nothing-here", base_model=BASE)
    assert scan.voices == {} and scan.skipped == {}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"modules_to_save": ["lm_head", "embed_tokens"]}, "modules_to_save"),
        ({"use_dora": True}, "DoRA"),
        ({"bias": "all"}, "bias"),
        ({"r": 128}, "above the served --max-lora-rank 64"),
        ({"peft_type": "IA3"}, "only LORA"),
        ({"base_model_name_or_path": "someone/else"}, "trained on base model 'someone/else'"),
        ({"target_modules": ["q_proj", "lm_head"]}, "not Llama projections"),
    ],
)
def test_adapters_vllm_would_refuse_are_skipped_with_the_reason(tmp_path, overrides, reason):
    write_voice_folder(tmp_path, "bad", base_model=BASE, **overrides)
    write_voice_folder(tmp_path, "fine", base_model=BASE)
    scan = scan_voices(tmp_path, base_model=BASE, max_lora_rank=64)
    assert list(scan.voices) == ["fine"]
    assert reason in scan.skipped["bad"]


def test_broken_files_are_skipped_not_fatal(tmp_path):
    write_voice_folder(tmp_path, "broken_json", base_model=BASE)
    (tmp_path / "broken_json" / ADAPTER_CONFIG_FILE).write_text("{not json")
    write_voice_folder(tmp_path, "list_json", base_model=BASE)
    (tmp_path / "list_json" / ADAPTER_CONFIG_FILE).write_text("[1, 2]")
    write_voice_folder(tmp_path, "no_weights", base_model=BASE)
    (tmp_path / "no_weights" / ADAPTER_WEIGHTS_FILE).unlink()
    write_voice_folder(tmp_path, "bad_voice_json", base_model=BASE)
    (tmp_path / "bad_voice_json" / VOICE_FILE).write_text('{"name": "bad_voice_json"}')
    scan = scan_voices(tmp_path, base_model=BASE)
    assert scan.voices == {}
    assert "unreadable adapter_config.json" in scan.skipped["broken_json"]
    assert "not a JSON object" in scan.skipped["list_json"]
    assert "no adapter weights" in scan.skipped["no_weights"]
    assert (
        "voice.json" in scan.skipped["bad_voice_json"] and "prompt_prefix" in scan.skipped["bad_voice_json"]
    )


def test_voice_without_voice_json_gets_the_default_prefix_and_a_warning(tmp_path, caplog):
    write_voice_folder(tmp_path, "carol", base_model=BASE, with_voice_json=False)
    with caplog.at_level(logging.WARNING, logger="voicelab.server.registry"):
        scan = scan_voices(tmp_path, base_model=BASE)
    assert scan.voices["carol"].voice.prompt_prefix == "carol: "
    assert scan.voices["carol"].metadata is None
    assert any("carol" in r.getMessage() and "voice.json" in r.getMessage() for r in caplog.records)


def test_symlinks_pointing_outside_the_voices_folder_are_refused(tmp_path):
    voices = tmp_path / "voices"
    outside = tmp_path / "elsewhere"
    write_voice_folder(outside, "secret", base_model=BASE)
    write_voice_folder(voices, "inside", base_model=BASE)
    (voices / "escape").symlink_to(outside / "secret", target_is_directory=True)
    write_voice_folder(voices, "sneaky", base_model=BASE)
    (voices / "sneaky" / ADAPTER_CONFIG_FILE).unlink()
    (voices / "sneaky" / ADAPTER_CONFIG_FILE).symlink_to(outside / "secret" / ADAPTER_CONFIG_FILE)
    (voices / "alias").symlink_to(voices / "inside", target_is_directory=True)
    scan = scan_voices(voices, base_model=BASE)
    assert "outside" in scan.skipped["escape"]
    assert "outside" in scan.skipped["sneaky"]
    assert sorted(scan.voices) == ["alias", "inside"]


@pytest.mark.parametrize("linked", [VOICE_FILE, ADAPTER_WEIGHTS_FILE])
def test_a_voice_file_symlinked_outside_is_refused_not_read(tmp_path, linked):
    voices, outside = tmp_path / "voices", tmp_path / "elsewhere"
    outside.mkdir()
    (outside / linked).write_text(json.dumps({"name": "v", "base_model": BASE, "prompt_prefix": "SECRET: "}))
    write_voice_folder(voices, "v", base_model=BASE)
    (voices / "v" / linked).unlink()
    (voices / "v" / linked).symlink_to(outside / linked)
    scan = scan_voices(voices, base_model=BASE)
    assert scan.voices == {} and "outside" in scan.skipped["v"]


def test_base_model_given_as_relative_or_absolute_path_matches(tmp_path, monkeypatch):
    base_dir = tmp_path / "models" / "tiny"
    base_dir.mkdir(parents=True)
    write_voice_folder(tmp_path / "voices", "dora", base_model=str(base_dir))
    monkeypatch.chdir(tmp_path)
    scan = scan_voices(tmp_path / "voices", base_model="models/tiny/")
    assert list(scan.voices) == ["dora"]


def test_lookup_of_an_unknown_voice_lists_the_served_ones(tmp_path):
    write_voice_folder(tmp_path, "alice", base_model=BASE)
    write_voice_folder(tmp_path, "bob", base_model=BASE)
    registry = VoiceRegistry(tmp_path, base_model=BASE, max_lora_rank=64)
    anyio.run(registry.reload, RecordingEngine())
    for name in ("zed", "../alice", "alice/../bob", "", "ALICE"):
        with pytest.raises(VoiceNotFoundError) as info:
            registry.get(name)
        assert info.value.available == ["alice", "bob"]
        assert "alice, bob" in str(info.value)
    assert registry.get("alice").name == "alice"


def test_reload_loads_added_unloads_removed_and_reloads_retrained(tmp_path):
    engine = RecordingEngine()
    registry = VoiceRegistry(tmp_path, base_model=BASE, max_lora_rank=64)
    write_voice_folder(tmp_path, "alice", base_model=BASE)
    write_voice_folder(tmp_path, "bob", base_model=BASE)
    first = anyio.run(registry.reload, engine)
    assert first.added == ["alice", "bob"] and sorted(engine.loaded) == ["alice", "bob"]

    import shutil

    shutil.rmtree(tmp_path / "bob")
    write_voice_folder(tmp_path, "carol", base_model=BASE)
    (tmp_path / "alice" / ADAPTER_WEIGHTS_FILE).write_bytes(b"retrained weights, longer than before")
    engine.calls.clear()
    second = anyio.run(registry.reload, engine)
    assert second.added == ["carol"]
    assert second.removed == ["bob"]
    assert second.updated == ["alice"]
    assert ("unload", "bob") in engine.calls and ("unload", "alice") in engine.calls
    assert ("load", "alice") in engine.calls and ("load", "carol") in engine.calls
    assert registry.names() == ["alice", "carol"]

    engine.calls.clear()
    third = anyio.run(registry.reload, engine)
    assert third.unchanged == ["alice", "carol"] and engine.calls == []


def test_engine_refusing_an_adapter_reports_it_and_keeps_the_others(tmp_path):
    write_voice_folder(tmp_path, "alice", base_model=BASE)
    write_voice_folder(tmp_path, "bob", base_model=BASE)
    engine = RecordingEngine(refuse={"bob": EngineRequestError("invalid adapter: rank 64 > 32", 400)})
    registry = VoiceRegistry(tmp_path, base_model=BASE, max_lora_rank=64)
    report = anyio.run(registry.reload, engine)
    assert registry.names() == ["alice"]
    assert "rank 64 > 32" in report.failed["bob"]


def test_unreachable_engine_keeps_voices_served_for_a_later_load(tmp_path):
    write_voice_folder(tmp_path, "alice", base_model=BASE)
    engine = RecordingEngine(refuse={"alice": EngineUnavailableError("connection refused")})
    registry = VoiceRegistry(tmp_path, base_model=BASE, max_lora_rank=64)
    report = anyio.run(registry.reload, engine)
    assert registry.names() == ["alice"] and not registry.is_loaded("alice")
    assert "connection refused" in report.failed["alice"]
    engine.refuse.clear()
    anyio.run(registry.ensure_loaded, engine, registry.get("alice"))
    assert registry.is_loaded("alice") and "alice" in engine.loaded


def test_a_skipped_folder_is_reported_once_not_on_every_reload(tmp_path, caplog):
    write_voice_folder(tmp_path, "bad", base_model=BASE, use_dora=True)
    registry = VoiceRegistry(tmp_path, base_model=BASE, max_lora_rank=64)
    engine = RecordingEngine()
    with caplog.at_level(logging.WARNING, logger="voicelab.server.registry"):
        for _ in range(3):
            anyio.run(registry.reload, engine)
    warnings = [r for r in caplog.records if "skipping voice folder" in r.getMessage()]
    assert len(warnings) == 1 and "DoRA" in warnings[0].getMessage()
    assert "DoRA" in registry.skipped["bad"]


def test_voice_json_name_mismatch_serves_the_folder_name(tmp_path):
    folder = write_voice_folder(tmp_path, "erin", base_model=BASE)
    meta = json.loads((folder / VOICE_FILE).read_text())
    meta["name"] = "someone_else"
    (folder / VOICE_FILE).write_text(json.dumps(meta))
    scan = scan_voices(tmp_path, base_model=BASE)
    assert scan.voices["erin"].voice.name == "erin"


def test_a_voice_trained_with_another_snac_is_served_with_one_warning(tmp_path, caplog):
    write_voice_folder(tmp_path, "alice", base_model=BASE)  # voice.json records the default SNAC id
    same = VoiceRegistry(tmp_path, base_model=BASE, max_lora_rank=64, snac_model="hubertsiuzdak/snac_24khz")
    other = VoiceRegistry(tmp_path, base_model=BASE, max_lora_rank=64, snac_model="/models/another-snac")
    with caplog.at_level(logging.WARNING, logger="voicelab.server.registry"):
        assert list(same.scan().voices) == ["alice"]
        assert "SNAC" not in caplog.text
        assert list(other.scan().voices) == ["alice"]
        other.scan()
    warnings = [r.getMessage() for r in caplog.records if "SNAC" in r.getMessage()]
    assert len(warnings) == 1
    assert "alice" in warnings[0] and "VOICELAB_SNAC_MODEL" in warnings[0]
