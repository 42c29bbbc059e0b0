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

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to, renamed onto `path` at the end of the
    block (and removed if the block fails). Each call gets its own name, so two runs writing
    the same file at once never share one: the last to finish wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                    suffix=".partial")
    os.close(handle)
    partial = Path(name)
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
