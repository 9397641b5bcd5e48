"""Let Whisper write its non-speech annotations ("(laughs)", "[sighs]", "*chuckles*"), which it suppresses
by default, so transcribe can turn them into Orpheus tags.

Both backends take ``suppress_tokens``; their default ``[-1]`` stands for the tokenizer's
``non_speech_tokens``: every single-token spelling (bare and after a space) of ``"#()*+/:;<=>@[\\]^_`{|}~``,
the CJK corner brackets, runs like ``((``, ``))``, ``[[``, ``-(``, ``>>``, ``--``, and the music notes.
That is what keeps "(laughs)" out of a transcript. To allow annotations we pass that same list without
the tokens made only of the annotation brackets ``( ) [ ] *`` (see ``ANNOTATION_SYMBOLS``), so quotes,
``<``/``>`` (speaker turns ``>>``), music notes and the rest stay suppressed. The ids come from the loaded
model's own tokenizer (the multilingual and English-only vocabularies differ); docs/tags.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

ANNOTATION_SYMBOLS = frozenset("()[]*")
"""Characters Whisper's annotations are written with: ``(laughs)``, ``[LAUGHTER]``, ``*sighs*``."""
WHISPER_DEFAULT_SUPPRESS = (-1,)
"""Both backends' default ``suppress_tokens``: -1 stands for the tokenizer's non-speech tokens."""


def annotation_tokens(non_speech: Iterable[int], decode: Callable[[list[int]], str]) -> tuple[int, ...]:
    """The ids among ``non_speech`` that spell only annotation brackets (``(``, `` [``, ``))``, `` *``)."""
    found = []
    for token in non_speech:
        symbols = decode([token]).strip()
        if symbols and set(symbols) <= ANNOTATION_SYMBOLS:
            found.append(token)
    return tuple(sorted(found))


def suppress_tokens(
    non_speech: Sequence[int], decode: Callable[[list[int]], str], *, annotations: bool
) -> list[int]:
    """``suppress_tokens`` for decoding: Whisper's default, or its non-speech list minus the annotation
    brackets when ``annotations``."""
    if not annotations:
        return list(WHISPER_DEFAULT_SUPPRESS)
    allowed = set(annotation_tokens(non_speech, decode))
    return sorted(set(non_speech) - allowed)


def openai_suppress_tokens(model, *, annotations: bool) -> list[int]:
    """``suppress_tokens`` for an openai-whisper model (its tokenizer: multilingual or English-only)."""
    from whisper.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages, task="transcribe")
    return suppress_tokens(tokenizer.non_speech_tokens, tokenizer.decode, annotations=annotations)


def faster_suppress_tokens(model, *, annotations: bool) -> list[int]:
    """``suppress_tokens`` for a faster-whisper ``WhisperModel`` (its tokenizer.json)."""
    from faster_whisper.tokenizer import Tokenizer

    # The non-speech set does not depend on the language; a multilingual tokenizer just needs one.
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    return suppress_tokens(tokenizer.non_speech_tokens, tokenizer.decode, annotations=annotations)
