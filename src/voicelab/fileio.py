"""Crash-safe file writing: write to a temporary name beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from voicelab.errors import UsageError


def temp_path_for(path: Path) -> Path:
    """A hidden temporary name in the same folder (same filesystem, so the rename is atomic).

    The original suffix is kept last so format sniffing by extension (soundfile, csv) still works.
    """
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically, on error it is removed.

    A crash (or Ctrl-C) therefore never leaves a truncated ``path``: readers see the old file or the
    complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


def current_umask() -> int:
    """The process' umask, read without changing it where the system tells (Linux ``/proc``)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore at once (the only portable way to read it)
    os.umask(mask)
    return mask


def give_default_modes(folder: Path | str) -> None:
    """Give every file under ``folder`` the mode a plain ``open()`` would (``0o666 & ~umask``).

    Some writers (safetensors, temporary files) create files readable by their owner only; a published
    folder must be readable by whoever may read the rest of it (e.g. a server running as another user).
    """
    mode = 0o666 & ~current_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def write_text_atomic(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding=encoding)


class DurableAppender:
    """Appends text to a file, each piece flushed and fsynced before ``write`` returns.

    Give ``write`` one whole record at a time: a crash then loses at most the record being written, and
    only the file's last record can be incomplete.
    """

    def __init__(self, path: Path | str, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding=encoding, newline="")

    def write(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UnsafePathError(UsageError):
    """A name that would reach outside its folder (``..``, an absolute path, a symlink pointing out)."""


def resolve_inside(root: Path | str, relative: Path | str) -> Path:
    """``root / relative`` with every symlink resolved, refusing anything that lands outside ``root``.

    The one check for every file a feature reads or writes on a client's behalf (voice files, evaluation
    files, dataset clips): ``..`` parts, absolute paths, empty names and symlinks that point out of ``root``
    raise ``UnsafePathError``. Whether the file exists is not checked.
    """
    base = Path(root).resolve()
    rel = Path(relative)
    if not str(relative).strip() or rel.is_absolute() or ".." in rel.parts:
        raise UnsafePathError(f"{str(relative)!r} is not a name inside {root}")
    target = (base / rel).resolve()
    if target == base or not target.is_relative_to(base):
        raise UnsafePathError(f"{root}/{relative} resolves to {target}, outside {root}")
    return target
