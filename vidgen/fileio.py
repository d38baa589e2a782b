"""Writing files so that a reader never finds half of one, and one writer per folder.

Every write goes to a temporary file beside its destination (same folder,
so the rename cannot cross file systems), is flushed to disk with fsync, and
is then renamed into place; the folder is fsynced after the rename, so a
power loss leaves either the old file or the whole new one, never a renamed
empty file. A write that fails (a full disk: ENOSPC) removes its temporary
file and leaves the previous file as it was; a full disk is then reported
as a `DiskFullError`, one sentence naming the file and the free space.

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
import shutil
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Optional

from vidgen.errors import VidgenError

LOCK_NAME = ".vidgen.lock"

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


class DiskFullError(VidgenError, OSError):
    """A write failed because the disk (or quota) is full; the previous file is intact.

    An OSError too (errno ENOSPC or EDQUOT), so code that handles a failed
    write keeps working; its message is one sentence for the user.

    Args:
        path: the file that was being written.
        free_bytes: space left on its file system (None if unknown).
        had_previous: whether an earlier version of `path` existed (and is kept).
        err: the errno of the failure.
        then: what to do about it, appended to the sentence (e.g. a command).
        kept: what is intact, instead of the sentence's default (which
            follows `had_previous`), for a write that was not atomic.
    """

    def __init__(self, path: str, free_bytes: Optional[int], had_previous: bool,
                 err: int = errno.ENOSPC, then: str = "", kept: str = ""):
        self.path, self.free_bytes, self.had_previous, self.then, self.kept = (
            path, free_bytes, had_previous, then, kept)
        kept = kept or (f"the previous {os.path.basename(path)} is intact" if had_previous
                        else "nothing was left in its place")
        free = format_bytes(free_bytes) if free_bytes is not None else "an unknown amount"
        self.summary = f"Writing {path} failed because the disk is full ({free} free); {kept}"
        message = self.summary + (f"; {then}" if then else "") + "."
        OSError.__init__(self, err, message)
        self.message = message
        self.os_error: Optional[BaseException] = None  # the failure itself

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.path, self.free_bytes, self.had_previous, self.errno,
                            self.then, self.kept)

    def with_advice(self, then: str) -> DiskFullError:
        """The same error, telling the user `then` (what to do next, e.g. a command)."""
        error = DiskFullError(self.path, self.free_bytes, self.had_previous, self.errno, then,
                              self.kept)
        error.os_error = self.os_error
        if self.__cause__ is None and self.os_error is not None:
            self.__cause__ = self.os_error   # for the traceback of `-v`
        return error


def format_bytes(n: int) -> str:
    """`n` bytes for a reader: "0 B", "512 B", "12.0 KiB", "3.4 GiB"."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def disk_full_errno(error: BaseException) -> Optional[int]:
    """ENOSPC or EDQUOT if `error` (or what caused it) is a full disk, else None.

    h5py and TensorFlow report a full disk in the message, without an errno.
    """
    seen = 0
    while error is not None and seen < 8:
        code = getattr(error, "errno", None)
        if code in _DISK_FULL_ERRNOS:
            return code
        text = str(error)
        for code, words in zip(_DISK_FULL_ERRNOS, _DISK_FULL_TEXTS):
            if words in text:
                return code
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def free_bytes(path: str) -> Optional[int]:
    """Free space of the file system holding `path` (its nearest existing folder)."""
    folder = os.path.abspath(path)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


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
    the temporary file is removed and `path` keeps its previous content; a
    full disk is raised as a DiskFullError (naming `path` and the free space).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        commit(tmp, path)
    except DiskFullError:
        _remove(tmp)
        raise
    except BaseException as e:
        _remove(tmp)
        code = disk_full_errno(e) if isinstance(e, Exception) else None
        if code is None:
            raise
        error = DiskFullError(path, free_bytes(path), os.path.exists(path), code)
        # Kept apart from __cause__, which Keras' traceback filter clears.
        error.os_error = e
        raise error from e


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


# Locks this process holds: (real path of the folder, thread) -> how many `with`s deep.
_HELD: dict[tuple[str, int], int] = {}


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` is `folder` or lies under it (symbolic links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike, flag: str, what: str = "writing",
                   instead: Optional[str] = None) -> Iterator[None]:
    """Holds an exclusive lock on `folder` (created) for the body of the `with`.

    Another process that asks for the same folder's lock meanwhile fails at
    once with a VidgenError naming the holder's PID and `flag`, the option
    that picks another folder (or `instead`, the whole remedy, e.g. "pass
    --out DIR to write elsewhere"). The lock is an flock on
    FOLDER/.vidgen.lock, released by the kernel when its holder exits, even
    after kill -9; the file is removed when the body ends (a kill leaves it,
    unlocked and harmless). The same thread may take a lock it holds again
    (`vidgen train` evaluates its run at the end): the inner `with` waits for
    nothing and releases nothing.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    key = (os.path.realpath(folder), threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = os.path.join(folder, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            words = os.pread(fd, 64, 0).decode(errors="replace").split()
            os.close(fd)
            holder = words[0] if words else "unknown"
            remedy = instead or f"choose another {flag}"
            raise VidgenError(
                f"{folder!r} is being written by another vidgen process (pid {holder}); wait "
                f"for it to finish or {remedy}.") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        # The holder removed the file between our open and our flock: lock the new one.
        os.close(fd)
    _HELD[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield
    finally:
        del _HELD[key]
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        os.close(fd)  # releases the flock
