"""SQLAlchemy implementation of the wallet store, on the unit of work's driver session:
reads and row locks go out at once, writes are queued and sent with the next read or at the
end of the command (one round trip for the lot on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from finfactory.adapters.sqlalchemy.driver import DriverSession, read_json, read_ts
from finfactory.primitives.wallet.model import (
    LimitOverride,
    LimitSet,
    Movement,
    MovementKind,
    Usage,
    Wallet,
    WalletKind,
    WalletStatus,
)

_WALLET_COLUMNS = (
    "id, tenant_id, customer_id, currency, kind, status, ledger_account_id, metadata,"
    " created_at, updated_at, version"
)
_USAGE_COLUMNS = (
    "tenant_id, customer_id, currency, day, day_in, day_out, month, month_in, month_out"
)
_LIMIT_COLUMNS = "balance_cap, daily_in, monthly_in, daily_out, monthly_out, per_transaction"
_OVERRIDE_COLUMNS = (
    f"tenant_id, customer_id, currency, {_LIMIT_COLUMNS}, reason, updated_by, updated_at, version"
)
_MOVEMENT_COLUMNS = (
    "id, tenant_id, reference, kind, journal_id, amount, currency, from_wallet_id,"
    " to_wallet_id, counterparty_account_id, description, posted_at"
)


def _names(columns: str) -> list[str]:
    return [c.strip() for c in columns.split(",")]


def _insert(table: str, columns: str) -> str:
    names = _names(columns)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"


_INSERT_WALLET = _insert("wallet_wallets", _WALLET_COLUMNS)
_SAVE_WALLET = (
    "UPDATE wallet_wallets SET status = :status, updated_at = :updated_at, version = :version"
    " WHERE id = :id"
)
_NEW_USAGE = (
    _insert("wallet_usage", _USAGE_COLUMNS)
    + " ON CONFLICT (tenant_id, customer_id, currency) DO NOTHING"
)
_SAVE_USAGE = (
    "UPDATE wallet_usage SET day = :day, day_in = :day_in, day_out = :day_out, month = :month,"
    " month_in = :month_in, month_out = :month_out"
    " WHERE tenant_id = :tenant_id AND customer_id = :customer_id AND currency = :currency"
)
_SAVE_OVERRIDE = (
    _insert("wallet_limit_overrides", _OVERRIDE_COLUMNS)
    + " ON CONFLICT (tenant_id, customer_id, currency) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        for c in (*_names(_LIMIT_COLUMNS), "reason", "updated_by", "updated_at", "version")
    )
)
_INSERT_MOVEMENT = _insert("wallet_movements", _MOVEMENT_COLUMNS)


def _history_sql(paged: bool) -> str:
    # One newest-first walk of each side's index, merged: an OR of the two columns can make
    # the planner walk the whole table backwards for a quiet wallet. A movement never has
    # the same wallet on both sides, so none is listed twice.
    older = " AND position < :p" if paged else ""

    def side(column: str, alias: str) -> str:
        return (
            f"SELECT * FROM (SELECT position, {_MOVEMENT_COLUMNS} FROM wallet_movements"
            f" WHERE {column} = :w AND tenant_id = :t{older}"
            f" ORDER BY position DESC LIMIT :n) AS {alias}"
        )

    merged = f"{side('from_wallet_id', 'sent')} UNION ALL {side('to_wallet_id', 'received')}"
    return f"SELECT {_MOVEMENT_COLUMNS} FROM ({merged}) AS moved ORDER BY position DESC LIMIT :n"


_HISTORY = _history_sql(paged=False)
_HISTORY_PAGE = _history_sql(paged=True)


class SqlWalletStore:
    def __init__(self, driver: DriverSession) -> None:
        self._drv = driver
        self._for_update = " FOR UPDATE" if driver.postgres else ""

    # -- wallets --------------------------------------------------------------------------
    def add_wallet(self, wallet: Wallet) -> None:
        drv = self._drv
        drv.queue(
            _INSERT_WALLET,
            [
                {
                    "id": wallet.id,
                    "tenant_id": wallet.tenant_id,
                    "customer_id": wallet.customer_id,
                    "currency": wallet.currency,
                    "kind": wallet.kind.value,
                    "status": wallet.status.value,
                    "ledger_account_id": wallet.ledger_account_id,
                    "metadata": drv.json(wallet.metadata),
                    "created_at": drv.ts(wallet.created_at),
                    "updated_at": drv.ts(wallet.updated_at),
                    "version": wallet.version,
                }
            ],
        )

    def save_wallet(self, wallet: Wallet) -> None:
        self._drv.queue(
            _SAVE_WALLET,
            [
                {
                    "id": wallet.id,
                    "status": wallet.status.value,
                    "updated_at": self._drv.ts(wallet.updated_at),
                    "version": wallet.version,
                }
            ],
        )

    def get_wallet(self, tenant_id: str, wallet_id: str) -> Wallet | None:
        rows = self._drv.query(
            f"SELECT {_WALLET_COLUMNS} FROM wallet_wallets WHERE id = :id AND tenant_id = :t",
            {"id": wallet_id, "t": tenant_id},
        )
        return _wallet(rows[0]) if rows else None

    def lock_wallets(self, tenant_id: str, wallet_ids: Collection[str]) -> dict[str, Wallet]:
        # One row at a time in ascending id order: the same order in every transaction. The
        # tenant is in the WHERE clause so that no tenant can lock another's wallet.
        out: dict[str, Wallet] = {}
        for wallet_id in sorted(set(wallet_ids)):
            rows = self._drv.query(
                f"SELECT {_WALLET_COLUMNS} FROM wallet_wallets"
                f" WHERE id = :id AND tenant_id = :t{self._for_update}",
                {"id": wallet_id, "t": tenant_id},
            )
            if rows:
                out[wallet_id] = _wallet(rows[0])
        return out

    def customer_wallets(
        self, tenant_id: str, customer_id: str, currency: str | None = None
    ) -> list[Wallet]:
        sql = (
            f"SELECT {_WALLET_COLUMNS} FROM wallet_wallets"
            " WHERE tenant_id = :t AND customer_id = :c"
        )
        params: dict[str, Any] = {"t": tenant_id, "c": customer_id}
        if currency is not None:
            sql += " AND currency = :cur"
            params["cur"] = currency
        rows = self._drv.query(sql + " ORDER BY created_at, id", params)
        return [_wallet(r) for r in rows]

    def is_wallet_account(self, tenant_id: str, ledger_account_id: str) -> bool:
        rows = self._drv.query(
            "SELECT 1 FROM wallet_wallets WHERE ledger_account_id = :a AND tenant_id = :t",
            {"a": ledger_account_id, "t": tenant_id},
        )
        return bool(rows)

    # -- usage and overrides -------------------------------------------------------------
    def _select_usage(self, tenant_id: str, customer_id: str, currency: str, lock: bool) -> Any:
        rows = self._drv.query(
            f"SELECT {_USAGE_COLUMNS} FROM wallet_usage"
            " WHERE tenant_id = :t AND customer_id = :c AND currency = :cur"
            + (self._for_update if lock else ""),
            {"t": tenant_id, "c": customer_id, "cur": currency},
        )
        return rows[0] if rows else None

    def lock_usage(
        self, tenant_id: str, keys: Collection[tuple[str, str]], day: str, month: str
    ) -> dict[tuple[str, str], Usage]:
        out: dict[tuple[str, str], Usage] = {}
        for customer_id, currency in sorted(set(keys)):
            row = self._select_usage(tenant_id, customer_id, currency, True)
            if row is None:
                # A concurrent first movement may insert the same row: DO NOTHING waits for
                # it and then the lock below finds the row.
                self._drv.query(
                    _NEW_USAGE,
                    {
                        "tenant_id": tenant_id,
                        "customer_id": customer_id,
                        "currency": currency,
                        "day": day,
                        "day_in": 0,
                        "day_out": 0,
                        "month": month,
                        "month_in": 0,
                        "month_out": 0,
                    },
                )
                row = self._select_usage(tenant_id, customer_id, currency, True)
            out[(customer_id, currency)] = _usage(row)
        return out

    def get_usage(self, tenant_id: str, customer_id: str, currency: str) -> Usage | None:
        row = self._select_usage(tenant_id, customer_id, currency, False)
        return None if row is None else _usage(row)

    def save_usage(self, usage: Usage) -> None:
        self._drv.queue(
            _SAVE_USAGE,
            [
                {
                    "tenant_id": usage.tenant_id,
                    "customer_id": usage.customer_id,
                    "currency": usage.currency,
                    "day": usage.day,
                    "day_in": usage.day_in,
                    "day_out": usage.day_out,
                    "month": usage.month,
                    "month_in": usage.month_in,
                    "month_out": usage.month_out,
                }
            ],
        )

    def get_override(self, tenant_id: str, customer_id: str, currency: str) -> LimitOverride | None:
        rows = self._drv.query(
            f"SELECT {_OVERRIDE_COLUMNS} FROM wallet_limit_overrides"
            " WHERE tenant_id = :t AND customer_id = :c AND currency = :cur",
            {"t": tenant_id, "c": customer_id, "cur": currency},
        )
        if not rows:
            return None
        r = rows[0]
        return LimitOverride(
            tenant_id=r[0],
            customer_id=r[1],
            currency=r[2],
            limits=LimitSet(*(None if v is None else int(v) for v in r[3:9])),
            reason=r[9],
            updated_by=r[10],
            updated_at=read_ts(r[11]),
            version=int(r[12]),
        )

    def save_override(self, override: LimitOverride) -> None:
        row: dict[str, Any] = {
            "tenant_id": override.tenant_id,
            "customer_id": override.customer_id,
            "currency": override.currency,
            **override.limits.as_dict(),
            "reason": override.reason,
            "updated_by": override.updated_by,
            "updated_at": self._drv.ts(override.updated_at),
            "version": override.version,
        }
        self._drv.queue(_SAVE_OVERRIDE, [row])

    # -- movements ------------------------------------------------------------------------
    def reference_taken(self, tenant_id: str, reference: str) -> bool:
        rows = self._drv.query(
            "SELECT 1 FROM wallet_movements WHERE tenant_id = :t AND reference = :r",
            {"t": tenant_id, "r": reference},
        )
        return bool(rows)

    def add_movement(self, movement: Movement) -> None:
        self._drv.queue(
            _INSERT_MOVEMENT,
            [
                {
                    "id": movement.id,
                    "tenant_id": movement.tenant_id,
                    "reference": movement.reference,
                    "kind": movement.kind.value,
                    "journal_id": movement.journal_id,
                    "amount": movement.amount,
                    "currency": movement.currency,
                    "from_wallet_id": movement.from_wallet_id,
                    "to_wallet_id": movement.to_wallet_id,
                    "counterparty_account_id": movement.counterparty_account_id,
                    "description": movement.description,
                    "posted_at": self._drv.ts(movement.posted_at),
                }
            ],
        )

    def movement_position(self, tenant_id: str, wallet_id: str, movement_id: str) -> int | None:
        rows = self._drv.query(
            "SELECT position FROM wallet_movements WHERE id = :id AND tenant_id = :t"
            " AND (from_wallet_id = :w OR to_wallet_id = :w)",
            {"id": movement_id, "t": tenant_id, "w": wallet_id},
        )
        return int(rows[0][0]) if rows else None

    def movements(
        self, tenant_id: str, wallet_id: str, limit: int, before: int | None = None
    ) -> list[Movement]:
        params: dict[str, Any] = {"t": tenant_id, "w": wallet_id, "n": limit}
        if before is not None:
            params["p"] = before
        rows = self._drv.query(_HISTORY if before is None else _HISTORY_PAGE, params)
        return [
            Movement(
                id=r[0],
                tenant_id=r[1],
                reference=r[2],
                kind=MovementKind(r[3]),
                journal_id=r[4],
                amount=int(r[5]),
                currency=r[6],
                from_wallet_id=r[7],
                to_wallet_id=r[8],
                counterparty_account_id=r[9],
                description=r[10],
                posted_at=read_ts(r[11]),
            )
            for r in rows
        ]


def _wallet(r: tuple[Any, ...]) -> Wallet:
    return Wallet(
        id=r[0],
        tenant_id=r[1],
        customer_id=r[2],
        currency=r[3],
        kind=WalletKind(r[4]),
        status=WalletStatus(r[5]),
        ledger_account_id=r[6],
        metadata=read_json(r[7]),
        created_at=read_ts(r[8]),
        updated_at=read_ts(r[9]),
        version=int(r[10]),
    )


def _usage(r: tuple[Any, ...]) -> Usage:
    return Usage(
        tenant_id=r[0],
        customer_id=r[1],
        currency=r[2],
        day=r[3],
        day_in=int(r[4]),
        day_out=int(r[5]),
        month=r[6],
        month_in=int(r[7]),
        month_out=int(r[8]),
    )
