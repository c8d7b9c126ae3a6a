"""Migration 0011_identity on a database that already holds identity rows: the KYC case
table takes the "superseded" expiry without losing rows or the callbacks that point at them,
and a downgrade turns the new rows back into what the older code wrote."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.migrate import VERSION_TABLE, downgrade, migrate
from finfactory.adapters.sqlalchemy.storage import create_engine
from finfactory.primitives.identity.tables import customers, kyc_cases, provider_callbacks
from tests.conftest import PG_URL, _ensure_pg_database

SCHEMA = "identity_migration_0011"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    else:
        # A schema of its own in the test database: the shared schema stays at the newest
        # revision for the other tests.
        _ensure_pg_database(PG_URL)
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
        admin.dispose()
        engine = create_engine(PG_URL, connect_args={"options": f"-c search_path={SCHEMA}"})
    yield engine
    engine.dispose()
    if request.param == "postgres":
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        admin.dispose()


def _case(case_id: str, attempt: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": case_id,
        "tenant_id": "t",
        "customer_id": "c1",
        "tier": "basic",
        "attempt": attempt,
        "status": "verified",
        "provider_reference": f"ref-{case_id}",
        "in_review": False,
        "rejection": None,
        "expiry": None,
        "reason_codes": [],
        "started_at": NOW,
        "session_expires_at": NOW,
        "decided_at": NOW,
        "valid_until": None,
        "expired_at": None,
        "superseded_by": None,
    }
    row.update(values)
    return row


def _cases(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(sa.select(kyc_cases).order_by(kyc_cases.c.attempt))
    return {r.id: dict(r._mapping) for r in rows}


def _identity_revision(conn: sa.Connection) -> set[str]:
    revisions = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars()
    return {r for r in revisions if "identity" in r}


def test_upgrade_keeps_rows_and_downgrade_restores_the_old_form(engine: sa.Engine) -> None:
    migrate(engine, "0006_identity")
    with engine.begin() as conn:
        conn.execute(
            sa.insert(customers).values(
                id="c1",
                tenant_id="t",
                created_at=NOW,
                version=1,
                pii_key_version=1,
                pii_given_name="x",
                pii_family_name="x",
                pii_birth_date="x",
                kyc_blocked=False,
                risk_flags=0,
            )
        )
        conn.execute(sa.insert(kyc_cases).values(_case("k1", 1)))
        conn.execute(
            sa.insert(provider_callbacks).values(
                tenant_id="t",
                provider_reference="ref-k1",
                callback_key="key",
                kyc_id="k1",
                outcome="approved",
                effect="applied",
                received_at=NOW,
            )
        )
        before = _cases(conn)

    migrate(engine)
    with engine.begin() as conn:
        assert _identity_revision(conn) == {"0011_identity"}
        assert _cases(conn) == before
        assert conn.execute(sa.select(sa.func.count()).select_from(provider_callbacks)).scalar()
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        # What the new code writes: a superseded verification, a review that timed out.
        conn.execute(
            sa.update(kyc_cases)
            .where(kyc_cases.c.id == "k1")
            .values(
                status="expired",
                expiry="superseded",
                reason_codes=["superseded"],
                expired_at=NOW,
                superseded_by="k2",
            )
        )
        conn.execute(sa.insert(kyc_cases).values(_case("k2", 2, tier="full")))
        conn.execute(
            sa.insert(kyc_cases).values(
                _case(
                    "k3",
                    3,
                    status="expired",
                    expiry="session",
                    in_review=True,
                    reason_codes=["review_timeout"],
                    expired_at=NOW,
                    decided_at=None,
                )
            )
        )

    downgrade(engine, "0006_identity")
    with engine.begin() as conn:
        assert _identity_revision(conn) == {"0006_identity"}
        cases = _cases(conn)
        assert cases["k1"]["status"] == "verified"
        assert (cases["k1"]["expiry"], cases["k1"]["expired_at"]) == (None, None)
        assert (cases["k1"]["reason_codes"], cases["k1"]["superseded_by"]) == ([], "k2")
        assert cases["k3"]["reason_codes"] == ["session_timeout"]
    # The old constraint is back.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.update(kyc_cases)
            .where(kyc_cases.c.id == "k1")
            .values(status="expired", expiry="superseded", expired_at=NOW)
        )
    migrate(engine)
    with engine.connect() as conn:
        assert _identity_revision(conn) == {"0011_identity"}
