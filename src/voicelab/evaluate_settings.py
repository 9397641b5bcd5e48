"""What ``make evaluate`` is asked to do: each setting declared once, with its command-line flag, default and
help (``voicelab.options``): ``EvalSettings`` and the bar each check is held to, ``Thresholds``; and the
fixed texts the voice speaks, whose number is a flag's default or limit. ``cli/evaluate_voice.py`` builds
its parser from these fields and the settings from the parsed flags; ``voicelab.evaluate`` does the work.
No numpy here (``--help`` reads this module).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voicelab.dataset import ORPHEUS_TAGS
from voicelab.models.whisper import BACKENDS
from voicelab.options import finite_float, non_negative_int, option, positive_int
from voicelab.voice import VOICE_FILE

NOVEL_SENTENCES = (
    "Yes.",
    "Where did you put the keys?",
    "Well, I suppose that's one way to look at it.",
    "Oh no! The kettle's been whistling for ten minutes!",
    "Seven hundred and forty-two people signed the petition on Tuesday.",
    "I told her - twice, in fact - that the bridge would not hold; she crossed it anyway.",
    "Hmm... are you absolutely sure about that?",
    "The quick brown fox jumps over the lazy dog, and the dog doesn't even notice.",
    "Please call me back at five thirty, after the meeting, if you can.",
    "When the rain finally stopped, the whole street smelled of wet earth and cut grass, "
    "and for a moment nobody said a word.",
)
"""Never in any training set: varied length (one word to ~30), punctuation (? ! ... - ; ,), numbers said
as words, and contractions. Each fits in one generated piece (under the Synthesizer's piece budget)."""

TAG_SENTENCES = (
    ("I can't believe you actually did that,", "it's brilliant."),
    ("Well, that is the end of that, I suppose,", "so let's all go home."),
    ("You should have seen his face when the door opened,", "honestly."),
)
"""The tags check's sentences (``evaluate.tag_check``), two halves each; the tag goes between them. No
sentence says a tag's word, so a word heard is read."""
DEFAULT_TAG_SENTENCES = 1


def tag_list(value: str) -> tuple[str, ...]:
    """``--tags laugh,sigh``: Orpheus tags, with or without the angle brackets."""
    tags = tuple(t.strip().strip("<>").lower() for t in value.split(",") if t.strip())
    unknown = [t for t in tags if t not in ORPHEUS_TAGS]
    if unknown or not tags:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'}: not an Orpheus tag; use some of {','.join(ORPHEUS_TAGS)}"
        )
    return tags


@dataclass(frozen=True)
class Thresholds:
    """The bar each check is held to; every one is a command-line flag of ``make evaluate``."""

    min_similarity: float = option(
        "--min-similarity",
        type=finite_float,
        default=0.75,
        help="speaker similarity to the held-out clips at least",
    )
    """Resemblyzer cosine to the held-out clips; the same speaker scores ~0.8-0.95, another ~0.5-0.7."""
    min_similarity_gain: float = option(
        "--min-similarity-gain",
        type=finite_float,
        default=0.02,
        help="voice minus base model similarity at least",
    )
    """Voice minus base model similarity: below this the adapter did not move the voice."""
    max_wer: float = option("--max-wer", type=finite_float, default=0.15, help="word error rate at most")
    max_cer: float = option("--max-cer", type=finite_float, default=0.08, help="character error rate at most")
    min_dnsmos: float = option(
        "--min-dnsmos", type=finite_float, default=3.0, help="DNSMOS overall (1-5) at least"
    )
    """DNSMOS P.835 overall, 1-5: studio speech ~3.3-3.6, clean read speech above 3."""
    max_rate_deviation: float = option(
        "--max-rate-deviation",
        type=finite_float,
        default=0.25,
        help="speech rate within this share of the dataset's",
    )
    """Generated words per second within +-25% of the dataset's."""
    max_duration_ratio: float = option(
        "--max-duration-ratio",
        type=finite_float,
        default=2.0,
        help="a sample longer than this x the time its words need is a runaway",
    )
    """A sample longer than twice what the dataset's speech rate needs for its words is a runaway."""
    max_silence_s: float = option(
        "--max-silence-s",
        type=finite_float,
        default=1.0,
        help="no silence inside a sample longer than this (seconds)",
    )
    max_code_overlap: float = option(
        "--max-code-overlap",
        type=finite_float,
        default=0.5,
        help="a novel sentence sharing more than this share of codes with a training clip is overfitting",
    )
    """Share of 2-frame code runs a novel sentence's audio and one training clip have in common (either way)."""


@dataclass
class EvalSettings:
    voices_dir: Path = option(
        "--voices-dir", type=Path, default=Path("voices"), help="root folder of the voices"
    )
    base_model: str | None = option(  # None: the voice's own (voice.json)
        "--base-model",
        default=None,
        help=f"Orpheus checkpoint: hub id or local folder (default: {VOICE_FILE}'s)",
    )
    snac_model: str | None = option(
        "--snac-model",
        default=None,
        help=f"SNAC 24 kHz codec: hub id or local folder (default: {VOICE_FILE}'s)",
    )
    device: str = "cpu"
    """The torch device of the models run here; the command's --device auto is resolved before."""
    vllm_url: str | None = None
    """Generate through this vLLM server; None: the embedded engine. The command's --vllm-url falls back to
    the server's VOICELAB_VLLM_URL."""
    whisper_model: str = option(
        "--whisper-model",
        default="medium",
        help="Whisper model name or local checkpoint path, as in `make transcribe`",
    )
    whisper_backend: str = option(
        "--whisper-backend", choices=BACKENDS, default=BACKENDS[0], help="Whisper implementation"
    )
    language: str = option("--language", default="en", help="language of the voice")
    sentences: int = option(
        "--sentences",
        type=non_negative_int,
        default=len(NOVEL_SENTENCES),
        help=f"how many of the {len(NOVEL_SENTENCES)} novel sentences to speak",
    )
    max_heldout: int = option(
        "--max-heldout", type=non_negative_int, default=10, help="held-out texts to speak at most"
    )
    temperature: float = option("--temperature", type=finite_float, default=0.6, help="sampling temperature")
    top_p: float = option("--top-p", type=finite_float, default=0.9, help="nucleus sampling")
    repetition_penalty: float = option(
        "--repetition-penalty", type=finite_float, default=1.1, help="repetition penalty"
    )
    seed: int = option("--seed", type=int, default=42, help="sampling seed (same seed, same samples)")
    max_tokens: int | None = option(
        "--max-tokens",
        type=positive_int,
        default=None,
        help="generated tokens per piece at most (default: the server's budget, derived from the text)",
    )
    """Per generated piece; None: the budget the server uses, derived from the text."""
    tag_sentences: int = option(
        "--tag-sentences",
        type=non_negative_int,
        default=DEFAULT_TAG_SENTENCES,
        help=f"tags check: sentences per tag, each also spoken without the tag (at most "
        f"{len(TAG_SENTENCES)}; 0: no tags check)",
    )
    """Sentences per tag of the tags check (0: no tags check)."""
    tags: tuple[str, ...] | None = option(
        "--tags",
        type=tag_list,
        default=None,
        help="tags check: only these tags, comma-separated (default: the voice's trained tags and the rest "
        "of Orpheus' set: " + ",".join(ORPHEUS_TAGS) + ")",
    )
    """The tags to check; None: the voice's trained tags and the rest of Orpheus' set."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    progress: bool = option("--no-progress", action="store_false", default=True, help="no progress bars")

    def public(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("thresholds", "progress")},
            "voices_dir": str(self.voices_dir),
            "engine": "vllm" if self.vllm_url else "local",
        }
