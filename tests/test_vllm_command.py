"""The `make vllm` command line: flags derived from the voices, and the launcher script."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from conftest import REPO
from voicelab.cli import serve_vllm
from voicelab.server.vllm_command import (
    CPU_LORA_HEADROOM,
    MAX_LORAS_CAP,
    AdapterSpec,
    VLLMServeOptions,
    build_vllm_command,
    lora_rank_for,
    resolver_mismatches,
    vllm_environment,
)
from voicelab.testing.voices import write_voice_folder

BASE = "canopylabs/orpheus-tts-0.1-pretrained"
SCRIPT = REPO / "scripts" / "serve_vllm.py"


# Every `vllm serve` flag and environment variable `make vllm` may use, with where vLLM 0.33.0 (the
# Makefile's VLLM_VERSION) defines it; docs/deploy.md records the same facts. A flag missing here fails
# the tests below: check it against that version's source first, then add it.
VLLM_SERVE_FLAGS = {
    "--host": "vllm/entrypoints/common/cli_args.py (FrontendArgs.host)",
    "--port": "vllm/entrypoints/common/cli_args.py (FrontendArgs.port)",
    "--lora-modules": "vllm/entrypoints/common/cli_args.py (LoRAParserAction: name=path)",
    "--api-server-count": "vllm/entrypoints/common/cli_args.py (default: --data-parallel-size)",
    "--dtype": "vllm/engine/arg_utils.py (ModelConfig.dtype)",
    "--max-model-len": "vllm/engine/arg_utils.py (ModelConfig.max_model_len)",
    "--gpu-memory-utilization": "vllm/engine/arg_utils.py (CacheConfig.gpu_memory_utilization)",
    "--tensor-parallel-size": "vllm/engine/arg_utils.py (ParallelConfig.tensor_parallel_size)",
    "--data-parallel-size": "vllm/engine/arg_utils.py (ParallelConfig.data_parallel_size)",
    "--enable-lora": "vllm/engine/arg_utils.py (BooleanOptionalAction)",
    "--max-lora-rank": "vllm/config/lora.py (MaxLoRARanks 1..512, default 16)",
    "--max-loras": "vllm/config/lora.py (default 1)",
    "--max-cpu-loras": "vllm/config/lora.py (>= --max-loras)",
}
VLLM_ENV = {
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "vllm/envs.py; resolvers are consulted only with it (serve/engine/serving.py)",
    "VLLM_PLUGINS": "vllm/envs.py: comma-separated plugin names, unset loads all",
    "VLLM_LORA_RESOLVER_CACHE_DIR": "vllm/envs.py; read by plugins/lora_resolvers/filesystem_resolver.py",
}
RESOLVER_PLUGIN_ENTRY_POINT = "lora_filesystem_resolver"  # vllm-0.33.0.dist-info/entry_points.txt


def flags_of(cmd: list[str]) -> list[str]:
    return [c for c in cmd if c.startswith("--")]


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


def test_parallel_sizes_and_one_front_end_with_data_parallelism():
    cmd = build_vllm_command(
        "vllm", [], VLLMServeOptions(base_model=BASE, data_parallel_size=4, tensor_parallel_size=2)
    )
    assert flag(cmd, "--data-parallel-size") == "4" and flag(cmd, "--tensor-parallel-size") == "2"
    # vLLM would start 4 front-ends and then refuse VLLM_ALLOW_RUNTIME_LORA_UPDATING with more than one.
    assert flag(cmd, "--api-server-count") == "1"
    single = build_vllm_command("vllm", [], VLLMServeOptions(base_model=BASE))
    assert not {"--data-parallel-size", "--tensor-parallel-size", "--api-server-count"} & set(single)
    with pytest.raises(ValueError, match="--data-parallel-size must be at least 1"):
        build_vllm_command("vllm", [], VLLMServeOptions(base_model=BASE, data_parallel_size=0))


@pytest.mark.parametrize(("mode", "static"), [("static", True), ("resolver", False), ("both", True)])
def test_voice_loading_mode_decides_static_modules_and_resolver_variables(tmp_path, mode, static):
    specs = [AdapterSpec("alice", tmp_path / "alice", 8)]
    cmd = build_vllm_command("vllm", specs, VLLMServeOptions(base_model=BASE, lora_loading=mode))
    assert ("--lora-modules" in cmd) is static
    env = vllm_environment({"PATH": "/bin"}, lora_loading=mode, voices_dir=tmp_path)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["PATH"] == "/bin"
    if mode == "static":
        assert "VLLM_PLUGINS" not in env and "VLLM_LORA_RESOLVER_CACHE_DIR" not in env
    else:
        assert env["VLLM_PLUGINS"] == RESOLVER_PLUGIN_ENTRY_POINT
        assert env["VLLM_LORA_RESOLVER_CACHE_DIR"] == str(tmp_path.resolve())
        assert flag(cmd, "--max-loras") == str(MAX_LORAS_CAP)  # voices come later: reserve the cap
    with pytest.raises(ValueError, match="not one of"):
        build_vllm_command("vllm", specs, VLLMServeOptions(base_model=BASE, lora_loading="lazy"))


def test_resolver_keeps_plugins_the_caller_enabled(tmp_path):
    env = vllm_environment({"VLLM_PLUGINS": "my_plugin"}, lora_loading="resolver", voices_dir=tmp_path)
    assert env["VLLM_PLUGINS"] == "my_plugin,lora_filesystem_resolver"
    again = vllm_environment(env, lora_loading="resolver", voices_dir=tmp_path)
    assert again["VLLM_PLUGINS"] == "my_plugin,lora_filesystem_resolver"


def test_resolver_needs_the_exact_base_model_string():
    mismatched = resolver_mismatches({"alice": BASE, "bob": "./orpheus", "carl": None}, BASE)
    assert sorted(mismatched) == ["bob", "carl"] and "'./orpheus'" in mismatched["bob"]


def dry_run_command(capsys, argv) -> tuple[dict[str, str], list[str], str, str]:
    code = serve_vllm.main(["--dry-run", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    words = shlex.split(next(x for x in out.splitlines() if " serve " in x))
    env = dict(
        w.split("=", 1) for w in itertools.takewhile(lambda w: "=" in w and not w.startswith("-"), words)
    )
    return env, words[len(env) :], out, err


def test_every_flag_and_variable_of_the_scale_out_command_is_one_vllm_defines(tmp_path, capsys):
    write_voice_folder(tmp_path, "alice", base_model=BASE, rank=16)
    argv = ["--voices-dir", str(tmp_path), "--data-parallel-size", "2", "--lora-resolver"]
    env, cmd, out, _ = dry_run_command(capsys, argv)
    assert set(flags_of(cmd)) <= set(VLLM_SERVE_FLAGS), set(flags_of(cmd)) - set(VLLM_SERVE_FLAGS)
    assert set(env) == set(VLLM_ENV)
    assert env["VLLM_PLUGINS"] == RESOLVER_PLUGIN_ENTRY_POINT
    assert env["VLLM_LORA_RESOLVER_CACHE_DIR"] == str(tmp_path.resolve())
    assert flag(cmd, "--data-parallel-size") == "2" and flag(cmd, "--api-server-count") == "1"
    assert "--lora-modules" not in cmd
    assert flag(cmd, "--max-lora-rank") == "64"  # room for voices trained later, up to the API's limit
    assert "VOICELAB_VLLM_LORA_RESOLVER=true" in out


def test_every_flag_of_a_static_command_with_passthrough_is_one_vllm_defines(tmp_path, capsys):
    write_voice_folder(tmp_path, "alice", base_model=BASE, rank=16)
    argv = ["--voices-dir", str(tmp_path), "--tensor-parallel-size", "2", "--voice-loading", "both"]
    env, cmd, _, _ = dry_run_command(capsys, [*argv, "--max-loras", "3"])
    assert set(flags_of(cmd)) <= set(VLLM_SERVE_FLAGS)
    assert flag(cmd, "--max-loras") == "3" and flag(cmd, "--lora-modules").startswith("alice=")
    assert set(env) == set(VLLM_ENV)


def test_resolver_mode_names_voices_it_would_not_load(tmp_path, capsys):
    model = tmp_path / "models" / "orpheus"  # a local base model, spelt two ways by two voices
    model.mkdir(parents=True)
    voices = tmp_path / "voices"
    write_voice_folder(voices, "alice", base_model=os.path.relpath(model))
    write_voice_folder(voices, "bob", base_model=str(model))
    argv = ["--voices-dir", str(voices), "--base-model", str(model), "--lora-resolver"]
    _, cmd, out, err = dry_run_command(capsys, argv)
    assert "resolver will not load voice alice" in err and "voice bob" not in err
    assert "voices: alice, bob" in out  # still servable statically: --voice-loading both
    assert cmd[2] == str(model)


def interpolate(value: str) -> str:
    """Compose's ${NAME:-default} / ${NAME:?message}: the default, or a placeholder for a required value."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}", lambda m: m.group(2) or f"<{m.group(1)}>", value)


def test_compose_file_runs_the_same_verified_vllm_command_and_settings():
    import yaml

    from voicelab.server.settings import ENV_PREFIX, Settings

    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    vllm, api = compose["services"]["vllm"], compose["services"]["api"]
    makefile_version = re.search(r"^VLLM_VERSION \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)[1]
    assert vllm["image"] == f"vllm/vllm-openai:v{makefile_version}"
    assert vllm["entrypoint"] == ["vllm", "serve"]
    cmd = ["vllm", "serve", *(interpolate(str(c)) for c in vllm["command"])]
    assert set(flags_of(cmd)) <= set(VLLM_SERVE_FLAGS), set(flags_of(cmd)) - set(VLLM_SERVE_FLAGS)
    assert flag(cmd, "--api-server-count") == "1" and "--enable-lora" in cmd
    assert int(flag(cmd, "--max-cpu-loras")) >= int(flag(cmd, "--max-loras"))
    env = vllm["environment"]
    assert {k for k in env if k.startswith("VLLM_")} == set(VLLM_ENV)
    assert env["VLLM_PLUGINS"] == RESOLVER_PLUGIN_ENTRY_POINT
    mounts = {v.split(":")[1]: v.split(":")[0] for v in vllm["volumes"]}
    assert mounts[env["VLLM_LORA_RESOLVER_CACHE_DIR"]] == "../voices"
    # The API: known settings only, the same voices, the same base model string as vLLM's model argument.
    api_env = api["environment"]
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert {k for k in api_env if k.startswith(ENV_PREFIX)} <= known
    assert api_env["VOICELAB_VLLM_LORA_RESOLVER"] == "true"
    assert api_env["VOICELAB_BASE_MODEL"] == cmd[2]
    api_mounts = {v.split(":")[1]: v.split(":")[0] for v in api["volumes"]}
    assert api_mounts[api_env["VOICELAB_VOICES_DIR"]] == "../voices"
    assert api_env["VOICELAB_VLLM_URL"] == f"http://vllm:{flag(cmd, '--port')}"
    assert (REPO / "deploy" / api["build"]["dockerfile"].removeprefix("deploy/")).is_file()
