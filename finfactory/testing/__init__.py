"""Public test support: fakes for every port, deterministic clock and ids.

Downstream teams use these in their own unit tests; FinFactory's tests use them too.
Hypothesis strategies for QR Ph payloads live in ``finfactory.testing.qrph_strategies``
(imported on its own, so this package does not need Hypothesis).
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
from finfactory.testing.kyc import FakeKycProvider, FakeSession, FakeVerdict, fixed_keyring
from finfactory.testing.qrph import FakeQrSwitch, RecordingMerchantSettlement, SettlementCall
from finfactory.testing.wallet import StaticCustomerTiers, configure_wallets

__all__ = [
    "AllowAll",
    "BrokerMessage",
    "Delivery",
    "FakeKycProvider",
    "FakeQrSwitch",
    "FakeSession",
    "FakeVerdict",
    "InMemoryBroker",
    "InMemoryConsumer",
    "InMemoryPublisher",
    "ManualClock",
    "MemoryDatabase",
    "MemoryStorage",
    "MemoryUnitOfWork",
    "RecordingMerchantSettlement",
    "SequentialIds",
    "SettlementCall",
    "SimulatedCrash",
    "StaticCustomerTiers",
    "configure_wallets",
    "fixed_keyring",
]
