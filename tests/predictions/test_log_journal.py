"""The journal's checkpoints: a segment is kept until every record in it is committed (or
spilled), then zeroed, kept as the spare the next segment will be (or deleted when there is
one); the current one is zeroed. A segment is a file of ``segment_bytes``
(zeros past its last line), holding the lines that fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.predictions.journal import Journal
from modelserve.predictions.spill import SpillStore


def segments(directory: Path) -> dict[str, list[bytes]]:
    return {
        p.name.split(".")[1]: p.read_bytes().rstrip(b"\x00").splitlines()
        for p in directory.glob("*.journal")
    }


@pytest.mark.parametrize("fsync_ms", [0, 1])
def test_a_segment_is_dropped_once_every_record_in_it_is_done(
    tmp_path: Path, fsync_ms: int
) -> None:
    spill = SpillStore(tmp_path)
    journal = Journal(spill, fsync_ms=fsync_ms, segment_bytes=16, spares=1)
    journal.open()
    numbers = [journal.append(b'{"n":%d}\n' % n) for n in range(5)]  # 8 bytes: 2 fit a segment
    assert numbers == [0, 1, 2, 3, 4]
    assert segments(tmp_path) == {
        "0": [b'{"n":0}', b'{"n":1}'],
        "1": [b'{"n":2}', b'{"n":3}'],
        "2": [b'{"n":4}'],
    }
    journal.done([1, 2])  # out of order, as a spill and a batch may finish
    assert set(segments(tmp_path)) == {"0", "1", "2"}
    assert journal.pending == 3
    journal.done([0])
    # Done: zeroed and kept, the spare the next segment will be (its pages stay mapped).
    assert segments(tmp_path) == {"0": [], "1": [b'{"n":2}', b'{"n":3}'], "2": [b'{"n":4}']}
    journal.done([4, 3])
    assert segments(tmp_path) == {"0": [], "2": []}  # one spare kept; the current, zeroed
    assert (tmp_path / next(p.name for p in tmp_path.glob("*.2.journal"))).stat().st_size == 16
    assert [journal.append(b'{"n":%d}\n' % n) for n in (5, 6, 7)] == [5, 6, 7]
    # The spare became the next segment, under the next number.
    assert segments(tmp_path) == {"2": [b'{"n":5}', b'{"n":6}'], "3": [b'{"n":7}']}
    journal.done([5, 6, 7])
    assert segments(tmp_path) == {"2": [], "3": []}
    assert journal.append(b'{"n":8}\n') == 8
    journal.close()  # one record not done: kept for the next process, with the owner's lock
    spill.close()
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".journal", ".lock"]


def test_segments_done_together_are_all_kept_for_the_next_ones(tmp_path: Path) -> None:
    """When the writer is several segments behind, every segment it finishes is kept (up to
    ``spares``), zeroed, and the next segments are those very files (their pages mapped), not
    fresh ones; past ``spares`` a done segment is deleted."""
    spill = SpillStore(tmp_path)
    journal = Journal(spill, segment_bytes=16, spares=2)
    journal.open()
    numbers = [journal.append(b'{"n":%d}\n' % n) for n in range(7)]  # segments 0-3
    inodes = {p.name.split(".")[1]: p.stat().st_ino for p in tmp_path.glob("*.journal")}
    journal.done(numbers[:6])  # 0, 1 and 2 finish at once; 3 still holds a record
    assert segments(tmp_path) == {"0": [], "1": [], "3": [b'{"n":6}']}
    journal.append(b'{"n":7}\n')
    [journal.append(b'{"n":%d}\n' % n) for n in (8, 9, 10)]  # segments 4 and 5: the spares
    assert set(segments(tmp_path)) == {"3", "4", "5"}
    reused = {p.name.split(".")[1]: p.stat().st_ino for p in tmp_path.glob("*.journal")}
    assert {reused["4"], reused["5"]} == {inodes["0"], inodes["1"]}
    assert segments(tmp_path)["5"] == [b'{"n":10}']
    journal.done(range(6, 11))
    journal.close()
    spill.close()
    assert list(tmp_path.iterdir()) == []


def test_a_closed_journal_with_every_record_done_leaves_nothing(tmp_path: Path) -> None:
    spill = SpillStore(tmp_path)
    journal = Journal(spill)
    journal.open()
    journal.done([journal.append(b"{}\n")])
    journal.close()
    spill.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="closed"):
        journal.append(b"{}\n")


def test_a_line_longer_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    spill = SpillStore(tmp_path)
    journal = Journal(spill, segment_bytes=16)
    journal.open()
    long_line = b'{"n":"' + b"x" * 40 + b'"}\n'
    journal.append(b'{"n":0}\n')
    journal.append(long_line)
    journal.append(b'{"n":2}\n')
    assert segments(tmp_path) == {"0": [b'{"n":0}'], "1": [long_line[:-1]], "2": [b'{"n":2}']}
    journal.done([0, 1, 2])
    journal.close()
    spill.close()
    assert list(tmp_path.iterdir()) == []
