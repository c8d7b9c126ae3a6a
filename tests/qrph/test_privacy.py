"""No personal data of payers enters QR Ph, and a person's name on a P2P code stays where it
must be: on the code (it is printed in the payload) and in the answers about the code.

The database is scanned row by row, every table and every column, after a flow that goes
through every command, with idempotency keys, duplicates and failures.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.errors import ValidationError
from finfactory.primitives.qrph import PaymentView, PayQr, SwitchPayment
from tests.qrph.conftest import dynamic_qr, make_env, php, static_qr

PERSON = "JUAN DELA CRUZ"  # the name a P2P code shows: a person's


def test_a_switch_notification_cannot_bring_the_payers_name() -> None:
    notice = {
        "network_reference": "IP-1",
        "qr_id": "qr-1",
        "amount": {"amount": "1.00", "currency": "PHP"},
        "payer_institution": "GXCHPHM2XXX",
    }
    assert SwitchPayment.model_validate(notice).payer_institution == "GXCHPHM2XXX"
    with pytest.raises(ValidationError) as err:
        SwitchPayment.model_validate({**notice, "payer_name": "Maria Clara"})
    assert "payer_name" in str(err.value.details)
    assert not any("name" in field for field in PaymentView.model_fields)


def _where(engine: sa.Engine, text: str) -> set[tuple[str, str]]:
    """(table, column) of every stored value that contains ``text``."""
    found = set()
    with engine.connect() as conn:
        for table in _tables(conn):
            for row in conn.execute(sa.select(table)):
                for column, value in row._mapping.items():
                    if text in str(value):
                        found.add((table.name, str(column)))
    return found


def _tables(conn: sa.Connection) -> list[sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(conn)
    return list(metadata.tables.values())


def test_stored_rows_hold_the_p2p_name_only_on_the_code(sql_storage: SqlStorage) -> None:
    env = make_env(sql_storage)
    person = env.service.generate_static_qr(
        env.ctx,
        static_qr("person-1", kind="p2p", merchant_name=PERSON),
        idempotency_key="qr-person",
    )
    shop = env.service.generate_dynamic_qr(
        env.ctx, dynamic_qr("40.00", expires_in_seconds=60), idempotency_key="qr-shop"
    )
    note = SwitchPayment(
        network_reference="IP-1",
        payload=person.payload,
        amount=php("12.00"),
        payer_institution="GXCHPHM2XXX",
    )
    env.service.receive_switch_payment(env.switch.ctx, note, idempotency_key="ip-1")
    env.service.receive_switch_payment(env.switch.ctx, note)  # a duplicate
    env.service.pay_qr(
        env.ctx,
        PayQr(payload=person.payload, payer_wallet_id="payer-1", amount=php("5.00")),
        idempotency_key="tap-1",
    )
    env.clock.advance(timedelta(minutes=5))
    failed = env.switch.pay(shop.payload, php("40.00"))
    assert failed.failure_reason is not None

    assert _where(sql_storage.engine, PERSON) == {
        ("qrph_codes", "merchant_name"),
        ("qrph_codes", "payload"),
        # the answer to the idempotent generate command, replayed to the same caller
        ("ff_idempotency", "response"),
    }
    # Events and audit records carry neither names nor payloads.
    assert _where(sql_storage.engine, person.payload[:40]) == {
        ("qrph_codes", "payload"),
        ("ff_idempotency", "response"),
    }
    with sql_storage.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("qrph_payments")}
    assert not any("name" in column for column in columns)


def test_the_payer_institution_is_a_code_not_free_text() -> None:
    with pytest.raises(ValidationError):
        SwitchPayment(
            network_reference="IP-2", qr_id="qr-1", amount=php("1.00"), payer_institution="J Cruz"
        )
