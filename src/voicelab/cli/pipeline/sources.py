"""SOURCE arguments -> recordings in ``raw_audio/NAME/``: folders and files linked or copied, URLs fetched.

Everything is checked before anything is written: a URL must be http(s); a file must exist and decode as
audio; a folder must hold audio. Files land by one rename (a copy is written under a hidden name first),
and a download goes to a hidden folder and is moved in only once it is complete and decodes as audio, so
an interrupted or failed fetch leaves nothing that prepare-audio would read. URLs are handed to yt-dlp
as Python arguments (its library API), never through a shell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voicelab.audio import AUDIO_SUFFIXES, AudioError
from voicelab.errors import UsageError

logger = logging.getLogger(__name__)

URL_SCHEMES = ("http", "https")
MAX_URL_CHARS = 2048
"""Longer than any video page address; a longer argument is a paste gone wrong."""
DOWNLOAD_DIR = ".download"
"""Hidden folder in ``raw_audio/NAME/`` where yt-dlp writes; prepare-audio skips hidden folders."""
DOWNLOAD_TEMPLATE = "%(title).80B [%(id)s].%(ext)s"
"""yt-dlp's output name: the title cut to 80 bytes (file names have a 255-byte limit), then the id."""
DOWNLOAD_TIMEOUT_S = 30
DOWNLOAD_RETRIES = 2
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class SourceError(UsageError):
    """A SOURCE that cannot be used (missing, not audio, not an http(s) URL, not downloadable)."""


@dataclass
class Sources:
    urls: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)


def check_url(url: str) -> str:
    """``url`` when it is an http(s) address with a host; else ``SourceError`` saying what is accepted."""
    if len(url) > MAX_URL_CHARS or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise SourceError(
            f"{url[:80]!r}: not a URL (spaces, control characters, or over {MAX_URL_CHARS} chars)"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
        raise SourceError(f"{url}: only http:// and https:// addresses can be fetched")
    return url


def classify(sources: Sequence[str]) -> Sources:
    """Sort SOURCE arguments into URLs, files and folders, checking each (nothing is written)."""
    found = Sources()
    for source in sources:
        if _URL_LIKE.match(source):
            found.urls.append(check_url(source))
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            if not any(_audio_files(path)):
                raise SourceError(
                    f"{source}: no audio files in this folder (looked for {' '.join(sorted(AUDIO_SUFFIXES))})"
                )
            found.folders.append(path)
        elif path.is_file():
            check_audio_file(path)
            found.files.append(path)
        else:
            raise SourceError(f"{source}: no such file or folder (and not an http(s) URL)")
    return found


def check_audio_file(path: Path) -> None:
    """``SourceError`` unless ``path`` has an audio suffix and its header decodes."""
    from voicelab.audio import open_audio

    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise SourceError(f"{path}: not an audio file (supported: {' '.join(sorted(AUDIO_SUFFIXES))})")
    try:
        open_audio(path)
    except AudioError as e:
        raise SourceError(f"{e} (not audio, or damaged)") from e


def _audio_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not hidden:
            yield path, relative


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) or (
        sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns
    )


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def link_or_copy(source: Path, target: Path) -> bool:
    """Put ``source`` at ``target`` (a hard link where the filesystem allows, else a copy written under a
    hidden name and renamed); False when ``target`` already holds that file. ``SourceError`` when
    ``target`` holds another file."""
    if target.exists():
        if _same_file(source, target):
            return False
        raise SourceError(
            f"{target} already exists and differs from {source}: rename one of them, or remove {target}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.link(source, target)
        return True
    from voicelab.fileio import atomic_output

    with atomic_output(target) as tmp:
        shutil.copy2(source, tmp)
    return True


def bring_local(sources: Sources, raw: Path) -> int:
    """Link or copy the files and folders into ``raw``; returns how many files were added."""
    added = 0
    for folder in sources.folders:
        if _inside(folder, raw):
            continue  # already where prepare-audio reads
        for path, relative in _audio_files(folder):
            added += link_or_copy(path, raw / relative)
    for path in sources.files:
        if not _inside(path, raw):
            added += link_or_copy(path, raw / path.name)
    return added


# --- URLs -------------------------------------------------------------------------------------------------
class _YtLogger:
    """yt-dlp's messages into our logging (its own output would go around the progress bar)."""

    def debug(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)

    info = debug

    def warning(self, message: str) -> None:
        logger.warning("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)  # raised as DownloadError and reported once, by fetch_url


def _download_options(folder: Path, hook: Callable[[dict], None]) -> dict:
    return {
        "format": "bestaudio/best",  # audio only where the site offers it
        "outtmpl": str(folder / DOWNLOAD_TEMPLATE),
        "noplaylist": True,
        "restrictfilenames": True,
        "quiet": True,
        "noprogress": True,
        "logger": _YtLogger(),
        "progress_hooks": [hook],
        "socket_timeout": DOWNLOAD_TIMEOUT_S,
        "retries": DOWNLOAD_RETRIES,
        "extractor_retries": DOWNLOAD_RETRIES,
    }


def _clean_message(error: Exception) -> str:
    text = str(error).removeprefix("ERROR: ")
    return text.split(" (caused by ", 1)[0]


def fetch_url(url: str, raw: Path) -> list[str]:
    """Download ``url``'s audio into ``raw``; returns the new files' names.

    yt-dlp writes into ``raw/.download/``; only complete files that decode as audio are moved into ``raw``.
    ``SourceError`` when the address cannot be fetched or gives no audio; the hidden folder is removed
    whatever happens.
    """
    import yt_dlp

    from voicelab.progress import progress_bar

    staging = raw / DOWNLOAD_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    bar = progress_bar(desc=f"downloading {url}", unit="B", unit_scale=True, disable=None)

    def hook(status: dict) -> None:
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        if total and bar.total != total:
            bar.total = total
        done = status.get("downloaded_bytes") or 0
        if done > bar.n:
            bar.update(done - bar.n)

    try:
        with yt_dlp.YoutubeDL(_download_options(staging, hook)) as downloader:
            downloader.extract_info(url, download=True)
        return _move_downloads(url, staging, raw)
    except yt_dlp.utils.DownloadError as e:
        raise SourceError(f"could not download {url}: {_clean_message(e)}") from e
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)


def _move_downloads(url: str, staging: Path, raw: Path) -> list[str]:
    files = [p for p in sorted(staging.iterdir()) if p.is_file() and not p.name.endswith((".part", ".ytdl"))]
    if not files:
        raise SourceError(f"{url}: the download gave no file")
    moved = []
    for path in files:
        try:
            check_audio_file(path)
        except SourceError as e:
            raise SourceError(
                f"{url} gave {path.name}, which is not audio prepare-audio can read: {e}"
            ) from e
        target = raw / path.name
        os.replace(path, target)
        moved.append(target.name)
        logger.info("%s -> %s", url, target)
    return moved
