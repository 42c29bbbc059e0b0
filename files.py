"""Files written whole or not at all.

A crash, a kill -9 or a second run at the same moment leaves a file as it was before, or as
it is after: never half written. Write to the temporary path `written` gives; it takes the
real name only once the block ends without error.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "table.csv"
>>> with written(path) as partial:
...     _ = partial.write_text("a,b\\n1,2\\n")
...     path.exists()
False
>>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
('a,b\\n1,2\\n', ['table.csv'])
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def owner() -> str:
    """This process, as written into the names of its temporary files: host and pid."""
    return f"{socket.gethostname()}~{os.getpid()}"


def gone(owner_: str) -> bool:
    """Whether the process `owner` names has provably ended: it ran on this machine, and no
    process has its pid. Elsewhere, or on a system that cannot tell, it may still run.

    >>> gone(owner()), gone("another-host~1")
    (False, False)
    """
    host, _, pid = owner_.rpartition("~")
    if host != socket.gethostname() or os.name != "posix" or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def remove_stale(folder: Path) -> None:
    """Remove what ended processes left in `folder`: the files and folders whose names start
    with their `owner()` and a "~" (a process killed before it could clean up)."""
    for stale in folder.glob("*~*~*"):
        if gone(stale.name.rpartition("~")[0]):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextmanager
def written(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to, renamed onto `path` at the end of the
    block (and removed if the block fails). Each call gets its own name, so two runs writing
    the same file at once never share one: the last to finish wins. Leftovers of killed
    writers of the same file are removed first; the file gets the mode that the process's
    umask gives any new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f".{path.name}~"
    for stale in path.parent.glob(f"{glob.escape(head)}*.partial"):
        if gone(stale.name[len(head):].removesuffix(".partial").rpartition("~")[0]):
            stale.unlink(missing_ok=True)
    partial = path.parent / f".{path.name}~{owner()}~{secrets.token_hex(4)}.partial"
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def digest(*paths: str | Path) -> str:
    """A short digest of the files' contents: a cache named by the digest of the code that
    made it is never stale, as an edit of that code names a new one."""
    hashed = hashlib.sha1()
    for path in paths:
        hashed.update(Path(path).read_bytes())
    return hashed.hexdigest()[:10]
