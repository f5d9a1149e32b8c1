"""Atomic file writes shared by checkpoints and recorder exports."""
from __future__ import annotations

import os
import secrets


TMP_SUFFIX = ".tmp"


def atomic_write(path, mode: str, write, **open_kwargs) -> None:
    """Write ``path`` through a temporary file in the same folder, flushed, ``fsync``-ed and
    renamed onto it with :func:`os.replace`, then ``fsync`` the folder so the rename is durable
    too: the file at ``path`` is either the previous one or the complete new one, never a
    partial write, also after a crash or power loss; the temporary file (``.NAME.PID.HEX.tmp``)
    is removed on failure.  ``write(f)`` writes the content; ``mode`` is ``"xb"`` or ``"x"``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}."
                               f"{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, mode, **open_kwargs) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_folder(folder)


def fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX); best effort, skipped where unsupported."""
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


def remove_stale_temporaries(folder: str) -> int:
    """Remove the temporary files :func:`atomic_write` leaves in ``folder`` when its process is
    killed between writing and renaming; returns how many.  Only for a folder the caller owns
    exclusively (a lock), so no other writer's file is taken."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if name.startswith(".") and name.endswith(TMP_SUFFIX):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except OSError:
                pass
    return removed
