"""Each public subpackage exports a curated, complete ``__all__``."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest
from pydantic import BaseModel

from finfactory.kernel.errors import FinFactoryError

PUBLIC = [
    "finfactory.kernel",
    "finfactory.events",
    "finfactory.events.cloudevents",
    "finfactory.events.dispatch",
    "finfactory.events.inbox",
    "finfactory.events.partitions",
    "finfactory.events.publishing",
    "finfactory.events.relay",
    "finfactory.adapters.sqlalchemy",
    "finfactory.adapters.nats",
    "finfactory.adapters.kafka",
    "finfactory.primitives.ledger",
    "finfactory.primitives.identity",
    "finfactory.primitives.wallet",
    "finfactory.primitives.qrph",
    "finfactory.primitives.qrph.emv",
    "finfactory.testing",
    "finfactory.testing.brokers",
    "finfactory.testing.kyc",
    "finfactory.testing.qrph",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.{symbol} is listed but missing"


def _defined_in(module: ModuleType, base: type) -> set[str]:
    return {
        n
        for n, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, base)
        and obj.__module__ == module.__name__
        and not n.startswith("_")
    }


def test_kernel_exports_every_error() -> None:
    kernel = importlib.import_module("finfactory.kernel")
    errors = importlib.import_module("finfactory.kernel.errors")
    assert _defined_in(errors, FinFactoryError) <= set(kernel.__all__)


def test_ledger_exports_every_error_command_and_result() -> None:
    ledger = importlib.import_module("finfactory.primitives.ledger")
    errors = importlib.import_module("finfactory.primitives.ledger.errors")
    commands = importlib.import_module("finfactory.primitives.ledger.commands")
    exported = set(ledger.__all__)
    assert _defined_in(errors, FinFactoryError) <= exported
    assert _defined_in(commands, BaseModel) <= exported
    for name in ("LedgerService", "LedgerSettings", "LedgerStore", "events"):
        assert name in exported


@pytest.mark.parametrize(
    ("package", "service"),
    [
        ("identity", "IdentityService"),
        ("wallet", "WalletService"),
        ("qrph", "QrPaymentService"),
    ],
)
def test_primitive_exports_every_error_command_and_result(package: str, service: str) -> None:
    module = importlib.import_module(f"finfactory.primitives.{package}")
    exported = set(module.__all__)
    errors = importlib.import_module(f"finfactory.primitives.{package}.errors")
    commands = importlib.import_module(f"finfactory.primitives.{package}.commands")
    assert _defined_in(errors, FinFactoryError) <= exported
    assert _defined_in(commands, BaseModel) <= exported
    assert {service, "events"} <= exported


def test_error_codes_are_unique_and_stable_shaped() -> None:
    from finfactory.events.catalog import load_all_primitives

    load_all_primitives()

    seen: dict[str, str] = {}

    def walk(cls: type[FinFactoryError]) -> None:
        for sub in cls.__subclasses__():
            if "code" in sub.__dict__:
                assert sub.code not in seen, f"{sub.code} used by {seen.get(sub.code)}"
                seen[sub.code] = sub.__name__
                assert sub.code.replace(".", "_").replace("_", "").isalnum()
                assert sub.code == sub.code.lower()
            walk(sub)

    walk(FinFactoryError)
    assert "ledger.insufficient_funds" in seen
