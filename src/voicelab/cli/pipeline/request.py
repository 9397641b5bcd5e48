"""What one ``voicelab-voice`` run is asked to do: its own flags, each declared once on a field of
``VoiceRequest`` (``voicelab.options``), and the step flags the user passed through (``options``). No
numpy here: ``voicelab-voice --help`` reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from voicelab.cli.pipeline import options as opts
from voicelab.options import option


@dataclass
class VoiceRequest:
    name: str = option("NAME", help="voice name: letters, digits, '_' and '-'")
    sources: list[str] = option("SOURCE", nargs="+", help="folder, audio file, or http(s) URL")
    raw_dir: Path = option(
        "--raw-dir", type=Path, default=Path("raw_audio"), help="recordings go to RAW_DIR/NAME/"
    )
    prepared_dir: Path = option(
        "--prepared-dir", type=Path, default=Path("prepared"), help="the dataset goes to PREPARED_DIR/NAME/"
    )
    voices_dir: Path = option(
        "--voices-dir", type=Path, default=Path("voices"), help="the voice goes to VOICES_DIR/NAME/"
    )
    review: bool = option(
        "--no-review",
        action="store_false",
        default=True,
        help="train right after transcribing, without the stop for review",
    )
    retrain: bool = option(
        "--retrain",
        action="store_true",
        default=False,
        help="train again when the dataset or the training flags changed since the voice was trained "
        "(replaces it; without this flag such a voice is kept)",
    )
    server: str | None = option(
        "--server",
        metavar="URL",
        default=None,
        help="a running voicelab API (e.g. http://127.0.0.1:8000) to reload when the voice is made "
        "(its first VOICELAB_API_KEYS key is sent, read from the environment or .env as the server does)",
    )
    verbose: bool = option("-v", "--verbose", action="store_true", default=False, help="debug logging")
    no_progress: bool = option(
        "--no-progress", action="store_true", default=False, help="no progress bars (logs only)"
    )
    progress_file: Path | None = None
    """``--progress-file`` (``voicelab.progress.add_argument``, every command's)."""
    passed: dict[str, list[list[str]]] = field(default_factory=dict)
    """Step flags the user gave (``options.given``)."""
    options: list[opts.PassOption] = field(default_factory=list)

    @property
    def raw(self) -> Path:
        return Path(self.raw_dir) / self.name

    @property
    def prepared(self) -> Path:
        return Path(self.prepared_dir) / self.name

    @property
    def voice(self) -> Path:
        return Path(self.voices_dir) / self.name
