"""Files written whole: with the umask's mode, and no leftovers of killed writers."""

import os
import signal
import subprocess
import sys

import pytest

from files import gone, owner, written


def test_a_written_file_has_the_mode_the_umask_gives(tmp_path):
    before = os.umask(0o022)
    try:
        with written(tmp_path / "shared.csv") as partial:
            partial.write_text("a\n")
        os.umask(0o002)
        with written(tmp_path / "group.csv") as partial:
            partial.write_text("a\n")
    finally:
        os.umask(before)
    assert (tmp_path / "shared.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "group.csv").stat().st_mode & 0o777 == 0o664


@pytest.mark.skipif(os.name != "posix", reason="a dead process is told by its pid on POSIX")
def test_a_killed_writers_partial_goes_at_the_next_write(tmp_path):
    """kill -9 in the middle of a write leaves a .partial; the next write of the same file
    removes it, and leaves a live writer's alone."""
    target = tmp_path / "big.bin"
    script = ("import sys, time; from files import written\n"
              f"with written({str(target)!r}) as p:\n"
              "    p.write_bytes(b'x' * 1000); print('writing', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.stdout.readline().strip() == b"writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    left = list(tmp_path.glob("*.partial"))
    assert len(left) == 1 and not target.exists()
    live = tmp_path / f".big.bin~{owner()}~live.partial"  # this process: alive
    live.write_bytes(b"")
    with written(target) as partial:
        partial.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(tmp_path.glob("*.partial")) == [live]


def test_only_a_process_of_this_machine_can_be_known_gone():
    assert not gone(owner()) and not gone("elsewhere~1") and not gone("nonsense")
