"""Every regular expression in the project runs in linear time, on any text.

The patterns are found in the sources, not listed by hand: each call of `re.compile`,
`re.search` and the like, in every module and benchmark, is read with its pattern and flags,
so a pattern added later is timed too. Each is then run over 100 KB of text made to make a
backtracking engine stall: long runs of digits, spaces, dots, commas, quotes, "1.1.1...",
letters and digits, alone and after each word the pattern looks for. Linear work on 100 KB is
a few milliseconds; the bound is a hundred times that, and a quadratic pattern takes minutes.
"""

import ast
import re
import time
from collections import deque
from pathlib import Path

import pytest
from project import ROOT, modules

CALLS = {"compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn",
         "split"}
FILLERS = ["9", " ", ".", ",", "1.", "1,", "12,345", "a1", "-", "$", "$ ", "9 ", "\\\"", '"',
           "\n", "\t", "a", "é", "[", "{", "Weight "]
SIZE = 100_000
SECONDS = 0.5  # for 100 KB; a tenth of it for 10 KB, tried first so that a bad pattern fails fast


def sources() -> list[Path]:
    return [ROOT / f"{name}.py" for name in modules()] + sorted(ROOT.glob("benchmarks/*.py"))


def constant(node: ast.expr, names: dict[str, ast.expr], where: str):
    """The value of a pattern or flags expression made of literals, `+`, `|`, re's flags and
    module-level names bound to such expressions."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.BitOr)):
        left, right = (constant(side, names, where) for side in (node.left, node.right))
        return left + right if isinstance(node.op, ast.Add) else left | right
    if isinstance(node, ast.Name) and node.id in names:
        return constant(names[node.id], names, where)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == "re":
        return getattr(re, node.attr)
    raise AssertionError(f"{where}: write the pattern as a literal (or names bound to "
                         "literals) so that this test can time it")


def patterns_in(path: Path) -> list[tuple[str, re.Pattern]]:
    """(file:line, compiled pattern) of every call of re's functions in one source file."""
    tree = ast.parse(path.read_text())
    names = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported = [a for a in node.names if a.name == "re" or getattr(node, "module", "")
                        == "re"]
            assert all(a.asname is None and a.name == "re" for a in imported), (
                f"{path.name}:{node.lineno}: use re's functions as re.<name>, for this test")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                and node.func.attr in CALLS):
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        flags = [k.value for k in node.keywords if k.arg == "flags"]
        if node.func.attr == "compile":
            flags += node.args[1:]
        else:
            assert len(node.args) <= {"sub": 3, "subn": 3, "split": 3}.get(node.func.attr, 2), (
                f"{where}: pass flags by keyword")
        found.append((where, re.compile(constant(node.args[0], names, where),
                                        constant(flags[0], names, where) if flags else 0)))
    return found


PATTERNS = [found for path in sources() for found in patterns_in(path)]


def texts(pattern: re.Pattern, size: int) -> list[str | bytes]:
    """Texts of `size` characters built to make `pattern` backtrack: each filler repeated,
    between a digit and a letter, and after each word the pattern names, once and again."""
    source = pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode()
    words = set(re.findall(r"[A-Za-z]{2,}", re.sub(r"\\.", " ", source)))
    made = []
    for filler in FILLERS:
        run = filler * (size // len(filler))
        made += [run, f"1{run[2:]}x"]
        for word in sorted(words):
            unit = f"{word} {filler * 50}"
            made += [f"{word} {run}"[:size], (unit * (size // len(unit) + 1))[:size]]
    return [t.encode() for t in made] if isinstance(pattern.pattern, bytes) else made


def seconds(use, limit: float) -> float:
    """How long `use()` takes: the best of three tries when one is over `limit`, since a busy
    machine can stall any one run, but cannot make a linear pattern slow three times."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        use()
        best = min(best, time.perf_counter() - start)
        if best < limit:
            return best
    return best


def slowest(pattern: re.Pattern, size: int, limit: float) -> tuple[float, str]:
    """The longest time a search through, or a full match of, one of the texts took; the
    first over `limit` ends the search."""
    worst = (0.0, "")
    for text in texts(pattern, size):
        for use in (lambda t=text: deque(pattern.finditer(t), maxlen=0),
                    lambda t=text: pattern.fullmatch(t)):
            worst = max(worst, (seconds(use, limit), repr(text[:24])))
            if worst[0] >= limit:
                return worst
    return worst


def test_every_pattern_is_found():
    found = {where.split(":")[0] for where, _ in PATTERNS}
    assert {"items.py", "features.py", "chat.py", "loaders.py"} <= found


@pytest.mark.parametrize("where, pattern", PATTERNS, ids=[where for where, _ in PATTERNS])
def test_a_pattern_takes_linear_time_on_hostile_text(where, pattern):
    for size in (SIZE // 10, SIZE):
        limit = SECONDS * size / SIZE
        took, text = slowest(pattern, size, limit)
        assert took < limit, (
            f"{where} {pattern.pattern!r} took {took:.2f}s on {size:,} characters of "
            f"{text}...: a pattern must not backtrack over what it already read")
