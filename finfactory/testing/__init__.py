"""Public test support: fakes for every port, deterministic clock and ids.

Downstream teams use these in their own unit tests; FinFactory's tests use them too.
"""

from finfactory.adapters.memory import MemoryDatabase, MemoryStorage, MemoryUnitOfWork
from finfactory.kernel.authz import AllowAll
from finfactory.testing.brokers import (
    BrokerMessage,
    Delivery,
    InMemoryBroker,
    InMemoryConsumer,
    InMemoryPublisher,
    SimulatedCrash,
)
from finfactory.testing.clock import ManualClock, SequentialIds

__all__ = [
    "AllowAll",
    "BrokerMessage",
    "Delivery",
    "InMemoryBroker",
    "InMemoryConsumer",
    "InMemoryPublisher",
    "ManualClock",
    "MemoryDatabase",
    "MemoryStorage",
    "MemoryUnitOfWork",
    "SequentialIds",
    "SimulatedCrash",
]
