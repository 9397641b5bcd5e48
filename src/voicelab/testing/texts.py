"""Texts the tests and benchmarks speak with espeak-ng: ordinary English sentences, no tags."""

from __future__ import annotations

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "She sells sea shells by the sea shore every summer morning.",
    "I would like a cup of coffee and a slice of cake, please.",
    "Tomorrow we travel north to see the mountains covered in snow.",
    "Please remember to lock the door when you leave the house.",
    "The library opens at nine and closes late on Thursdays.",
    "My grandmother grew tomatoes and beans in her little garden.",
    "A sudden storm rolled in from the sea just after lunch.",
    "He carried the heavy box up three flights of narrow stairs.",
    "We watched the sun go down behind the old stone bridge.",
    "Every evening the children played football in the park.",
    "The train to the city was late again this morning.",
    "Could you tell me the way to the nearest post office?",
    "The old clock in the hall stopped at a quarter past four.",
    "They painted the kitchen a bright and cheerful yellow.",
)
"""Fifteen sentences of 3-4 s each: one clip apiece."""

TAKE = (
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    1.0,
    "She sells sea shells by the sea shore every single summer morning.",
    1.0,
    "A journey of a thousand miles begins with one small step forward.",
    1.0,
    "Hello there, how are you doing on this fine and sunny afternoon?",
)
"""One raw recording for ``testing.speak``: four sentences with 1 s pauses, which prepare-audio cuts
into clips."""
