"""The audit chain detects tampering, and the database refuses edits of append-only tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.audit import (
    AuditRecord,
    ChainVerification,
    Outcome,
    record_hash,
    verify_chain,
)
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import PermissionDenied
from finfactory.kernel.money import Money, from_minor
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import BalanceBoundExceeded
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds
from tests.conftest import make_storage

TENANT, OTHER = "tenant-a", "tenant-b"


def _ctx(
    tenant: str = TENANT, roles: frozenset[str] = frozenset({"admin"}), actor: str = "ops-1"
) -> RequestContext:
    return RequestContext(tenant_id=tenant, actor=Actor(actor, ActorKind.USER, roles))


def php(minor: int) -> Money:
    return from_minor(minor, "PHP")


def transfer(reference: str, debit: str, credit: str, minor: int) -> c.PostJournal:
    return c.PostJournal(
        reference=reference,
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=php(minor)),
            c.Leg(account_id=credit, direction="credit", amount=php(minor)),
        ],
    )


def records(storage: Storage, tenant: str = TENANT) -> list[AuditRecord]:
    with storage.read() as uow:
        return list(uow.kernel.audit_records(tenant))


def verify(storage: Storage, tenant: str = TENANT) -> ChainVerification:
    with storage.read() as uow:
        return verify_chain(uow.kernel.audit_records(tenant), uow.kernel.audit_head(tenant))


def outbox_size(storage: Storage) -> int:
    with storage.read() as uow:
        return len(uow.kernel.read_events(0, 1_000_000))


@attrs.frozen
class Setup:
    ledger: LedgerService
    storage: Storage
    cash: str
    wallet: str


def run_commands(storage: Storage) -> Setup:
    """Eight audited commands for TENANT (one denied, one rejected) and two for OTHER."""
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    ctx = _ctx()
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset")).id
    wallet = ledger.open_account(
        ctx,
        c.OpenAccount(
            code="wallet",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    ).id
    ledger.post_journal(ctx, transfer("fund", cash, wallet, 5_000))
    with pytest.raises(PermissionDenied):
        ledger.post_journal(
            _ctx(roles=frozenset({"ledger.viewer"}), actor="viewer-9"),
            transfer("sneaky", cash, wallet, 1),
        )
    with pytest.raises(BalanceBoundExceeded):
        ledger.post_journal(ctx, transfer("overdraw", wallet, cash, 9_999))
    hold = ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="h", debit_account_id=wallet, credit_account_id=cash, amount=php(100)
        ),
    )
    ledger.void_hold(ctx, c.VoidHold(hold_id=hold.id))
    ledger.change_account_status(ctx, c.ChangeAccountStatus(account_id=wallet, status="frozen"))
    other = _ctx(OTHER)
    a = ledger.open_account(other, c.OpenAccount(code="cash", currency="PHP", type="asset"))
    ledger.change_account_status(other, c.ChangeAccountStatus(account_id=a.id, status="frozen"))
    return Setup(ledger, storage, cash, wallet)


def test_denied_command_is_audited_and_changes_nothing(storage: Storage) -> None:
    setup = run_commands(storage)
    ledger, ctx = setup.ledger, _ctx()
    ledger.change_account_status(
        ctx, c.ChangeAccountStatus(account_id=setup.wallet, status="active")
    )
    balances = (ledger.balance(ctx, setup.cash), ledger.balance(ctx, setup.wallet))
    events = outbox_size(storage)
    before = records(storage)
    viewer = _ctx(roles=frozenset({"ledger.viewer"}), actor="viewer-9")

    with pytest.raises(PermissionDenied) as denied:
        ledger.post_journal(
            viewer, transfer("sneaky-2", setup.cash, setup.wallet, 1), idempotency_key="viewer-key"
        )
    assert denied.value.details["permission"] == "ledger.journal.post"

    after = records(storage)
    assert after[:-1] == before
    last = after[-1]
    assert last.outcome is Outcome.DENIED
    assert last.action == "ledger.post_journal"
    assert last.actor_id == "viewer-9"
    assert last.sequence == before[-1].sequence + 1
    assert (ledger.balance(ctx, setup.cash), ledger.balance(ctx, setup.wallet)) == balances
    assert outbox_size(storage) == events
    assert len(ledger.statement(ctx, setup.wallet).lines) == 1
    # the denied call did not take the idempotency key: an allowed caller's request runs
    view = ledger.post_journal(
        ctx, transfer("sneaky-2", setup.cash, setup.wallet, 1), idempotency_key="viewer-key"
    )
    assert view.reference == "sneaky-2"
    assert records(storage)[-1].outcome is Outcome.SUCCEEDED
    # a denied read is audited too
    with pytest.raises(PermissionDenied):
        ledger.get_account(_ctx(roles=frozenset(), actor="nobody"), setup.cash)
    denied_read = records(storage)[-1]
    assert (denied_read.outcome, denied_read.action, denied_read.actor_id) == (
        Outcome.DENIED,
        "ledger.read",
        "nobody",
    )
    assert verify(storage).ok


# -- SQL backends ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    name = "sqlite_engine" if request.param == "sqlite" else "pg_clean"
    found: sa.Engine = request.getfixturevalue(name)
    return found


@contextmanager
def audit_log_unprotected(conn: sa.Connection, *, heads: bool = False) -> Iterator[None]:
    """Lift the append-only triggers of ff_audit_log inside ``conn``'s transaction, and with
    ``heads`` the forward-only ones of ff_audit_heads."""
    tables = ["ff_audit_log", "ff_audit_heads"] if heads else ["ff_audit_log"]
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        yield
        for table in tables:
            conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    else:
        conn.exec_driver_sql("DROP TRIGGER ff_audit_log_no_update")
        conn.exec_driver_sql("DROP TRIGGER ff_audit_log_no_delete")
        if heads:
            conn.exec_driver_sql("DROP TRIGGER ff_audit_heads_no_rewind")
        yield


def _sql_edit(conn: sa.Connection, seq: int) -> None:
    conn.execute(
        sa.text(
            "UPDATE ff_audit_log SET outcome = 'succeeded' WHERE tenant_id = :t AND sequence = :s"
        ),
        {"t": TENANT, "s": seq},
    )


def _sql_delete(conn: sa.Connection, seq: int) -> None:
    conn.execute(
        sa.text("DELETE FROM ff_audit_log WHERE tenant_id = :t AND sequence = :s"),
        {"t": TENANT, "s": seq},
    )


def _sql_swap(conn: sa.Connection, first: int, second: int) -> None:
    move = sa.text(
        "UPDATE ff_audit_log SET sequence = :new WHERE tenant_id = :t AND sequence = :old"
    )
    conn.execute(move, {"t": TENANT, "old": first, "new": -1})
    conn.execute(move, {"t": TENANT, "old": second, "new": first})
    conn.execute(move, {"t": TENANT, "old": -1, "new": second})


def _sql_rehash(conn: sa.Connection, rec: AuditRecord) -> None:
    conn.execute(
        sa.text(
            "UPDATE ff_audit_log SET reason = :r, hash = :h WHERE tenant_id = :t AND sequence = :s"
        ),
        {"t": TENANT, "s": rec.sequence, "r": rec.reason, "h": rec.hash},
    )


def _denied_sequence(recs: list[AuditRecord]) -> int:
    [seq] = [r.sequence for r in recs if r.outcome is Outcome.DENIED]
    return seq


def _forged(rec: AuditRecord) -> AuditRecord:
    """``rec`` with a new reason and a hash recomputed to match (an attacker who knows the
    hashing scheme); only the link from the next record gives it away."""
    forged = attrs.evolve(rec, reason="approved by nobody")
    return attrs.evolve(forged, hash=record_hash(forged, forged.sequence, forged.prev_hash))


TAMPERS = ["edit", "edit_and_rehash", "delete_middle", "delete_last", "swap"]


@pytest.mark.parametrize("tamper", TAMPERS)
def test_sql_tampering_is_detected_at_the_right_record(engine: sa.Engine, tamper: str) -> None:
    storage = SqlStorage(engine)
    run_commands(storage)
    recs = records(storage)
    assert [r.sequence for r in recs] == list(range(1, 9))
    assert verify(storage).ok
    assert verify(storage, OTHER).ok
    denied = _denied_sequence(recs)
    assert 1 < denied < len(recs)

    with engine.begin() as conn, audit_log_unprotected(conn):
        if tamper == "edit":
            _sql_edit(conn, denied)
            expected = denied
        elif tamper == "edit_and_rehash":
            _sql_rehash(conn, _forged(recs[denied - 1]))
            expected = denied + 1
        elif tamper == "delete_middle":
            _sql_delete(conn, 5)
            expected = 5
        elif tamper == "delete_last":
            _sql_delete(conn, len(recs))
            expected = len(recs)
        else:
            _sql_swap(conn, 3, 6)
            expected = 3

    result = verify(storage)
    assert not result.ok
    assert result.broken_at == expected, result
    assert verify(storage, OTHER).ok  # another tenant's chain is untouched


@pytest.mark.parametrize("tamper", TAMPERS)
def test_memory_tampering_is_detected_at_the_right_record(tamper: str) -> None:
    storage = MemoryStorage()
    run_commands(storage)
    table = storage.db.tables["ff_audit_log"]
    recs = records(storage)
    assert verify(storage).ok
    denied = _denied_sequence(recs)

    if tamper == "edit":
        table[(TENANT, denied)] = attrs.evolve(recs[denied - 1], outcome=Outcome.SUCCEEDED)
        expected = denied
    elif tamper == "edit_and_rehash":
        table[(TENANT, denied)] = _forged(recs[denied - 1])
        expected = denied + 1
    elif tamper == "delete_middle":
        del table[(TENANT, 5)]
        expected = 5
    elif tamper == "delete_last":
        del table[(TENANT, len(recs))]
        expected = len(recs)
    else:
        table[(TENANT, 3)] = attrs.evolve(recs[5], sequence=3)
        table[(TENANT, 6)] = attrs.evolve(recs[2], sequence=6)
        expected = 3

    result = verify(storage)
    assert not result.ok
    assert result.broken_at == expected, result
    assert verify(storage, OTHER).ok


def _refusals() -> list[tuple[str, str]]:
    return [
        ("ff_audit_log", "UPDATE ff_audit_log SET reason = 'x'"),
        ("ff_audit_log", "DELETE FROM ff_audit_log"),
        ("ledger_entries", "UPDATE ledger_entries SET amount = amount + 1"),
        ("ledger_entries", "DELETE FROM ledger_entries"),
        ("ledger_journals", "UPDATE ledger_journals SET description = 'rewritten'"),
        ("ledger_journals", "DELETE FROM ledger_journals"),
    ]


@pytest.mark.parametrize(("table", "statement"), _refusals())
def test_database_refuses_to_change_append_only_tables(
    engine: sa.Engine, table: str, statement: str
) -> None:
    storage = SqlStorage(engine)
    setup = run_commands(storage)
    count_sql = sa.text(f"SELECT count(*) FROM {table}")
    with engine.connect() as conn:
        rows_before = conn.execute(count_sql).scalar_one()
    assert rows_before > 0
    wallet_before = setup.ledger.statement(_ctx(), setup.wallet)

    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text(statement))

    with engine.connect() as conn:
        assert conn.execute(count_sql).scalar_one() == rows_before
    assert setup.ledger.statement(_ctx(), setup.wallet) == wallet_before
    assert verify(storage).ok


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_audit_head_cannot_be_rewound_or_deleted(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Truncating the chain needs the head moved back; the database refuses that."""
    storage = make_storage(backend, request)
    assert isinstance(storage, SqlStorage)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    ctx = RequestContext("t", Actor("ops", ActorKind.USER, frozenset({"admin"})))
    ledger.open_account(ctx, c.OpenAccount(code="a", currency="PHP", type="asset"))
    ledger.open_account(ctx, c.OpenAccount(code="b", currency="PHP", type="asset"))
    for statement in (
        "UPDATE ff_audit_heads SET last_sequence = last_sequence - 1",
        "DELETE FROM ff_audit_heads",
    ):
        with pytest.raises(sa.exc.DBAPIError), storage.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    with storage.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE ff_audit_heads SET last_sequence = last_sequence + 0")


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE ff_audit_log",
        "TRUNCATE ff_audit_heads",
        "TRUNCATE ff_audit_log, ff_audit_heads",
        "TRUNCATE ledger_entries",
        "TRUNCATE ledger_journals CASCADE",
        "TRUNCATE ledger_accounts CASCADE",  # reaches the entries through their foreign key
    ],
)
def test_postgres_refuses_to_truncate_append_only_tables(
    pg_clean: sa.Engine, statement: str
) -> None:
    """Row triggers do not fire on TRUNCATE: without statement triggers it emptied the chain
    and its heads, and every tenant's (now empty) chain verified."""
    storage = SqlStorage(pg_clean)
    run_commands(storage)
    tables = ("ff_audit_log", "ff_audit_heads", "ledger_journals", "ledger_entries")

    def counts() -> list[int]:
        with pg_clean.connect() as conn:
            return [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables]

    before = counts()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), pg_clean.begin() as conn:
        conn.exec_driver_sql(statement)
    assert counts() == before
    assert verify(storage).ok
    assert len(records(storage)) == 8
