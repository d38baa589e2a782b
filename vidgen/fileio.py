"""Writing files so that a reader never finds half of one, and one writer per folder.

Every write goes to a temporary file beside its destination (same folder,
so the rename cannot cross file systems), is flushed to disk with fsync, and
is then renamed into place; the folder is fsynced after the rename, so a
power loss leaves either the old file or the whole new one, never a renamed
empty file. A write that fails (a full disk: ENOSPC) removes its temporary
file and leaves the previous file as it was.

Example:

    from vidgen import fileio
    fileio.write_json_atomic("run/metrics.json", {"mse": 12.5})
    with fileio.atomic_path("run/model.keras") as tmp:
        model.save(tmp)                       # renamed to run/model.keras on success
    with fileio.exclusive_lock("run", flag="--run-dir"):
        ...                                   # a second process fails with one sentence
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

from vidgen.errors import VidgenError

LOCK_NAME = ".vidgen.lock"


def temporary_name(path: str, suffix: str | None = None) -> str:
    """A name beside `path`, unique to this process and call, ending like `path`.

    `suffix` is the ending kept at the end (default: the last extension), for
    writers that insist on one (".keras", ".weights.h5", ".tfrecord.gz").
    """
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    root = path[:-len(suffix)] if suffix and path.endswith(suffix) else path
    return f"{root}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def fsync_path(path: str) -> None:
    """Flushes a file, or a folder's entries, to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as e:
        # Some file systems cannot fsync a directory; the data itself was synced.
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF) or not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """fsync of every file and folder under `path` (a folder) and of `path` itself."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            fsync_path(os.path.join(root, name))
        for name in dirs:
            fsync_path(os.path.join(root, name))
    fsync_path(path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def commit(tmp: str, path: str) -> str:
    """fsyncs `tmp` (a file or a folder tree), renames it to `path`, fsyncs the parent."""
    if os.path.isdir(tmp):
        fsync_tree(tmp)
    else:
        fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yields a temporary path to write; on success it becomes `path` durably.

    The folder of `path` is created. If the body raises (ENOSPC included),
    the temporary file is removed and `path` keeps its previous content.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, content: bytes) -> str:
    """Writes `content` to `path` atomically and durably (folders created)."""
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(content)
    return path


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON document at `path`, or `default` when the file does not exist."""
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path: str | os.PathLike, value: Any, sort_keys: bool = False) -> None:
    """Writes `value` as indented JSON to `path` atomically and durably."""
    text = json.dumps(value, indent=2, sort_keys=sort_keys) + "\n"
    write_bytes_atomic(path, text.encode())


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike, flag: str, what: str = "writing") -> Iterator[None]:
    """Holds an exclusive lock on `folder` (created) for the body of the `with`.

    Another process that asks for the same folder's lock meanwhile fails at
    once with a VidgenError naming the holder's PID and `flag`, the option
    that picks another folder. The lock is an flock on FOLDER/.vidgen.lock,
    released by the kernel when its holder exits, even after kill -9; the
    file is removed when the body ends (a kill leaves it, unlocked and harmless).
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            words = os.pread(fd, 64, 0).decode(errors="replace").split()
            os.close(fd)
            holder = words[0] if words else "unknown"
            raise VidgenError(
                f"{folder!r} is being written by another vidgen process (pid {holder}); wait "
                f"for it to finish or choose another {flag}.") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        # The holder removed the file between our open and our flock: lock the new one.
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield
    finally:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        os.close(fd)  # releases the flock
