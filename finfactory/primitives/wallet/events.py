"""Events the wallet publishes. Money movements themselves are the ledger's events
(journal.posted, balance.updated), emitted by the ledger calls the wallet makes."""

from __future__ import annotations

from finfactory.events.registry import EventPayload, declare_event

PRIMITIVE = "wallet"


class MoneyJson(EventPayload):
    amount: str
    currency: str


class LimitValues(EventPayload):
    """A set of limits; ``None`` means no limit of that kind (or, in an override, that the
    tier's limit applies)."""

    balance_cap: MoneyJson | None
    daily_in: MoneyJson | None
    monthly_in: MoneyJson | None
    daily_out: MoneyJson | None
    monthly_out: MoneyJson | None
    per_transaction: MoneyJson | None


@declare_event(
    "wallet.created",
    primitive=PRIMITIVE,
    aggregate_type="wallet",
    description="A wallet was opened for a customer (status created, not yet usable)",
)
class WalletCreated(EventPayload):
    wallet_id: str
    customer_id: str
    currency: str
    kind: str
    status: str
    ledger_account_id: str


@declare_event(
    "wallet.activated",
    primitive=PRIMITIVE,
    aggregate_type="wallet",
    description="A wallet became active (first activation or end of a suspension)",
)
class WalletActivated(EventPayload):
    wallet_id: str
    customer_id: str
    previous_status: str
    kyc_tier: str
    reason: str | None


@declare_event(
    "wallet.suspended",
    primitive=PRIMITIVE,
    aggregate_type="wallet",
    description="A wallet was suspended: it refuses debits but still receives money",
)
class WalletSuspended(EventPayload):
    wallet_id: str
    customer_id: str
    reason: str


@declare_event(
    "wallet.closed",
    primitive=PRIMITIVE,
    aggregate_type="wallet",
    description="A wallet was closed for good, with a zero balance",
)
class WalletClosed(EventPayload):
    wallet_id: str
    customer_id: str
    previous_status: str
    reason: str


@declare_event(
    "wallet.limit.updated",
    primitive=PRIMITIVE,
    aggregate_type="wallet_limits",
    description="A customer's own limits in a currency were changed, by whom and why",
)
class WalletLimitUpdated(EventPayload):
    customer_id: str
    currency: str
    old: LimitValues
    new: LimitValues
    reason: str
    changed_by: str
    changed_by_kind: str
