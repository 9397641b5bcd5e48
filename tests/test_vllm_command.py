"""The `make vllm` command line: flags derived from the voices, and the launcher script."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from voicelab.cli import serve_vllm
from voicelab.server.vllm_command import (
    CPU_LORA_HEADROOM,
    MAX_LORAS_CAP,
    AdapterSpec,
    VLLMServeOptions,
    build_vllm_command,
    lora_rank_for,
    vllm_environment,
)
from voicelab.testing.voices import write_voice_folder

BASE = "canopylabs/orpheus-tts-0.1-pretrained"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "serve_vllm.py"


def flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def adapters(*ranks: int) -> list[AdapterSpec]:
    return [AdapterSpec(f"v{i}", Path(f"/voices/v{i}"), r) for i, r in enumerate(ranks)]


@pytest.mark.parametrize(
    ("ranks", "expected"), [((8,), 8), ((8, 32), 32), ((16, 33), 64), ((), 32), ((300,), 320)]
)
def test_max_lora_rank_is_the_smallest_allowed_value_fitting_the_largest_adapter(ranks, expected):
    assert lora_rank_for(adapters(*ranks)) == expected


def test_requested_rank_must_be_allowed_and_fit():
    assert lora_rank_for(adapters(8), 64) == 64
    with pytest.raises(ValueError, match="not one vLLM accepts"):
        lora_rank_for(adapters(8), 48)
    with pytest.raises(ValueError, match=r"below the rank of voices \['v1'\]"):
        lora_rank_for(adapters(8, 32), 16)


def test_command_serves_base_model_with_each_voice_as_an_adapter():
    specs = [AdapterSpec("bob", Path("/v/bob"), 8), AdapterSpec("alice", Path("/v/alice"), 32)]
    cmd = build_vllm_command("/opt/vllm", specs, VLLMServeOptions(base_model=BASE))
    assert cmd[:3] == ["/opt/vllm", "serve", BASE]
    assert "--enable-lora" in cmd
    assert flag(cmd, "--max-lora-rank") == "32"
    assert flag(cmd, "--dtype") == "bfloat16"
    assert int(flag(cmd, "--max-model-len")) <= 8192
    assert flag(cmd, "--host") == "127.0.0.1"
    assert flag(cmd, "--max-loras") == "2"
    assert int(flag(cmd, "--max-cpu-loras")) == 2 + CPU_LORA_HEADROOM
    modules = cmd[cmd.index("--lora-modules") + 1 :]
    assert modules == ["alice=/v/alice", "bob=/v/bob"]


def test_max_loras_is_capped_and_no_voices_still_enables_runtime_loading():
    many = adapters(*([8] * 20))
    cmd = build_vllm_command("vllm", many, VLLMServeOptions(base_model=BASE))
    assert flag(cmd, "--max-loras") == str(MAX_LORAS_CAP)
    assert int(flag(cmd, "--max-cpu-loras")) >= 20
    empty = build_vllm_command("vllm", [], VLLMServeOptions(base_model=BASE))
    assert "--enable-lora" in empty and "--lora-modules" not in empty
    assert flag(empty, "--max-loras") == "1"


def test_context_longer_than_orpheus_training_length_is_refused():
    with pytest.raises(ValueError, match="8192"):
        build_vllm_command("vllm", [], VLLMServeOptions(base_model=BASE, max_model_len=131072))


def test_environment_enables_runtime_adapter_loading_and_keeps_the_callers():
    env = vllm_environment({"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1"})
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def test_dry_run_prints_the_command_with_valid_voices_only(tmp_path, capsys):
    write_voice_folder(tmp_path, "alice", base_model=BASE, rank=32)
    write_voice_folder(tmp_path, "bob", base_model=BASE, rank=8)
    write_voice_folder(tmp_path, "official", base_model=BASE, modules_to_save=["lm_head"])
    code = serve_vllm.main(["--vllm", "/nonexistent/vllm", "--dry-run", "--voices-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0
    line = next(x for x in out.splitlines() if "serve" in x)
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True ")
    cmd = shlex.split(line)[1:]
    assert cmd[:3] == ["/nonexistent/vllm", "serve", BASE]
    assert flag(cmd, "--max-lora-rank") == "32"
    assert f"alice={(tmp_path / 'alice').resolve()}" in cmd
    assert not any(c.startswith("official=") for c in cmd)
    assert "skipping voice official" in err and "modules_to_save" in err
    assert "VOICELAB_VLLM_URL=http://127.0.0.1:8001" in out


def test_extra_arguments_after_double_dash_are_passed_through(tmp_path, capsys):
    code = serve_vllm.main(
        ["--dry-run", "--voices-dir", str(tmp_path), "--port", "9000", "--", "--seed", "1"]
    )
    out = capsys.readouterr().out
    cmd = shlex.split(next(x for x in out.splitlines() if "serve" in x))[1:]
    assert code == 0 and cmd[-2:] == ["--seed", "1"] and flag(cmd, "--port") == "9000"


def test_missing_vllm_executable_explains_install_vllm(tmp_path, capsys):
    code = serve_vllm.main(["--vllm", str(tmp_path / "no-vllm"), "--voices-dir", str(tmp_path)])
    assert code == 2
    assert "make install-vllm" in capsys.readouterr().err


def test_bad_rank_request_is_an_error_not_a_crash(tmp_path, capsys):
    write_voice_folder(tmp_path, "alice", base_model=BASE, rank=32)
    code = serve_vllm.main(["--dry-run", "--voices-dir", str(tmp_path), "--max-lora-rank", "16"])
    assert code == 2 and "below the rank" in capsys.readouterr().err


def test_help_is_instant_and_documents_flags():
    import subprocess

    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    assert "--max-lora-rank" in result.stdout and "--dry-run" in result.stdout
