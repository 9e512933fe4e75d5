"""Staging: every output is written under a hidden name and renamed into place when complete.

Writers stage their output in a hidden sibling of the target, named after the process that
writes it (``.NAME.partial-HOST-PID-XXXXXXXX``, :func:`staging_name`), and rename it into
place only when everything is written (:func:`staged_output`, :func:`move_into_place`), so a
failed or interrupted write never leaves a half-written file or folder under the name the
user asked for. An existing target is refused unless ``overwrite=True``; even then a folder
is only replaced when it is a zarr store, so a mistyped path cannot wipe an unrelated folder
(:func:`check_target`).

A killed writer leaves its staging sibling behind; :func:`clean_stale_staging` removes those
at the start of the next write to the same place, but only when their owner is known to be
gone (same host, process no longer running): a live writer's folder is never touched.

A long run that keeps state between invocations (the blockwise engine's block store) holds
an :class:`OutputLock` on its output for its whole duration, so two runs cannot share or
delete each other's work; a lock left by a process that died is taken over.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..arrays import InputError

_log = logging.getLogger(__name__)

#: Staging siblings without a host in their name (written by earlier versions) are only
#: removed once untouched for this long, since their owner cannot be checked for sure.
LEGACY_STALE_SECONDS = 3600.0


def this_host() -> str:
    """This machine's name, in a form that fits in a file name (no ``-``)."""
    name = socket.gethostname() or "localhost"
    return "".join(c if c.isalnum() else "_" for c in name)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a process of another user counts)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # cannot tell: assume alive, never remove a live run's files
    return True


def staging_name(target: Path, tag: str) -> Path:
    """A hidden sibling of ``target`` owned by this process: ``.NAME.TAG-HOST-PID-XXXXXXXX``."""
    return target.with_name(
        f".{target.name}.{tag}-{this_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )


def staging_owner(path: Path, target: Path, tag: str) -> tuple[str | None, int] | None:
    """``(host, pid)`` of a staging sibling of ``target`` (host None for the older
    ``.NAME.TAG-PID-XXXXXXXX`` names), or None when ``path`` is not one."""
    prefix = f".{target.name}.{tag}-"
    if not path.name.startswith(prefix):
        return None
    parts = path.name[len(prefix) :].split("-")
    try:
        if len(parts) == 2:
            return None, int(parts[0])
        if len(parts) == 3:
            return parts[0], int(parts[1])
    except ValueError:
        return None
    return None


def _is_stale(path: Path, host: str | None, pid: int) -> bool:
    if host is None:
        try:
            age = time.time() - path.lstat().st_mtime
        except OSError:
            return False
        return not process_alive(pid) and age > LEGACY_STALE_SECONDS
    return host == this_host() and not process_alive(pid)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def clean_stale_staging(target: str | Path) -> list[Path]:
    """Remove what killed writers left next to ``target``; return what was removed.

    * ``.NAME.partial-*``: a half-written output whose writer is gone: removed.
    * ``.NAME.old-*``: an earlier output set aside while a new one was renamed into place.
      If the writer died between the two renames the target is missing and this is the
      user's previous result: it is put back, not removed.

    Folders of a writer that still runs (or of another host) are left alone.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    removed = []
    try:
        siblings = sorted(parent.glob(f".{target.name}.*-*"))
    except OSError:
        return []
    for path in siblings:
        for tag in ("partial", "old"):
            owner = staging_owner(path, target, tag)
            if owner is None or not _is_stale(path, *owner):
                continue
            if tag == "old" and not (target.exists() or target.is_symlink()):
                try:
                    os.replace(path, target)
                    _log.warning("restored %s from %s (an interrupted write)", target, path.name)
                except OSError:
                    pass
                continue
            _remove(path)
            removed.append(path)
            _log.info("removed %s, left by an interrupted write (process %d)", path, owner[1])
    return removed


# -- writing an output ------------------------------------------------------------------------
def is_zarr_store(path: Path) -> bool:
    """Whether the folder ``path`` is a zarr store (format 2 or 3), the only kind of folder
    a writer may replace."""
    return any((path / marker).is_file() for marker in ("zarr.json", ".zgroup", ".zarray"))


def _check_writable(path: Path) -> None:
    """Refuse a target whose folder cannot be made or written, before any work is done."""
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: no permission to write in {parent}")


def check_target(path: Path, *, overwrite: bool, folder: bool) -> None:
    """Refuse targets that must not be replaced, or that cannot be written; an empty file or
    folder is always fine."""
    _check_writable(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        if not folder:
            raise InputError(f"{path} is a folder; choose a file name")
        if not any(path.iterdir()):
            return
        if not overwrite:
            raise InputError(f"{path} already exists; choose another name or allow overwriting")
        if not is_zarr_store(path):
            raise InputError(f"refusing to replace {path}: it is a folder that is not a zarr store")
        return
    if path.lstat().st_size and not overwrite:
        raise InputError(f"{path} already exists; choose another name or allow overwriting")


def move_into_place(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; an existing target is kept aside until that worked."""
    if not (target.exists() or target.is_symlink()):
        os.replace(staged, target)
        return
    old = staging_name(target, "old")
    os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        os.replace(old, target)
        raise
    _remove(old)


@contextmanager
def staged_output(path: str | Path, *, overwrite: bool, folder: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; rename it to ``path`` on success.

    On any error the temporary output is deleted and the target is left as it was.
    """
    target = Path(path)
    clean_stale_staging(target)  # what a killed writer left here (never a live one's)
    check_target(target, overwrite=overwrite, folder=folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_name(target, "partial")
    try:
        yield staged
        move_into_place(staged, target)
    except OSError as err:
        _remove(staged)
        if not err.filename or str(err.filename).startswith(str(staged)):
            # Name the file the user asked for, not the hidden one it was written as (a
            # write that fails on a full disk names no file at all).
            text = err.strerror or str(err)  # OSError("...") has no strerror
            raise type(err)(err.errno, text, str(target)) from err
        raise
    except BaseException:
        _remove(staged)
        raise


@contextmanager
def scratch_folder(target: str | Path) -> Iterator[Path]:
    """Yield the path of a hidden sibling of ``target`` (not created) to build several files
    in; it is removed at the end whatever happened, so move what you keep out of it first.
    What a killed writer left for ``target`` is cleaned first."""
    target = Path(target)
    clean_stale_staging(target)
    staged = staging_name(target, "partial")
    try:
        yield staged
    finally:
        _remove(staged)


def safe_name(name: str) -> str:
    """A file or zarr node name from a user's name (a layer's, a model's): no path
    separators or reserved characters, no leading dot or underscore."""
    clean = "".join("_" if ch in '/\\:*?"<>|' else ch for ch in str(name)).strip()
    clean = clean.lstrip(".").lstrip("_") or "labels"
    return clean


class OutputLock:
    """An exclusive lock on one output, held by this process while a run writes it.

    The lock is the file ``.NAME.lock`` next to the output, holding the owner's host, pid
    and start time. Where the file system supports ``flock`` the lock is the kernel's, so a
    killed run's lock is free at once; elsewhere the pid in the file decides: a lock of a
    process that no longer runs on this host is taken over.

    Use as a context manager; a second run gets :class:`~napari_instseg.core.arrays.InputError`
    naming the run that holds it.
    """

    def __init__(self, output: str | Path):
        output = Path(output)
        self.output = output
        self.path = output.with_name(f".{output.name}.lock")
        self._fd: int | None = None

    # -- helpers ---------------------------------------------------------------------------
    def _owner_text(self, info: dict) -> str:
        since = info.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
        return f"process {info.get('pid', '?')} on {info.get('host', '?')} (since {when})"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _busy(self, info: dict) -> InputError:
        return InputError(
            f"{self.output} is being written by another run ({self._owner_text(info)}); wait "
            f"for it to finish or stop it; if no such run exists, delete {self.path}"
        )

    def _record(self, fd: int) -> None:
        info = {"host": this_host(), "pid": os.getpid(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode())

    # -- acquire / release -----------------------------------------------------------------
    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # retried only while another process removes its lock file
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = self._flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if locked is False:
                info = self._read()
                os.close(fd)
                raise self._busy(info)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file between our open and lock
                os.close(fd)
                continue
            if locked is None and not self._pid_lock_free():
                info = self._read()
                os.close(fd)
                raise self._busy(info)
            self._record(fd)
            self._fd = fd
            return self
        raise InputError(f"could not lock {self.path}; try again")

    def _flock(self, fd: int) -> bool | None:
        """True: locked; False: held by another process; None: no flock here."""
        try:
            import fcntl
        except ImportError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return False
            return None  # ENOLCK / EOPNOTSUPP: a file system without flock
        return True

    def _pid_lock_free(self) -> bool:
        """Without flock: free when the file names no live owner on this host."""
        info = self._read()
        if not info:
            return True
        pid, host = int(info.get("pid", 0) or 0), info.get("host")
        if host == this_host() and (pid == os.getpid() or not process_alive(pid)):
            if pid != os.getpid():
                _log.warning("taking over %s: %s is gone", self.path, self._owner_text(info))
            return True
        return False

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
