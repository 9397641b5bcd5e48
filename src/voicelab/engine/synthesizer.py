"""Text -> streaming 24 kHz audio: split text, prompt the engine, parse tokens, decode, join pieces.

``Synthesizer.stream`` is what the HTTP server calls. Per piece of text it builds the Orpheus prompt
(``orpheus.inference_prompt_ids``), streams tokens from the engine, turns them into frames with
``orpheus.AudioTokenParser`` and into audio with the streaming SNAC decoder. Long text is split into
sentence-sized pieces under a token budget (Orpheus drifts and loops on long prompts); the pieces are
generated in order and joined with a short crossfade so the listener hears one continuous stream.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import numpy as np

from voicelab import orpheus
from voicelab.engine.base import (
    IncompleteGenerationError,
    SamplingParams,
    TokenEngine,
    Voice,
)
from voicelab.engine.decoder import StreamingSnacDecoder

logger = logging.getLogger(__name__)

MAX_PIECE_TEXT_TOKENS = 60
"""Text tokens per generated piece (~250 characters, ~15 s of speech): long enough for natural prosody,
short enough that Orpheus does not drift or loop."""
CROSSFADE_SECONDS = 0.05
CROSSFADE_SAMPLES = round(CROSSFADE_SECONDS * orpheus.SAMPLE_RATE)  # 1200 samples at 24 kHz

# Text is cut only at the spaces of its normalised form, so the pieces joined by single spaces give the
# text back. An Orpheus tag ("<laugh>", or any "<...>" span, spaces included) is one atom: never cut.
_ATOM = re.compile(r"(?:<[^<>]*>|[^\s<]|<)+")
_CLOSERS = "\"')]}»”’"  # closing quotes and brackets belong to the sentence they close
_SENTENCE_MARKS = ".!?…;:"
_CLAUSE_MARKS = ",;:—–-"


def _is_sentence_end(atom: str, following: str) -> bool:
    """A cut after ``atom``: it ends a sentence (closers aside) and ``following`` does not continue it."""
    return atom.rstrip(_CLOSERS).endswith(tuple(_SENTENCE_MARKS)) and not following[:1].islower()


def _is_clause_end(atom: str, following: str) -> bool:
    return atom.rstrip(_CLOSERS).endswith(tuple(_CLAUSE_MARKS))


@dataclass
class Usage:
    """Token counts of one ``stream`` call (all pieces), filled in while it runs."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    pieces: int = 0
    audio_samples: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / orpheus.SAMPLE_RATE


def split_text(text: str, count_tokens, max_tokens: int = MAX_PIECE_TEXT_TOKENS) -> list[str]:
    """Split ``text`` into pieces of at most ``max_tokens`` (by ``count_tokens(str) -> int``), in order.

    Cuts at sentence ends first, then at clause marks, then between words; a single word (or tag) longer
    than the budget stays whole. Sentences are packed greedily so pieces are as long as the budget allows.
    Only whitespace is touched: ``" ".join(pieces) == " ".join(text.split())``.
    """
    atoms = _ATOM.findall(" ".join(text.split()))
    units: list[str] = []
    for sentence in _cut(atoms, _is_sentence_end):
        units += _split_long(sentence, count_tokens, max_tokens)
    return _pack(units, count_tokens, max_tokens)


def _cut(atoms: list[str], is_boundary) -> list[list[str]]:
    """``atoms`` in runs, a new run after each atom where ``is_boundary(atom, next_atom)``."""
    runs: list[list[str]] = []
    for index, atom in enumerate(atoms):
        if not runs or is_boundary(atoms[index - 1], atom):
            runs.append([])
        runs[-1].append(atom)
    return runs


def _pack(units: list[str], count_tokens, max_tokens: int) -> list[str]:
    pieces: list[str] = []
    for unit in units:
        if pieces and count_tokens(f"{pieces[-1]} {unit}") <= max_tokens:
            pieces[-1] = f"{pieces[-1]} {unit}"
        else:
            pieces.append(unit)
    return pieces


def _split_long(atoms: list[str], count_tokens, max_tokens: int) -> list[str]:
    if len(atoms) == 1 or count_tokens(" ".join(atoms)) <= max_tokens:
        return [" ".join(atoms)]
    clauses = _cut(atoms, _is_clause_end)
    if len(clauses) > 1:
        return [part for clause in clauses for part in _split_long(clause, count_tokens, max_tokens)]
    return _pack(atoms, count_tokens, max_tokens)


class CrossfadeJoiner:
    """Joins the audio of consecutive pieces with a linear crossfade of ``n`` samples; pure.

    ``push`` returns what can be played now (it holds back the last ``n`` samples of the current piece);
    ``next_piece`` marks a boundary; ``finish`` returns the held tail. Output length is the sum of the
    pieces minus ``n`` per boundary (when the pieces are at least ``n`` samples long).
    """

    def __init__(self, n: int = CROSSFADE_SAMPLES) -> None:
        self.n = n
        self._held = np.zeros(0, dtype=np.float32)  # tail of the current piece, not yet played
        self._fade_out: np.ndarray | None = None  # tail of the previous piece, waiting for the next head
        self._fade = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32) if n else None

    def push(self, audio: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._held, np.asarray(audio, dtype=np.float32)])
        if self._fade_out is not None:
            if len(buf) < len(self._fade_out):
                self._held = buf
                return np.zeros(0, dtype=np.float32)
            k = len(self._fade_out)
            ramp = (
                self._fade[:k] if k == self.n else np.linspace(0.0, 1.0, k, endpoint=False, dtype=np.float32)
            )
            buf = buf.copy()
            buf[:k] = self._fade_out * (1.0 - ramp) + buf[:k] * ramp
            self._fade_out = None
        keep = min(self.n, len(buf))
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep]

    def next_piece(self) -> np.ndarray:
        """Boundary between pieces; returns audio that must be played before the next piece starts."""
        out = np.zeros(0, dtype=np.float32)
        if self._fade_out is not None:  # the piece was shorter than the fade: play the old tail as is
            out = self._fade_out
        self._fade_out, self._held = (self._held if len(self._held) else None), np.zeros(0, dtype=np.float32)
        return out

    def finish(self) -> np.ndarray:
        parts = [p for p in (self._fade_out, self._held) if p is not None and len(p)]
        self._fade_out, self._held = None, np.zeros(0, dtype=np.float32)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _count_generated(chunk) -> int:
    if chunk.ids is not None:
        return len(chunk.ids)
    return orpheus.count_token_spellings(chunk.text or "")


class Synthesizer:
    """Voice + text -> float32 mono chunks at 24 kHz, streamed as decoded.

    ``tokenizer``: the base model's tokenizer (``voicelab.models.load_tokenizer``). Pass ``usage=Usage()``
    to ``stream`` to read a call's token and sample counts.
    """

    def __init__(
        self,
        engine: TokenEngine,
        tokenizer,
        decoder: StreamingSnacDecoder,
        *,
        max_piece_tokens: int = MAX_PIECE_TEXT_TOKENS,
        crossfade_samples: int = CROSSFADE_SAMPLES,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.decoder = decoder
        self.max_piece_tokens = max_piece_tokens
        self.crossfade_samples = crossfade_samples

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def pieces(self, text: str) -> list[str]:
        return split_text(text, self.count_tokens, self.max_piece_tokens)

    async def stream(
        self,
        voice: Voice,
        text: str,
        params: SamplingParams | None = None,
        *,
        usage: Usage | None = None,
    ) -> AsyncIterator[np.ndarray]:
        """Yield ``(n,)`` float32 chunks at 24 kHz; the first after at most 4 frames (28 tokens).

        Raises the engine's ``EngineError`` subclasses, ``IncompleteGenerationError`` when a piece ends
        without end of speech (after yielding the audio it did produce), and ``orpheus.ContractError``
        for tokens that are not audio. Closing the iterator (or cancelling its task) closes the engine
        stream, which cancels the upstream generation.
        """
        params = params or SamplingParams()
        usage = usage if usage is not None else Usage()
        joiner = CrossfadeJoiner(self.crossfade_samples)
        pieces = self.pieces(text)
        if not pieces:
            raise ValueError("nothing to say: the text is empty")
        for index, piece in enumerate(pieces):
            if index:
                tail = joiner.next_piece()
                if len(tail):
                    usage.audio_samples += len(tail)
                    yield tail
            try:
                # aclosing: a consumer hang-up must close the piece's stream now (and with it the upstream
                # request), not whenever the event loop finalises an abandoned generator.
                async with contextlib.aclosing(
                    self._stream_piece(voice, piece, params, usage)
                ) as audio_chunks:
                    async for audio in audio_chunks:
                        out = joiner.push(audio)
                        if len(out):
                            usage.audio_samples += len(out)
                            yield out
            except IncompleteGenerationError:
                tail = joiner.finish()  # deliver what was generated before reporting the cut
                if len(tail):
                    usage.audio_samples += len(tail)
                    yield tail
                raise
        tail = joiner.finish()
        if len(tail):
            usage.audio_samples += len(tail)
            yield tail

    async def _stream_piece(
        self, voice: Voice, piece: str, params: SamplingParams, usage: Usage
    ) -> AsyncIterator[np.ndarray]:
        prompt = orpheus.inference_prompt_ids(self.tokenizer, piece, voice.prompt_prefix)
        if params.max_tokens is None:
            params = replace(params, max_tokens=orpheus.max_new_tokens_for_text(piece))
        else:
            params = replace(params, max_tokens=orpheus.whole_frames_budget(params.max_tokens))
        usage.prompt_tokens += len(prompt)
        usage.pieces += 1
        parser = orpheus.AudioTokenParser()
        stream = self.decoder.open_stream()
        finish_reason = None
        tokens = self.engine.generate(voice, prompt, params)
        try:
            async for chunk in tokens:
                usage.generated_tokens += _count_generated(chunk)
                frames = (
                    parser.feed_ids(chunk.ids)
                    if chunk.ids is not None
                    else parser.feed_text(chunk.text or "")
                )
                for audio in await stream.push(frames):
                    yield audio
                finish_reason = chunk.finish_reason or finish_reason
                if parser.ended:  # an engine that returns the end token itself; ignore what follows
                    break
        finally:
            # On a consumer hang-up this is what cancels the upstream generation.
            aclose = getattr(tokens, "aclose", None)
            if aclose is not None:
                await aclose()
        parser.finish()
        for audio in await stream.finish():
            yield audio
        if not (parser.ended or finish_reason == "stop"):
            hit_limit = finish_reason == "length"
            why, hint = (
                (f"hit max_tokens={params.max_tokens}", "retry, or raise max_tokens")
                if hit_limit
                else (
                    f"the stream ended without end of speech (finish_reason {finish_reason!r})",
                    "the engine stopped without saying why; retry, and check the engine's log",
                )
            )
            raise IncompleteGenerationError(
                f"voice {voice.name!r}: generation stopped early ({why}) after {parser.frames_emitted} frames "
                f"({orpheus.frames_to_samples(parser.frames_emitted) / orpheus.SAMPLE_RATE:.2f} s) of "
                f"the piece {piece[:60]!r}; {hint}",
                reason=IncompleteGenerationError.LENGTH if hit_limit else IncompleteGenerationError.CUT,
            )
