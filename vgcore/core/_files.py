"""Atomic file writes shared by checkpoints and recorder exports."""
from __future__ import annotations

import os
import secrets


def atomic_write(path, mode: str, write, **open_kwargs) -> None:
    """Write ``path`` through a temporary file in the same folder, flushed, ``fsync``-ed and
    renamed onto it with :func:`os.replace`: the file at ``path`` is either the previous one
    or the complete new one, never a partial write; the temporary file is removed on failure.
    ``write(f)`` writes the content; ``mode`` is ``"xb"`` or ``"x"``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}."
                               f"{secrets.token_hex(4)}.tmp")
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
