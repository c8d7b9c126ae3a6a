"""QR Ph with the real EMI Wallet and Ledger: confirmed payments move wallet balances."""

from __future__ import annotations

import attrs
import pytest

from finfactory.kernel.authz import default_policy
from finfactory.kernel.config import TenantConfigService
from finfactory.kernel.errors import ConfigurationError
from finfactory.kernel.money import Money
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import AccountType, LedgerService, OpenAccount
from finfactory.primitives.qrph import (
    FailureReason,
    MerchantWalletNotFound,
    MerchantWalletNotPayable,
    PaymentStatus,
    PayQr,
    QrPaymentService,
    QrPhSettings,
)
from finfactory.primitives.qrph.wallet_settlement import SERVICE_ACTOR, WalletMerchantSettlement
from finfactory.primitives.wallet import (
    ActivateWallet,
    CashIn,
    CloseWallet,
    MovementKind,
    OpenWallet,
    SuspendWallet,
    WalletKind,
    WalletService,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.qrph import FakeQrSwitch
from finfactory.testing.wallet import StaticCustomerTiers, configure_wallets
from tests.qrph.conftest import TENANT, actor_ctx, configure, dynamic_qr, php, static_qr


@attrs.define
class Bank:
    storage: Storage
    ledger: LedgerService
    wallets: WalletService
    qr: QrPaymentService
    switch: FakeQrSwitch
    settlement_account: str
    merchant: str
    payer: str
    friend: str  # a second person's wallet, paid through P2P codes

    def posted(self, wallet_id: str) -> Money:
        return self.wallets.get_wallet(actor_ctx("auditor"), wallet_id).posted

    def audit(self) -> list[tuple[str, str, str]]:
        with self.storage.read() as uow:
            return [
                (r.actor_id, r.action, r.outcome.value) for r in uow.kernel.audit_records(TENANT)
            ]


@pytest.fixture
def bank(storage: Storage) -> Bank:
    clock = ManualClock()
    ids = SequentialIds()
    ledger = LedgerService(storage, default_policy(), clock, ids)
    tiers = StaticCustomerTiers({"shop-owner": "basic", "juan": "basic", "maria": "basic"})
    wallets = WalletService(storage, default_policy(), clock, ids, ledger, tiers)
    configure_wallets(storage, TENANT, clock=clock, ids=SequentialIds(namespace=7))
    configure(storage, clock)
    ops = actor_ctx("wallet.operator", "ledger.operator")
    settlement_account = ledger.open_account(
        ops, OpenAccount(code="switch-settlement", currency="PHP", type=AccountType.ASSET)
    ).id
    opened = {}
    for customer, kind in (
        ("shop-owner", WalletKind.MERCHANT),
        ("juan", WalletKind.PERSONAL),
        ("maria", WalletKind.PERSONAL),
    ):
        view = wallets.open_wallet(ops, OpenWallet(customer_id=customer, currency="PHP", kind=kind))
        wallets.activate_wallet(ops, ActivateWallet(wallet_id=view.id))
        opened[customer] = view.id
    wallets.cash_in(
        ops,
        CashIn(
            wallet_id=opened["juan"],
            amount=php("100.00"),
            source_account_id=settlement_account,
            reference="top-up-1",
        ),
    )
    qr = QrPaymentService(
        storage,
        default_policy(),
        clock,
        ids,
        WalletMerchantSettlement(wallets, settlement_account),
    )
    switch = FakeQrSwitch(qr, actor_ctx("qrph.operator", actor="switch"))
    return Bank(
        storage,
        ledger,
        wallets,
        qr,
        switch,
        settlement_account,
        opened["shop-owner"],
        opened["juan"],
        opened["maria"],
    )


def test_switch_payment_credits_the_merchant_wallet(bank: Bank) -> None:
    ctx = actor_ctx("qrph.operator")
    qr = bank.qr.generate_static_qr(ctx, static_qr(bank.merchant))
    paid = bank.switch.pay(qr.payload, php("45.50"))
    assert paid.status is PaymentStatus.CONFIRMED
    assert bank.posted(bank.merchant) == php("45.50")
    journal = bank.ledger.get_journal(actor_ctx("auditor"), paid.journal_id or "")
    assert journal.reference.endswith(f"qrph:{paid.id}")
    assert journal.description == "QR Ph payment"
    assert {leg.account_id for leg in journal.legs} >= {bank.settlement_account}
    # The wallet's command ran as the QR Ph service actor, in the same trace.
    assert (SERVICE_ACTOR.id, "wallet.cash_in", "succeeded") in bank.audit()


def test_on_us_payment_moves_payer_to_merchant(bank: Bank) -> None:
    ctx = actor_ctx("qrph.operator")
    qr = bank.qr.generate_dynamic_qr(ctx, dynamic_qr("30.00", wallet=bank.merchant))
    paid = bank.qr.pay_qr(ctx, PayQr(payload=qr.payload, payer_wallet_id=bank.payer))
    assert paid.status is PaymentStatus.CONFIRMED
    assert bank.posted(bank.payer) == php("70.00")
    assert bank.posted(bank.merchant) == php("30.00")


def test_refusals_by_the_wallet_fail_the_payment_and_move_nothing(bank: Bank) -> None:
    ctx = actor_ctx("qrph.operator")
    ops = actor_ctx("wallet.operator")
    qr = bank.qr.generate_dynamic_qr(ctx, dynamic_qr("130.00", wallet=bank.merchant))
    broke = bank.qr.pay_qr(ctx, PayQr(payload=qr.payload, payer_wallet_id=bank.payer))
    assert broke.failure_reason is FailureReason.REJECTED
    assert broke.failure_detail == "wallet.insufficient_funds"
    bank.wallets.suspend_wallet(ops, SuspendWallet(wallet_id=bank.payer, reason="fraud check"))
    small = bank.qr.generate_dynamic_qr(ctx, dynamic_qr("10.00", wallet=bank.merchant))
    blocked = bank.qr.pay_qr(ctx, PayQr(payload=small.payload, payer_wallet_id=bank.payer))
    assert (blocked.failure_reason, blocked.failure_detail) == (
        FailureReason.REJECTED,
        "wallet.not_active",
    )
    assert bank.posted(bank.payer) == php("100.00")
    assert bank.posted(bank.merchant) == php("0.00")
    assert (SERVICE_ACTOR.id, "wallet.pay_merchant", "rejected") in bank.audit()
    # A closed merchant wallet takes nothing from the switch either.
    static = bank.qr.generate_static_qr(ctx, static_qr(bank.merchant))
    bank.wallets.close_wallet(ops, CloseWallet(wallet_id=bank.merchant, reason="shop closed"))
    refused = bank.switch.pay(static.payload, php("5.00"))
    assert (refused.status, refused.failure_detail) == (PaymentStatus.FAILED, "wallet.not_active")
    assert [p.status for p in bank.qr.list_payments(ctx).payments] == [PaymentStatus.FAILED] * 3


def test_on_us_payment_of_a_p2p_code_is_a_transfer_between_people(bank: Bank) -> None:
    ctx = actor_ctx("qrph.operator")
    qr = bank.qr.generate_static_qr(ctx, static_qr(bank.friend, kind="p2p"))
    paid = bank.qr.pay_qr(
        ctx, PayQr(payload=qr.payload, payer_wallet_id=bank.payer, amount=php("25.00"))
    )
    assert (paid.status, paid.failure_detail) == (PaymentStatus.CONFIRMED, None)
    assert bank.posted(bank.payer) == php("75.00")
    assert bank.posted(bank.friend) == php("25.00")
    assert (SERVICE_ACTOR.id, "wallet.transfer", "succeeded") in bank.audit()
    [movement] = bank.wallets.history(actor_ctx("auditor"), bank.friend)
    assert movement.kind is MovementKind.TRANSFER
    # From the switch, a person's wallet is credited from the settlement account.
    incoming = bank.switch.pay(qr.payload, php("10.00"))
    assert incoming.status is PaymentStatus.CONFIRMED
    assert bank.posted(bank.friend) == php("35.00")


def test_codes_only_for_wallets_that_can_take_them(bank: Bank) -> None:
    ctx = actor_ctx("qrph.operator")
    ops = actor_ctx("wallet.operator")
    with pytest.raises(MerchantWalletNotFound):
        bank.qr.generate_static_qr(ctx, static_qr("no-such-wallet"))
    with pytest.raises(MerchantWalletNotPayable, match="merchant wallet"):
        bank.qr.generate_dynamic_qr(ctx, dynamic_qr(wallet=bank.friend))  # P2M, personal
    bank.wallets.close_wallet(ops, CloseWallet(wallet_id=bank.friend, reason="moved abroad"))
    with pytest.raises(MerchantWalletNotPayable, match="closed"):
        bank.qr.generate_static_qr(ctx, static_qr(bank.friend, kind="p2p"))
    dollars = bank.wallets.open_wallet(
        ops, OpenWallet(customer_id="shop-owner", currency="USD", kind=WalletKind.MERCHANT)
    )
    with pytest.raises(MerchantWalletNotPayable, match="USD"):
        bank.qr.generate_static_qr(ctx, static_qr(dollars.id))
    assert bank.qr.list_payments(ctx).payments == []
    refusals = [a for a in bank.audit() if a[1].startswith("qrph.generate")]
    assert [outcome for _, _, outcome in refusals] == ["rejected"] * 4


def test_the_tenants_settlement_account_setting_wins(bank: Bank) -> None:
    ops = actor_ctx("ledger.operator")
    clearing = bank.ledger.open_account(
        ops, OpenAccount(code="tenant-clearing", currency="PHP", type=AccountType.ASSET)
    ).id
    configure_wallets(  # the wallet accepts both accounts as settlement accounts
        bank.storage,
        TENANT,
        ids=SequentialIds(namespace=8),
        settlement_account_ids=[bank.settlement_account, clearing],
    )
    TenantConfigService(
        bank.storage, default_policy(), ManualClock(), SequentialIds(namespace=9)
    ).update(
        actor_ctx("config.admin"), QrPhSettings, {"settlement_account_id": clearing}, reason="t"
    )
    qr = bank.qr.generate_static_qr(actor_ctx("qrph.operator"), static_qr(bank.merchant))
    paid = bank.switch.pay(qr.payload, php("12.00"))
    journal = bank.ledger.get_journal(actor_ctx("auditor"), paid.journal_id or "")
    assert clearing in {leg.account_id for leg in journal.legs}
    assert bank.settlement_account not in {leg.account_id for leg in journal.legs}


def test_a_switch_payment_without_any_settlement_account_is_a_configuration_error(
    bank: Bank,
) -> None:
    unconfigured = WalletMerchantSettlement(bank.wallets)
    qr = QrPaymentService(
        bank.storage, default_policy(), ManualClock(), SequentialIds(namespace=11), unconfigured
    )
    code = qr.generate_static_qr(actor_ctx("qrph.operator"), static_qr(bank.merchant))
    with pytest.raises(ConfigurationError):
        FakeQrSwitch(qr, actor_ctx("qrph.operator", actor="switch")).pay(code.payload, php("1.00"))
    assert bank.posted(bank.merchant) == php("0.00")
