"""The one atomic, durable file write of the project.

Every file that must survive a crash whole — keys, the trust store, the signed
directory, adapter state, drop-folder sidecars, delivered messages, the
launcher's state — is written by :func:`atomic_write`: a temporary file in the
same folder, ``fsync``, then a rename over the target (or, with
``exclusive=True``, a hard link that fails if the target exists), then an
``fsync`` of the folder so the rename itself is on disk. A reader sees the old
content or all of the new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir"]


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a new fsynced dot-file beside ``path`` (parents created, 0700);
    returns it. A write that fails (a full disk fails after the create) leaves no
    partial dot-file behind."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def atomic_write_many(items: list[tuple[Path, bytes]], *, mode: int = 0o600) -> None:
    """:func:`atomic_write` for many files at once, with one barrier per folder: each
    file is written and fsynced (the fsyncs run concurrently, so the file system
    commits them together), renamed into place, then each folder is fsynced once.
    On return every file holds all of its data; a crash before leaves each file
    with its old content or its new. Raises ``OSError``."""
    from concurrent.futures import ThreadPoolExecutor

    temps: list[tuple[Path, Path]] = []

    try:
        failed: BaseException | None = None
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(items)))) as pool:
            futures = [(path, pool.submit(_write_temp, path, data, mode)) for path, data in items]
            for path, future in futures:
                try:
                    temps.append((path, future.result()))
                except BaseException as exc:
                    failed = failed or exc
        if failed is not None:
            raise failed
        for path, tmp in temps:
            tmp.replace(path)
    except BaseException:
        for _, tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for folder in {path.parent for path, _ in items}:
        fsync_dir(folder)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, exclusive: bool = False) -> None:
    """Write ``path`` so that it holds either its old content or all of ``data``.

    ``mode`` is applied exactly (the umask cannot widen or narrow it);
    ``exclusive`` refuses to replace an existing file (``FileExistsError``).
    Parent folders are created (mode 0700). Raises ``OSError``.
    """
    tmp = _write_temp(path, data, mode)
    try:
        if exclusive:
            os.link(tmp, path)
            tmp.unlink()
        else:
            tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
