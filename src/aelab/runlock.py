"""Who may use a run directory right now: an advisory lock on ``RUN/.aelab.lock``.

A writer (``aelab train``, also ``--resume`` and ``--overwrite``) holds an exclusive
``flock`` for as long as it trains and writes the report; readers that write into the
folder or need a consistent view of it (``aelab report``) hold a shared one. Whoever
cannot get the lock is told who holds it, in one line (exit code 2), instead of
interleaving files with the other process. The lock belongs to an open file, so the
operating system drops it when the process ends, however it ends (SIGKILL included):
a stale lock file never blocks anyone.

The lock file exists only while someone holds it: the last holder removes it before it lets
go, and whoever locks checks afterwards that the path still names the file it locked (else
it locks the new one), the usual way to make removing a lock file safe. A writer records
its pid, host, command and start time in it.
Locks are re-entrant within one process (``aelab train`` holds the run, then writes
its report, which reads it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import RunError

LOCK_NAME = ".aelab.lock"

# realpath of the run folder -> "ex" | "sh": what this process holds (one fd per folder per process)
_held: dict[str, str] = {}


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def holder(run_dir: str | Path) -> dict:
    """What the writer holding (or last holding) the lock wrote about itself; {} when nothing readable."""
    try:
        return json.loads((Path(run_dir) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _who(info: dict) -> str:
    if not info.get("pid"):
        return "another aelab process"
    since = time.strftime("%H:%M:%S UTC", time.gmtime(info["since"])) if info.get("since") else "?"
    return f"{info.get('command', 'aelab')} (pid {info['pid']} on {info.get('host', '?')}, since {since})"


@contextlib.contextmanager
def writing(run_dir: str | Path, command: str = "aelab train") -> Iterator[None]:
    """Holds ``run_dir`` exclusively for the block; creates the folder, and removes it again when the block
    fails and leaves nothing but the lock behind (bad input must not leave an empty run folder)."""
    run_dir = Path(run_dir)
    key = _key(run_dir)
    if key in _held:  # re-entrant: the outermost block of this process releases it
        if _held[key] != "ex":
            raise RunError(f"{run_dir}: this process reads the run and cannot also write it")
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    try:
        fd = _open_locked(lock, fcntl.LOCK_EX)
    except BlockingIOError:
        info = holder(run_dir)
        if _only_readers(lock):
            raise RunError(
                f"{run_dir}: another aelab process (such as `aelab report`) is reading this run; "
                "try again when it has finished"
            ) from None
        raise RunError(f"{run_dir}: in use by {_who(info)}; wait for it to finish or choose another --out") from None
    except BaseException:
        if created:
            _remove_if_empty(run_dir)
        raise
    os.ftruncate(fd, 0)  # a holder killed with SIGKILL left its file and its words behind
    os.pwrite(
        fd,
        json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
        ).encode()
        + b"\n",
        0,
    )
    _held[key] = "ex"
    ok = False
    try:
        yield
        ok = True
    finally:
        del _held[key]
        _release(fd, lock)
        if created and not ok:
            _remove_if_empty(run_dir)  # bad input found after the lock was taken: no empty run folder


def _open_locked(lock: Path, op: int) -> int:
    """An fd holding flock ``op`` (non-blocking) on the file ``lock`` names now; BlockingIOError if held."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file between our open and our flock: lock the new one


def _release(fd: int, lock: Path) -> None:
    """Removes the lock file when nobody else holds it (a reader may share it), then lets go."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(lock)
    except OSError:  # others hold it, or the folder is read-only: leave the file
        pass
    os.close(fd)


def _only_readers(lock: Path) -> bool:
    """True when the lock we could not take exclusively is held shared (readers), not by a writer."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _remove_if_empty(run_dir: Path) -> None:
    try:
        run_dir.rmdir()
    except OSError:
        pass


@contextlib.contextmanager
def reading(*run_dirs: str | Path) -> Iterator[None]:
    """Holds each existing run folder shared for the block: no writer can start, replace or resume it meanwhile.

    A folder being written is refused in one line naming the writer. A folder where the lock
    file cannot be made (read-only media, someone else's run) is read without a lock.
    """
    with contextlib.ExitStack() as stack:
        for d in dict.fromkeys(Path(r) for r in run_dirs):
            stack.enter_context(_reading_one(d))
        yield


@contextlib.contextmanager
def _reading_one(run_dir: Path) -> Iterator[None]:
    key = _key(run_dir)
    if key in _held:  # this process holds it already (as writer or reader); its outermost block releases it
        yield
        return
    if not run_dir.is_dir():
        yield  # the command's own check names the missing folder
        return
    lock = run_dir / LOCK_NAME
    try:
        fd = _open_locked(lock, fcntl.LOCK_SH)
    except BlockingIOError:
        raise RunError(f"{run_dir}: being written by {_who(holder(run_dir))}; try again when it has finished") from None
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        yield  # read-only media or someone else's run: read it without a lock
        return
    _held[key] = "sh"
    try:
        yield
    finally:
        del _held[key]
        _release(fd, lock)
