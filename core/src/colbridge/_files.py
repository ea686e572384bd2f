"""Small file-system helpers for crash-safe writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import IndexCorruptError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_SCRATCH_MARK = ".tmp-"


def scratch_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: ``.<name>.tmp-<pid>-<thread>``
    beside it (hidden, and unique to this writer)."""
    return path.with_name(f".{path.name}{_SCRATCH_MARK}{os.getpid()}-{threading.get_ident()}")


def is_scratch(name: str) -> bool:
    """True for the name of a scratch file or folder (see :func:`scratch_path`)."""
    return name.startswith(".") and _SCRATCH_MARK in name


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a scratch path for the caller to write ``path``'s new content to; when the block
    ends, make it durable and rename it over ``path``, so readers see the old file or the new
    one, never a mix. A failed block leaves ``path`` as it was and removes the scratch file."""
    scratch = scratch_path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(scratch)  # a planted link is replaced, never written through
    try:
        yield scratch
        fd = open_nofollow(scratch, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    with atomic_file(path) as scratch, \
            os.fdopen(open_nofollow(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as f:
        f.write(data)


def file_digest(path: Path) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex digest)`` of the file at ``path`` (never through a link)."""
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
        while chunk := f.read(1 << 23):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def refuse_links(folder: Path) -> None:
    """Raise :class:`IndexCorruptError` if anything in the index ``folder``, or in a folder inside
    it, is a symbolic link: colbridge writes, truncates and deletes the files of its folder, so a
    link would let it change a file elsewhere. The folder itself may be a link."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_symlink():
            raise IndexCorruptError(
                f"{entry.path} is a symbolic link; colbridge never follows links inside an index "
                "folder (replace it with the file itself, or restore the folder from a backup)"
            )
        if entry.is_dir(follow_symlinks=False):
            refuse_links(Path(entry.path))


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` with :class:`IndexCorruptError`."""
    try:
        return os.open(path, flags | NOFOLLOW, mode)
    except OSError as e:
        if os.path.islink(path):
            raise IndexCorruptError(
                f"{path} is a symbolic link; colbridge never writes through links inside an "
                "index folder"
            ) from e
        raise
