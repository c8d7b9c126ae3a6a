"""Property-based API test: schemathesis generates requests from the OpenAPI document for
every operation; no request may end in a server error.

The operations are parametrized by hand (schemathesis' own pytest plugin does not load under
this pytest); each one gets its own Hypothesis run against one app on a fresh SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from examples.ewallet.api import create_app
from examples.ewallet.composition import Ewallet, build
from examples.ewallet.scenario import TENANT, token_table


def _operations(app: Any) -> dict[str, Any]:
    """The document's operations by "METHOD /path"."""
    found = {}
    for result in schemathesis.openapi.from_asgi("/openapi.json", app).get_all_operations():
        if not isinstance(result, Ok):
            raise AssertionError(f"the OpenAPI document has an invalid operation: {result!r}")
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ewallet]:
    built = build(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    built.bootstrap_tenant(TENANT)
    yield built
    built.engine.dispose()


@pytest.fixture(scope="module")
def operations(services: Ewallet) -> dict[str, Any]:
    return _operations(create_app(services, token_table()))


def _operation_ids() -> list[str]:
    # The document's shape does not depend on the database, so an in-memory one lists it.
    return list(_operations(create_app(build("sqlite://"), token_table())))


@pytest.mark.parametrize("operation_id", _operation_ids())
def test_no_server_error(operations: dict[str, Any], operation_id: str) -> None:
    operation = operations[operation_id]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers={"Authorization": "Bearer ops-token"},
            checks=[schemathesis.checks.not_a_server_error],
        )

    run()


def test_every_operation_is_fuzzed() -> None:
    """A route added without a schema (or a broken document) would silently escape."""
    ids = _operation_ids()
    assert len(ids) >= 20
    assert "POST /v1/qr/payments" in ids
    assert "POST /v1/transfers" in ids
