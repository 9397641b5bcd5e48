"""The user guide's "Dataset Size vs Quality" table, and where a dataset falls in it.

prepare-audio's summary and the dataset report picture both name the dataset's tier: the lower of the
rows its clip count and its minutes of clips reach.
"""

from __future__ import annotations

DATASET_LEVELS = (
    # (min clips, clips label, ~minutes, quality, notes): the guide's "Dataset Size vs Quality" table;
    # the minutes a row needs are in LEVEL_MINUTES.
    (200, "200+ clips", "~60 min", "Diminishing returns", "more data helps but gains taper off"),
    (100, "100-200 clips", "~30 min", "Very good", "consistent quality, handles varied text well"),
    (50, "50-100 clips", "~15 min", "Good", "clear voice identity, natural prosody"),
    (20, "20-50 clips", "~5 min", "Moderate", "recognisable voice characteristics, some artifacts"),
    # the guide's table jumps from 10 to 20 clips; say so rather than call 11-19 clips "5-10"
    (11, "11-19 clips", "~2-4 min", "Poor to moderate", "between the guide's Poor and Moderate rows"),
    (5, "5-10 clips", "~1 min", "Poor", "model barely adapts, often sounds like the base model"),
    (0, "under 5 clips", "under 1 min", "Too few", "below the smallest dataset the guide lists"),
)


LEVEL_MINUTES = (60.0, 30.0, 15.0, 5.0, 2.0, 1.0, 0.0)
"""Minutes of clips each DATASET_LEVELS row needs (its "~N min"; 2 for the 11-19 clip gap row): a
dataset sits in the lower of the rows its clip count and its minutes reach."""


def dataset_level(n_clips: int, minutes: float | None = None) -> tuple[str, str, str, str]:
    """The row of the guide's "Dataset Size vs Quality" table a dataset falls in: the lower of the rows
    reached by ``n_clips`` and by ``minutes`` of clips (70 clips of 6 min is "Moderate", not "Good")."""
    for (minimum, clips, label, quality, notes), min_minutes in zip(
        DATASET_LEVELS, LEVEL_MINUTES, strict=True
    ):
        if n_clips >= minimum and (minutes is None or minutes >= min_minutes):
            return clips, label, quality, notes
    raise AssertionError("DATASET_LEVELS ends with a row for 0 clips and 0 minutes")


def level_basis(n_clips: int, minutes: float) -> str:
    """Which of clips and minutes set the level: "14 clips reach Poor to moderate, 0.8 min only Too few"."""
    by_clips = dataset_level(n_clips)[2]
    by_minutes = dataset_level(DATASET_LEVELS[0][0], minutes)[2]
    if by_clips == by_minutes:
        return f"{n_clips} clips and {minutes:.1f} min both reach {by_clips}"
    if dataset_level(n_clips, minutes)[2] == by_minutes:
        return f"{n_clips} clips reach {by_clips}, {minutes:.1f} min only {by_minutes}"
    return f"{minutes:.1f} min reach {by_minutes}, {n_clips} clips only {by_clips}"
