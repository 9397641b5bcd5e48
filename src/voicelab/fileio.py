"""Crash-safe file writing: write to a temporary name beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
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


WRITE_PROBE_PREFIX = ".voicelab-write-test-"


def probe_writable(folder: Path | str) -> None:
    """Create and remove a file in ``folder``; raises ``OSError`` when that fails.

    The one reliable test before long work: ``os.access`` answers yes to root even for ``/sys`` or a
    folder marked immutable (``chattr +i``), where every write then fails.
    """
    import tempfile

    with tempfile.NamedTemporaryFile(dir=folder, prefix=WRITE_PROBE_PREFIX):
        pass


def write_text_atomic(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def append_durably(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Append ``text`` to the file ``path`` names now, flushed and fsynced before returning.

    Opened afresh each time, so an append lands in the current file even after another writer replaced
    it atomically (an open handle would keep writing to the replaced one); never through a symlink.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o666)
    try:
        data = memoryview(text.encode(encoding))
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)


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
    """A name that would reach outside its folder (``..``, an absolute path, a symlink pointing out), or
    one no file can have (a NUL byte, longer than ``MAX_NAME_BYTES``)."""


MAX_NAME_BYTES = 255
"""The longest file name (one path part, in bytes) Linux, macOS and Windows file systems accept."""
NAME_ENCODING = "utf-8"


def name_problem(name: str) -> str | None:
    """Why ``name`` (one part of a path) cannot be stored, served or written to a UTF-8 file; None if it can.

    A file name read from disk that is not valid UTF-8 arrives with surrogate escapes (``\\udcff``); no
    JSON answer or CSV row can carry it.
    """
    if "\x00" in name:
        return "it contains a NUL byte"
    try:
        size = len(name.encode(NAME_ENCODING))
    except UnicodeEncodeError:
        return "it is not valid UTF-8 (rename the file)"
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes long; names are at most {MAX_NAME_BYTES}"
    return None


SHOWN_NAME_CHARS = 80
"""A name quoted in a message is cut to this length (an over-long name would drown the message)."""


def printable_name(name: str | Path) -> str:
    """``name`` safe to print or log: bytes that are not UTF-8 shown as ``\\xNN``, cut to a readable length."""
    text = os.fsencode(name).decode(NAME_ENCODING, errors="backslashreplace")
    return text if len(text) <= SHOWN_NAME_CHARS else text[:SHOWN_NAME_CHARS] + "..."


def resolve_inside(root: Path | str, relative: Path | str) -> Path:
    """``root / relative`` with every symlink resolved, refusing anything that lands outside ``root``.

    The one check for every file a feature reads or writes on a client's behalf (voice files, evaluation
    files, dataset clips): ``..`` parts, absolute paths, empty names, names no file can have (NUL, too
    long) and symlinks that point out of ``root`` raise ``UnsafePathError``, whose message names
    ``relative`` and ``root`` but never where a symlink points. Whether the file exists is not checked.
    """
    rel = Path(relative)
    shown = printable_name(str(relative))
    if not str(relative).strip() or rel.is_absolute() or ".." in rel.parts:
        raise UnsafePathError(f"{shown!r} is not a name inside {root}")
    for part in rel.parts:
        if (problem := name_problem(part)) is not None:
            raise UnsafePathError(f"{shown!r} is not a usable name: {problem}")
    try:
        base = Path(root).resolve()
        target = (base / rel).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a part too long for the system
        raise UnsafePathError(f"{shown!r} cannot be resolved inside {root} ({type(e).__name__})") from e
    if target == base or not target.is_relative_to(base):
        raise UnsafePathError(f"{shown!r} leads outside {root}")
    return target


PROC_FD = Path("/proc/self/fd")
"""Linux: where an open file descriptor's real path can be read back."""


def open_inside(root: Path | str, relative: Path | str):
    """Open ``root / relative`` for reading in binary, only if it is a regular file inside ``root``.

    ``resolve_inside`` first; then the resolved path is opened without following a symlink in its last
    part, and (on Linux) the path the open file really has is checked again, so a symlink swapped in
    between the check and the open is refused too. Raises ``UnsafePathError``, or ``FileNotFoundError``
    when there is no such regular file (also when it vanished after an earlier check). The caller closes
    the returned file; once open, it stays readable even if the name is removed.
    """
    target = resolve_inside(root, relative)
    shown = printable_name(str(relative))
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:  # gone, a symlink swapped in (ELOOP), no permission
        raise FileNotFoundError(f"{shown}: no readable file of that name ({e.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(f"{shown}: not a regular file")
        if PROC_FD.is_dir() and not Path(os.readlink(PROC_FD / str(fd))).is_relative_to(Path(root).resolve()):
            raise UnsafePathError(f"{shown!r} leads outside {root}")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_text_inside(root: Path | str, relative: Path | str, encoding: str = "utf-8", errors: str = "strict"):
    """The text of ``root / relative`` read through ``open_inside``."""
    with open_inside(root, relative) as handle:
        return handle.read().decode(encoding, errors=errors)
