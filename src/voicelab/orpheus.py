"""The Orpheus token contract: the one place training and serving agree on ids and positions.

Orpheus TTS is a Llama-3.2-3B model that speaks in SNAC audio codes. Training writes token sequences
built here; serving parses generated tokens back into SNAC frames here. If the two sides disagree by one
id or one position, every voice comes out as noise and nothing raises, so every other module goes
through these functions and the tests pin them.

Shapes and units:
  * SNAC codes: three levels ``(L0, L1, L2)`` of shapes ``(N,)``, ``(2N,)``, ``(4N,)``, ints in [0, 4096).
  * frames: ``(N, 7)`` int64 array of codes in the Orpheus per-frame order (see ``FRAME_LAYOUT``).
  * audio tokens: flat ``(7N,)`` model ids, ``AUDIO_TOKEN_BASE + position * CODEBOOK_SIZE + code``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # numpy loads in the functions that use it: every command's --help imports this module
    import numpy as np

logger = logging.getLogger(__name__)

# --- vocabulary -------------------------------------------------------------------------------------
_CUSTOM_TOKEN_SPELLING = "<custom_token_"
_CUSTOM_TOKEN_RE = re.compile(r"<custom_token_(\d+)>")
TEXT_VOCAB_SIZE = 128_256
"""Llama-3 text vocabulary; Orpheus' added tokens start right after it."""
VOCAB_SIZE = 156_940
"""Full Orpheus vocabulary (text + added tokens). Never use ``len(tokenizer)`` for this."""


def custom_token_id(n: int) -> int:
    """Id of the added token spelled ``<custom_token_{n}>``."""
    return TEXT_VOCAB_SIZE + n


def token_spelling(token_id: int) -> str:
    """How an Orpheus tokenizer spells the added token ``token_id``: ``<custom_token_{n}>``."""
    n = token_id - TEXT_VOCAB_SIZE
    if not 0 <= n < VOCAB_SIZE - TEXT_VOCAB_SIZE:
        raise ValueError(f"token id {token_id} is not an added Orpheus token (>= {TEXT_VOCAB_SIZE})")
    return f"{_CUSTOM_TOKEN_SPELLING}{n}>"


def count_token_spellings(text: str) -> int:
    """How many ``<custom_token_N>`` spellings ``text`` holds (generated text from a detokenising engine)."""
    return len(_CUSTOM_TOKEN_RE.findall(text))


BEGIN_OF_TEXT = 128_000  # <|begin_of_text|>, the Llama-3 BOS
END_OF_TEXT = 128_009  # <|eot_id|>
START_OF_SPEECH = custom_token_id(1)  # 128257
END_OF_SPEECH = custom_token_id(2)  # 128258: generation stops here
START_OF_HUMAN = custom_token_id(3)  # 128259
END_OF_HUMAN = custom_token_id(4)  # 128260
START_OF_AI = custom_token_id(5)  # 128261
END_OF_AI = custom_token_id(6)  # 128262
PAD = custom_token_id(7)  # 128263: padding id; its labels are IGNORE_INDEX
AUDIO_TOKEN_BASE = custom_token_id(10)  # 128266: first audio token (position 0, code 0)

IGNORE_INDEX = -100
"""Label value the loss ignores (PyTorch cross-entropy default)."""

# --- SNAC 24 kHz codes ------------------------------------------------------------------------------
SAMPLE_RATE = 24_000
CODEBOOK_SIZE = 4096  # valid codes are 0 <= c < 4096; 0 is a real code
SNAC_LEVELS = 3
LEVEL_STRIDES = (4, 2, 1)  # vq_strides of snac_24khz: codes per coarse step are 1, 2, 4
SNAC_HOP = 512  # samples per finest code step
SAMPLES_PER_FRAME = SNAC_HOP * LEVEL_STRIDES[0]  # 2048 samples = 85.33 ms per coarse step
CODES_PER_LEVEL_PER_FRAME = tuple(LEVEL_STRIDES[0] // s for s in LEVEL_STRIDES)  # (1, 2, 4)
CODES_PER_FRAME = sum(CODES_PER_LEVEL_PER_FRAME)  # 7
FRAME_LAYOUT: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (2, 2), (2, 3))
"""(level, index within the frame's span at that level) for each of the 7 positions of a frame:
``[L0[i], L1[2i], L2[4i], L2[4i+1], L1[2i+1], L2[4i+2], L2[4i+3]]``."""
AUDIO_TOKEN_END = AUDIO_TOKEN_BASE + CODES_PER_FRAME * CODEBOOK_SIZE  # 156938, exclusive
TOKENS_PER_SECOND = CODES_PER_FRAME * SAMPLE_RATE / SAMPLES_PER_FRAME  # 82.03 tokens = 1 s of audio

assert len(FRAME_LAYOUT) == CODES_PER_FRAME
assert AUDIO_TOKEN_END <= VOCAB_SIZE


class ContractError(ValueError):
    """Codes, frames or token ids that break the Orpheus contract."""


class InvalidCodesError(ContractError):
    """SNAC codes with the wrong shapes or values outside [0, CODEBOOK_SIZE)."""


class InvalidAudioTokenError(ContractError):
    """A token id that is not the audio token expected at its position."""


# --- codes <-> frames <-> tokens ---------------------------------------------------------------------
def _as_int_array(values, name: str) -> np.ndarray:
    import numpy as np

    arr = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if arr.dtype.kind not in "iu" and arr.size:
        raise InvalidCodesError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def codes_to_frames(codes: Sequence) -> np.ndarray:
    """SNAC codes ``(L0 (N,), L1 (2N,), L2 (4N,))`` -> frames ``(N, 7)``.

    Accepts numpy arrays, lists or torch tensors, with an optional leading batch axis of size 1
    (as ``SNAC.encode`` returns them).
    """
    import numpy as np

    if len(codes) != SNAC_LEVELS:
        raise InvalidCodesError(f"expected {SNAC_LEVELS} SNAC levels, got {len(codes)}")
    levels = []
    for level, values in enumerate(codes):
        arr = _as_int_array(values, f"level {level}")
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1:
            raise InvalidCodesError(f"level {level} must be 1-D (or (1, T)), got shape {arr.shape}")
        levels.append(arr)
    n_frames = len(levels[0])
    for level, (arr, per_frame) in enumerate(zip(levels, CODES_PER_LEVEL_PER_FRAME, strict=True)):
        if len(arr) != n_frames * per_frame:
            raise InvalidCodesError(
                f"level {level} has {len(arr)} codes; {n_frames} frames need {n_frames * per_frame}"
            )
        _check_code_range(arr, f"level {level}")
    frames = np.empty((n_frames, CODES_PER_FRAME), dtype=np.int64)
    for position, (level, offset) in enumerate(FRAME_LAYOUT):
        per_frame = CODES_PER_LEVEL_PER_FRAME[level]
        frames[:, position] = levels[level][offset::per_frame]
    return frames


def frames_to_codes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``(N, 7)`` -> SNAC codes ``(L0 (N,), L1 (2N,), L2 (4N,))`` (inverse of ``codes_to_frames``)."""
    import numpy as np

    frames = _check_frames(frames)
    n_frames = len(frames)
    levels = [np.empty(n_frames * per_frame, dtype=np.int64) for per_frame in CODES_PER_LEVEL_PER_FRAME]
    for position, (level, offset) in enumerate(FRAME_LAYOUT):
        levels[level][offset :: CODES_PER_LEVEL_PER_FRAME[level]] = frames[:, position]
    return levels[0], levels[1], levels[2]


def frames_to_tokens(frames: np.ndarray) -> np.ndarray:
    """Frames ``(N, 7)`` -> flat audio token ids ``(7N,)``."""
    import numpy as np

    frames = _check_frames(frames)
    offsets = AUDIO_TOKEN_BASE + np.arange(CODES_PER_FRAME, dtype=np.int64) * CODEBOOK_SIZE
    return (frames + offsets).reshape(-1)


def tokens_to_frames(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """Flat audio token ids ``(7N,)`` -> frames ``(N, 7)``.

    The first token is position 0. Raises ``InvalidAudioTokenError`` naming the first bad id, and
    ``ContractError`` when the length is not a whole number of frames.
    """
    import numpy as np

    ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if len(ids) % CODES_PER_FRAME:
        raise ContractError(
            f"{len(ids)} audio tokens is not a whole number of {CODES_PER_FRAME}-token frames"
        )
    positions = np.arange(len(ids)) % CODES_PER_FRAME
    codes = ids - AUDIO_TOKEN_BASE - positions * CODEBOOK_SIZE
    bad = np.flatnonzero((codes < 0) | (codes >= CODEBOOK_SIZE))
    if len(bad):
        i = int(bad[0])
        raise InvalidAudioTokenError(_describe_bad_token(int(ids[i]), i))
    return codes.reshape(-1, CODES_PER_FRAME)


def codes_to_tokens(codes: Sequence, *, drop_duplicate_frames: bool = False) -> np.ndarray:
    """SNAC codes -> flat audio token ids, optionally dropping duplicate frames first."""
    frames = codes_to_frames(codes)
    if drop_duplicate_frames:
        frames = remove_duplicate_frames(frames)
    return frames_to_tokens(frames)


def tokens_to_codes(tokens: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat audio token ids -> SNAC codes (inverse of ``codes_to_tokens`` without dropping)."""
    return frames_to_codes(tokens_to_frames(tokens))


def remove_duplicate_frames(frames: np.ndarray) -> np.ndarray:
    """Drop each frame whose L0 code equals the L0 code of the last KEPT frame.

    This is what the official Orpheus data preparation does ("duplicate frames"). It shortens the
    audio the model learns, so it is an explicit option here, recorded with each voice.
    """
    import numpy as np

    frames = _check_frames(frames)
    if len(frames) == 0:
        return frames
    keep = np.ones(len(frames), dtype=bool)
    last_l0 = frames[0, 0]
    for i in range(1, len(frames)):
        if frames[i, 0] == last_l0:
            keep[i] = False
        else:
            last_l0 = frames[i, 0]
    return frames[keep]


def frames_to_samples(n_frames: int) -> int:
    """Decoded length in samples of ``n_frames`` SNAC frames."""
    return n_frames * SAMPLES_PER_FRAME


def _check_frames(frames) -> np.ndarray:
    arr = _as_int_array(frames, "frames")
    if arr.ndim != 2 or arr.shape[1] != CODES_PER_FRAME:
        raise InvalidCodesError(f"frames must have shape (N, {CODES_PER_FRAME}), got {arr.shape}")
    _check_code_range(arr, "frames")
    return arr


def _check_code_range(arr: np.ndarray, name: str) -> None:
    import numpy as np

    bad = np.flatnonzero((arr < 0) | (arr >= CODEBOOK_SIZE))
    if len(bad):
        value = arr.reshape(-1)[bad[0]]
        raise InvalidCodesError(
            f"{name}: code {value} at index {int(bad[0])} is outside [0, {CODEBOOK_SIZE})"
        )


def audio_token_range(position: int) -> range:
    """The ids an audio token may take at frame ``position`` (0-6): ``CODEBOOK_SIZE`` consecutive ids."""
    if not 0 <= position < CODES_PER_FRAME:
        raise ValueError(f"frame position must be in [0, {CODES_PER_FRAME}), got {position}")
    low = AUDIO_TOKEN_BASE + position * CODEBOOK_SIZE
    return range(low, low + CODEBOOK_SIZE)


def _describe_bad_token(token_id: int, index: int) -> str:
    position = index % CODES_PER_FRAME
    allowed = audio_token_range(position)
    return (
        f"token id {token_id} at audio-token index {index} (frame position {position}) is not an audio "
        f"token for that position: expected {allowed.start} <= id < {allowed.stop}"
    )


# --- prompts and training sequences ------------------------------------------------------------------
class TextTokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def prompt_text(prefix: str, text: str) -> str:
    """The text the model reads: the voice's prompt prefix (e.g. ``"alice: "``) then the input text."""
    return f"{prefix}{text}"


def text_prompt_ids(tokenizer: TextTokenizer, text: str, prefix: str = "") -> list[int]:
    """``[start of human, BOS, *text ids, end of text, end of human]``.

    BOS is placed explicitly so the result does not depend on the tokenizer's post-processor.
    """
    ids = list(tokenizer.encode(prompt_text(prefix, text), add_special_tokens=False))
    return [START_OF_HUMAN, BEGIN_OF_TEXT, *ids, END_OF_TEXT, END_OF_HUMAN]


def inference_prompt_ids(tokenizer: TextTokenizer, text: str, prefix: str = "") -> list[int]:
    """The prompt generation starts from; sample until ``END_OF_SPEECH``."""
    return [*text_prompt_ids(tokenizer, text, prefix), START_OF_AI, START_OF_SPEECH]


@dataclass(frozen=True)
class TrainingExample:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def training_example(
    tokenizer: TextTokenizer,
    text: str,
    audio_tokens: Sequence[int] | np.ndarray,
    prefix: str = "",
) -> TrainingExample:
    """One clip's training sequence: the inference prompt, its audio tokens, then the end markers.

    ``[SOH, BOS, text, EOT, EOH, SOA, SOS, *audio, EOS(speech), EOA]``. Labels equal the inputs, as in
    the official recipe (loss on the text as well). ``audio_tokens`` are validated against the contract.
    """
    audio = frames_to_tokens(tokens_to_frames(audio_tokens)).tolist()
    ids = [*inference_prompt_ids(tokenizer, text, prefix), *audio, END_OF_SPEECH, END_OF_AI]
    return TrainingExample(input_ids=ids, labels=list(ids))


def pad_batch(examples: Sequence[TrainingExample], pad_to_multiple_of: int | None = None) -> dict:
    """Right-pad examples to one length: inputs with ``PAD``, labels with ``IGNORE_INDEX``, mask 0.

    Returns plain lists (``input_ids``, ``labels``, ``attention_mask``) of shape (B, T).
    """
    longest = max(len(e) for e in examples)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch = {"input_ids": [], "labels": [], "attention_mask": []}
    for e in examples:
        missing = longest - len(e)
        batch["input_ids"].append([*e.input_ids, *([PAD] * missing)])
        batch["labels"].append([*e.labels, *([IGNORE_INDEX] * missing)])
        batch["attention_mask"].append([1] * len(e) + [0] * missing)
    return batch


BUDGET_CHARS_PER_SECOND = 5.0
"""Slowest speaking rate a generation budget allows for: fluent speech runs 12-18 characters per second."""
BUDGET_HEADROOM_SECONDS = 3.0
"""Audio a generation budget allows beyond the text's slowest reading (pauses, breaths, a slow start)."""


def max_new_tokens_for_text(
    text: str,
    *,
    max_chars_per_second: float = BUDGET_CHARS_PER_SECOND,
    headroom_seconds: float = BUDGET_HEADROOM_SECONDS,
    cap: int | None = None,
) -> int:
    """A generation budget derived from the text: enough audio for slow speech plus headroom.

    ``BUDGET_CHARS_PER_SECOND`` is a generous lower bound on speaking rate, so the budget never cuts
    real speech (the famous fixed 1200-token cap stops audio at ~14 s).
    Whole frames: rounded up, plus one frame of room for the end-of-speech token, so a generation that
    uses the whole budget still ends on a frame boundary.
    """
    return _max_new_tokens_for_chars(len(text), max_chars_per_second, headroom_seconds, cap)


MAX_CHARS_PER_TEXT_TOKEN = 8
"""Upper bound on characters per Llama-3 BPE text token (long English words are one or two tokens)."""


def max_new_tokens_for_prompt(prompt_ids: Sequence[int]) -> int:
    """A generation budget for a prompt whose text is not at hand (an engine given only ids).

    Every prompt id is counted as ``MAX_CHARS_PER_TEXT_TOKEN`` characters, so the budget is at least
    what ``max_new_tokens_for_text`` gives the text itself.
    """
    n_chars = len(prompt_ids) * MAX_CHARS_PER_TEXT_TOKEN
    return _max_new_tokens_for_chars(n_chars, BUDGET_CHARS_PER_SECOND, BUDGET_HEADROOM_SECONDS, None)


def _max_new_tokens_for_chars(
    n_chars: int, max_chars_per_second: float, headroom_seconds: float, cap: int | None
) -> int:
    seconds = n_chars / max_chars_per_second + headroom_seconds
    frames = math.ceil(seconds * SAMPLE_RATE / SAMPLES_PER_FRAME) + 1  # + room for END_OF_SPEECH
    tokens = frames * CODES_PER_FRAME
    if cap is not None:
        tokens = min(tokens, whole_frames_budget(cap))
    return tokens


def whole_frames_budget(max_tokens: int) -> int:
    """``max_tokens`` rounded down to whole frames. Codes past the last whole frame can only be dropped, so
    a budget that ends inside a frame generates tokens for nothing (and leaves a partial frame behind).
    A budget under one frame is left as it is: it cannot produce audio either way."""
    if max_tokens < CODES_PER_FRAME:
        return max_tokens
    return max_tokens - max_tokens % CODES_PER_FRAME


# --- streaming parser --------------------------------------------------------------------------------
STOP_TOKEN_IDS = (END_OF_SPEECH,)
"""Ids that end generation. ``END_OF_AI`` and ``END_OF_TEXT`` are also accepted as ends by the parser."""
_END_IDS = frozenset({END_OF_SPEECH, END_OF_AI, END_OF_TEXT})


class AudioTokenParser:
    """Turns a stream of generated ids or ``<custom_token_N>`` text into complete frames.

    Feed it ids (``feed_ids``) or detokenised text (``feed_text``) as they arrive, several tokens per
    update or a token split across updates; each call returns the frames completed by that update as a
    ``(K, 7)`` array (K may be 0). Generation ends at ``END_OF_SPEECH``; anything after it is ignored.
    A leading ``START_OF_SPEECH`` (some engines echo it) is skipped. Any other non-audio id, or an audio
    id at the wrong frame position, raises ``InvalidAudioTokenError``.
    """

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._text_buffer = ""
        self.audio_tokens_seen = 0
        self.frames_emitted = 0
        self.ended = False

    def feed_ids(self, ids: Iterable[int]) -> np.ndarray:
        import numpy as np

        for token in ids:
            if self.ended:
                break
            token = int(token)
            if token in _END_IDS:
                self.ended = True
                break
            if token == START_OF_SPEECH and self.audio_tokens_seen == 0:
                continue
            position = self.audio_tokens_seen % CODES_PER_FRAME
            code = token - AUDIO_TOKEN_BASE - position * CODEBOOK_SIZE
            if not 0 <= code < CODEBOOK_SIZE:
                raise InvalidAudioTokenError(_describe_bad_token(token, self.audio_tokens_seen))
            self._pending.append(code)
            self.audio_tokens_seen += 1
        n_complete = len(self._pending) // CODES_PER_FRAME
        if n_complete == 0:
            return np.empty((0, CODES_PER_FRAME), dtype=np.int64)
        cut = n_complete * CODES_PER_FRAME
        frames = np.asarray(self._pending[:cut], dtype=np.int64).reshape(n_complete, CODES_PER_FRAME)
        del self._pending[:cut]
        self.frames_emitted += n_complete
        return frames

    def feed_text(self, text: str) -> np.ndarray:
        """Parse ``<custom_token_N>`` spellings; whitespace between tokens is allowed, other text is not."""
        buffer = self._text_buffer + text
        ids: list[int] = []
        pos = 0
        for match in _CUSTOM_TOKEN_RE.finditer(buffer):
            self._check_gap(buffer[pos : match.start()])
            token = custom_token_id(int(match.group(1)))
            ids.append(token)
            pos = match.end()
            if token in _END_IDS:  # whatever follows the end of speech is not ours to parse
                self._text_buffer = ""
                return self.feed_ids(ids)
        rest = buffer[pos:]
        start = rest.find("<")
        if start >= 0 and _could_be_token_start(rest[start:]):
            self._check_gap(rest[:start])
            self._text_buffer = rest[start:]
        else:
            self._check_gap(rest)
            self._text_buffer = ""
        return self.feed_ids(ids)

    def finish(self) -> int:
        """End of stream: returns how many trailing tokens did not make a whole frame (and logs them)."""
        leftover = len(self._pending)
        if self._text_buffer.strip():
            raise InvalidAudioTokenError(f"stream ended inside a token: {self._text_buffer!r}")
        if leftover:
            logger.warning(
                "dropping a partial trailing frame (%d of %d tokens) after %d frames",
                leftover,
                CODES_PER_FRAME,
                self.frames_emitted,
            )
        self._pending.clear()
        return leftover

    def _check_gap(self, gap: str) -> None:
        if gap.strip() and not self.ended:
            raise InvalidAudioTokenError(f"unexpected text in the audio token stream: {gap.strip()!r}")


def _could_be_token_start(fragment: str) -> bool:
    """True while ``fragment`` may still grow into ``<custom_token_N>``."""
    head = fragment[: len(_CUSTOM_TOKEN_SPELLING)]
    if not _CUSTOM_TOKEN_SPELLING.startswith(head):
        return False
    tail = fragment[len(_CUSTOM_TOKEN_SPELLING) :]
    return tail.isdigit() or tail == ""
