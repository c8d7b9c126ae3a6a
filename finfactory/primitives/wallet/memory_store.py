"""In-memory wallet store, on the memory unit of work (so rollbacks and savepoints undo it).
It keeps the SQL store's uniqueness rules. Memory transactions run one at a time, so a
lock here is just a read."""

from __future__ import annotations

from collections.abc import Collection

import attrs

from finfactory.adapters.memory import MemoryUnitOfWork
from finfactory.kernel.errors import IntegrityViolation
from finfactory.primitives.wallet.model import LimitOverride, Movement, Usage, Wallet

WALLETS = "wallet_wallets"
ACCOUNTS = "wallet_ledger_accounts"
USAGE = "wallet_usage"
OVERRIDES = "wallet_limit_overrides"
MOVEMENTS = "wallet_movements"
REFERENCES = "wallet_movement_references"


class MemoryWalletStore:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    def add_wallet(self, wallet: Wallet) -> None:
        if self._uow.get(WALLETS, wallet.id) is not None:
            raise IntegrityViolation("duplicate wallet id", wallet_id=wallet.id)
        if self._uow.get(ACCOUNTS, wallet.ledger_account_id) is not None:
            raise IntegrityViolation("ledger account already backs a wallet")
        self._uow.put(ACCOUNTS, wallet.ledger_account_id, (wallet.tenant_id, wallet.id))
        self._uow.put(WALLETS, wallet.id, wallet)

    def save_wallet(self, wallet: Wallet) -> None:
        stored: Wallet = self._uow.get(WALLETS, wallet.id)
        self._uow.put(
            WALLETS,
            wallet.id,
            attrs.evolve(
                stored,
                status=wallet.status,
                updated_at=wallet.updated_at,
                version=wallet.version,
            ),
        )

    def get_wallet(self, tenant_id: str, wallet_id: str) -> Wallet | None:
        wallet: Wallet | None = self._uow.get(WALLETS, wallet_id)
        return wallet if wallet is not None and wallet.tenant_id == tenant_id else None

    def lock_wallets(self, tenant_id: str, wallet_ids: Collection[str]) -> dict[str, Wallet]:
        found = (self.get_wallet(tenant_id, wid) for wid in sorted(wallet_ids))
        return {w.id: w for w in found if w is not None}

    def customer_wallets(
        self, tenant_id: str, customer_id: str, currency: str | None = None
    ) -> list[Wallet]:
        rows = [
            w
            for w in self._uow.rows(WALLETS)
            if w.tenant_id == tenant_id
            and w.customer_id == customer_id
            and (currency is None or w.currency == currency)
        ]
        return sorted(rows, key=lambda w: (w.created_at, w.id))

    def is_wallet_account(self, tenant_id: str, ledger_account_id: str) -> bool:
        owner = self._uow.get(ACCOUNTS, ledger_account_id)
        return owner is not None and owner[0] == tenant_id

    def lock_usage(
        self, tenant_id: str, keys: Collection[tuple[str, str]], day: str, month: str
    ) -> dict[tuple[str, str], Usage]:
        out: dict[tuple[str, str], Usage] = {}
        for customer_id, currency in sorted(set(keys)):
            found = self.get_usage(tenant_id, customer_id, currency)
            if found is None:
                found = Usage(tenant_id, customer_id, currency, day, 0, 0, month, 0, 0)
                self._uow.put(USAGE, (tenant_id, customer_id, currency), found)
            out[(customer_id, currency)] = found
        return out

    def get_usage(self, tenant_id: str, customer_id: str, currency: str) -> Usage | None:
        found: Usage | None = self._uow.get(USAGE, (tenant_id, customer_id, currency))
        return found

    def save_usage(self, usage: Usage) -> None:
        for value in (usage.day_in, usage.day_out, usage.month_in, usage.month_out):
            if value < 0:
                raise IntegrityViolation("usage counters must not be negative")
        self._uow.put(USAGE, (usage.tenant_id, usage.customer_id, usage.currency), usage)

    def get_override(self, tenant_id: str, customer_id: str, currency: str) -> LimitOverride | None:
        found: LimitOverride | None = self._uow.get(OVERRIDES, (tenant_id, customer_id, currency))
        return found

    def save_override(self, override: LimitOverride) -> None:
        key = (override.tenant_id, override.customer_id, override.currency)
        self._uow.put(OVERRIDES, key, override)

    def reference_taken(self, tenant_id: str, reference: str) -> bool:
        return self._uow.get(REFERENCES, (tenant_id, reference)) is not None

    def add_movement(self, movement: Movement) -> None:
        key = (movement.tenant_id, movement.reference)
        if self._uow.get(REFERENCES, key) is not None:
            raise IntegrityViolation("duplicate movement reference", reference=movement.reference)
        if movement.amount <= 0:
            raise IntegrityViolation("movement amounts must be positive")
        position = self._uow.next_value(MOVEMENTS)
        self._uow.put(REFERENCES, key, position)
        self._uow.put(MOVEMENTS, position, movement)

    def movement_position(self, tenant_id: str, wallet_id: str, movement_id: str) -> int | None:
        table = self._uow.db.table(MOVEMENTS)
        for position, m in table.items():
            if m.id == movement_id:
                mine = m.tenant_id == tenant_id and wallet_id in (m.from_wallet_id, m.to_wallet_id)
                return int(position) if mine else None
        return None

    def movements(
        self, tenant_id: str, wallet_id: str, limit: int, before: int | None = None
    ) -> list[Movement]:
        table = self._uow.db.table(MOVEMENTS)
        out: list[Movement] = []
        for position in sorted(table, reverse=True):
            if before is not None and position >= before:
                continue
            m: Movement = table[position]
            if m.tenant_id == tenant_id and wallet_id in (m.from_wallet_id, m.to_wallet_id):
                out.append(m)
                if len(out) >= limit:
                    break
        return out
