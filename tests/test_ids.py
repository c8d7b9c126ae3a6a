"""The production id generator: well-formed random UUIDv4 strings, never repeated, across
threads and across a fork."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from finfactory.kernel.clock import UuidGenerator


def test_ids_are_canonical_version_4_uuids() -> None:
    ids = UuidGenerator()
    for _ in range(1_000):  # several buffer refills
        text = ids.new_id()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_no_id_repeats_across_threads() -> None:
    ids = UuidGenerator()
    seen: list[list[str]] = [[] for _ in range(8)]

    def draw(slot: list[str]) -> None:
        slot.extend(ids.new_id() for _ in range(3_000))

    threads = [threading.Thread(target=draw, args=(slot,)) for slot in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for slot in seen for i in slot]
    assert len(set(everything)) == len(everything) == 24_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_its_parents_buffer() -> None:
    ids = UuidGenerator()
    ids.new_id()  # the parent now holds a buffer of unused ids
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read_end)
        os.write(write_end, ",".join(ids.new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = set(pipe.read().split(","))
    os.waitpid(pid, 0)
    parent = {ids.new_id() for _ in range(10)}
    assert len(child) == 10
    assert not child & parent
