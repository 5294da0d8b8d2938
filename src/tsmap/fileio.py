"""The one home of writing files safely, of folder locks and of seeding.

Every file tsmap writes (maps, store settings, checkpoints, results, reports, cached
models) goes through ``atomic_write``: a temporary file in the same folder, flushed to
disk and renamed into place, so a reader sees the old file or the new one, never half.
A failed write removes its temporary file and raises ``WriteError`` with one line that
names the folder and what to do (disk full, read-only, not a folder).

``folder_lock`` keeps two processes from writing the same store or run folder at once.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

TMP_MARK = ".tmp-"
LOCK_FILE = ".tsmap.lock"
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class WriteError(OSError):
    """A file that could not be written, with the folder and the fix in one line."""


def describe_os_error(exc: OSError, folder: Path) -> str:
    """One line for a failed write: disk full, read-only, or the system's own words."""
    if exc.errno in _FULL:
        return f"disk full while writing to {folder}: free some space and rerun the same command (work done is kept)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {folder}: permission denied or read-only; choose a folder you can write to"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder; give a folder path"
    return f"cannot write to {folder}: {exc.strerror or exc}"


def tmp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under before it is renamed into place."""
    return path.with_name(f"{TMP_MARK}{os.getpid()}-{path.name}")


@contextlib.contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` and renames it to ``path`` when the block succeeds,
    else removes it: the one home of writing a file atomically (``atomic_write`` writes through
    it; writers that need a file name, a video muxer or a model exporter, use it directly)."""
    path = Path(path)
    tmp = tmp_path(path)  # keeps the extension, which some writers read
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, WriteError):
            raise
        raise WriteError(exc.errno, describe_os_error(exc, path.parent)) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, rename it to ``path``."""
    with replacing(path) as tmp, open(tmp, "wb") as f:  # the file is closed before the rename
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path | str, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def save_numpy(path: Path | str, array: np.ndarray) -> None:
    # Serialised in memory first: np.save reports a short write without an errno, which
    # would hide a full disk; a plain write of the bytes raises ENOSPC itself.
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def save_torch(obj: object, path: Path | str) -> None:
    """``torch.save`` atomically: ``path`` holds the old file or the new one, never half."""
    import torch

    def write(f: IO[bytes]) -> None:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:  # torch reports a short write as an "enforce fail"
            raise OSError(errno.ENOSPC, f"short write ({exc})") from exc

    atomic_write(path, write)


def remove_temporaries(folder: Path, recursive: bool = False) -> int:
    """Delete the temporary files that killed writers left in ``folder``; returns how many."""
    if not folder.is_dir():
        return 0
    found = folder.rglob(f"{TMP_MARK}*") if recursive else folder.glob(f"{TMP_MARK}*")
    count = 0
    for path in found:
        with contextlib.suppress(OSError):
            path.unlink()
            count += 1
    return count


class FolderBusy(Exception):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "folder") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the block.

    A second process that asks for the same folder stops at once with ``FolderBusy``
    naming the folder and the process that holds it; the lock goes with the process, so
    a killed run never leaves a stale one.
    """
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError(exc.errno, describe_os_error(exc, folder)) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise FolderBusy(
                f"another tsmap process (pid {holder}) is using the {what} {folder}; "
                "wait for it to finish or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def seed_everything(seed: int):
    """Seed Python, NumPy and PyTorch; returns a ``torch.Generator`` seeded the same way."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
