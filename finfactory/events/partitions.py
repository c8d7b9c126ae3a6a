"""Relay partitions: every aggregate maps to one of a fixed number of partitions.

A relay publishes one partition at a time, in position order, so an aggregate's events are
published in their sequence order even when several relay processes share the work.
"""

from __future__ import annotations

import zlib

__all__ = [
    "RELAY_PARTITIONS",
    "partition_of",
]


RELAY_PARTITIONS = 64


def partition_of(aggregate_type: str, aggregate_id: str) -> int:
    return zlib.crc32(f"{aggregate_type}:{aggregate_id}".encode()) % RELAY_PARTITIONS
