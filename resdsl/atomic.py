"""Write artifacts under a temporary name and rename, so a failure leaves no partial file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_paths(*paths: str) -> Iterator[tuple[str, ...]]:
    """Temporary paths beside each of ``paths``, renamed into place together once all are written.

    A failure while writing removes every temporary; a failure while renaming (say, the second
    target is a directory) also removes the files already renamed, so an artifact and its
    sidecar appear together or not at all.
    """
    with contextlib.ExitStack() as stack:
        temps = []
        for path in paths:
            directory = os.path.dirname(os.path.abspath(path)) or "."
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
            os.close(fd)
            stack.callback(lambda t=tmp: os.path.exists(t) and os.remove(t))
            temps.append(tmp)
        umask = os.umask(0)
        os.umask(umask)
        for tmp in temps:
            os.chmod(tmp, 0o666 & ~umask)
        yield tuple(temps)
        for path in paths:  # refuse before renaming anything
            if os.path.isdir(path):
                raise IsADirectoryError(21, "Is a directory", path)
        done: list[str] = []
        try:
            for tmp, path in zip(temps, paths):
                os.replace(tmp, path)
                done.append(path)
        except BaseException:
            for path in done:
                os.remove(path)
            raise


def atomic_write(path: str, data: bytes | str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
