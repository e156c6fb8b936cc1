"""Request ids: UUID version 7, time-ordered, never handed out twice (threads, forked workers)."""

from __future__ import annotations

import os
import threading
import time
import uuid

from modelserve.core.ids import new_request_id


def test_ids_are_version_7_in_time_order_and_distinct() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_request_id() for _ in range(5000)]  # several reads of the random pool
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    stamps = [i.int >> 80 for i in ids]
    assert stamps == sorted(stamps)
    assert before <= stamps[0]
    assert stamps[-1] <= after
    # the 74 random bits vary: no two ids of the same millisecond share them
    assert len({i.int & ((1 << 76) - 1) for i in ids}) == len(ids)


def test_threads_never_get_the_same_id() -> None:
    found: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def take(into: list[uuid.UUID]) -> None:
        into.extend(new_request_id() for _ in range(3000))

    threads = [threading.Thread(target=take, args=(f,)) for f in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for f in found for i in f]
    assert len(set(every)) == len(every) == 12000


def test_a_forked_worker_does_not_reuse_its_parents_random_bytes() -> None:
    new_request_id()  # the parent's pool now holds unused bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, sent to the parent
        try:
            os.write(write, b"".join(new_request_id().bytes for _ in range(50)))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = b"".join(new_request_id().bytes for _ in range(50))
    mask = (1 << 74) - 1

    def random_bits(blob: bytes) -> set[int]:
        ids = [int.from_bytes(blob[i : i + 16], "big") for i in range(0, len(blob), 16)]
        return {(i & ((1 << 62) - 1)) | ((i >> 64) & 0xFFF) << 62 & mask for i in ids}

    assert len(child) == 50 * 16
    assert not random_bits(child) & random_bits(parent)
