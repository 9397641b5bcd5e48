"""What a newcomer sees: no library warnings from the progress bars, help text without noise,
and vLLM's command line built for an empty voices/ folder."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import warnings

import pytest
from tqdm import tqdm

from voicelab.cli.common import HelpFormatter
from voicelab.prepare import _SourceProgress
from voicelab.server.vllm_command import lora_rank_for


def test_prepare_progress_never_passes_its_total():
    # 0.82 + 0.82 is 1.64, but 0.07 + 0.75 + 0.82 adds up to one ulp more: tqdm would warn
    # "clamping frac to range [0, 1]" and show a negative time left.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tqdm(total=0.82 + 0.82, file=io.StringIO()) as bar:
            first = _SourceProgress(bar, 0.82)
            first.advance(4.2)
            first.finish()
            second = _SourceProgress(bar, 0.82)
            second.finish()
            assert bar.n <= bar.total


def test_help_shows_defaults_but_not_for_switches():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--overwrite", action="store_true", help="redo everything")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads")
    text = parser.format_help()
    assert "(default: False)" not in text
    assert "(default: 0)" in text


def test_explicit_max_lora_rank_is_accepted_without_voices():
    assert lora_rank_for([], 8) == 8


def test_wrapping_the_model_in_lora_prints_no_library_deprecation(tiny_orpheus_dir):
    # what train-lora and the local engine do; peft used to print a transformers FutureWarning here
    code = (
        "import voicelab, warnings\n"
        "from peft import LoraConfig, get_peft_model\n"
        "from transformers import AutoModelForCausalLM\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(tiny_orpheus_dir)!r})\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    get_peft_model(model, LoraConfig(r=8, target_modules=['q_proj']))\n"
        "print([str(w.message) for w in seen if 'gradient_checkpointing' in str(w.message)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_model_load_hints_name_the_installed_hub_cli(tmp_path):
    # huggingface_hub >= 1.0 ships `hf`; `huggingface-cli` is gone from the venv
    from voicelab import models

    hint = models.offline_hint("owner/model", models.BASE_MODEL_SETTING, "the model", "owner/default")
    assert "hf download owner/model --local-dir" in hint
    with pytest.raises(models.ModelLoadError, match=r"hf download .* --local-dir") as info:
        models.load_snac(str(tmp_path / "no-such-snac"))
    assert "huggingface-cli" not in str(info.value)
