"""Pure checks of what a QR command asks for, against the tenant's settings."""

from __future__ import annotations

from datetime import datetime, timedelta

from finfactory.kernel.money import to_minor
from finfactory.primitives.qrph import commands as cmd
from finfactory.primitives.qrph.emv import Initiation, MerchantQrSpec
from finfactory.primitives.qrph.errors import (
    AcquirerNotConfigured,
    InvalidExpiry,
    InvalidPaymentAmount,
)
from finfactory.primitives.qrph.model import QrCode
from finfactory.primitives.qrph.settings import QrPhSettings


def acquirer_for(command: cmd.GenerateStaticQr | cmd.GenerateDynamicQr, s: QrPhSettings) -> str:
    """The acquirer BIC the code carries: the command's, else the tenant's."""
    acquirer = command.acquirer_id or s.acquirer_id
    if acquirer is None:
        raise AcquirerNotConfigured(
            "no acquirer id: set QrPhSettings.acquirer_id or give acquirer_id",
            field="acquirer_id",
        )
    return acquirer


def same_static(qr: QrCode, command: cmd.GenerateStaticQr) -> bool:
    """Whether ``command`` asks for the static QR code ``qr`` again (omitted optional
    details match whatever the code has)."""
    return (
        qr.kind == command.kind
        and qr.merchant_name == command.merchant_name
        and qr.merchant_city == command.merchant_city
        and qr.postal_code == command.postal_code
        and command.mcc in (None, qr.mcc)
        and command.acquirer_id in (None, qr.acquirer_id)
    )


def expiry_for(command: cmd.GenerateDynamicQr, s: QrPhSettings, now: datetime) -> datetime:
    """When a dynamic QR code expires: as asked, or after the tenant's default lifetime;
    never in the past nor beyond the tenant's longest lifetime."""
    latest = now + timedelta(seconds=s.max_dynamic_ttl_seconds)
    if command.expires_at is not None:
        expires_at = command.expires_at
    else:
        seconds = command.expires_in_seconds or s.default_dynamic_ttl_seconds
        if seconds > s.max_dynamic_ttl_seconds:
            raise InvalidExpiry(
                f"a dynamic QR code may live at most {s.max_dynamic_ttl_seconds} seconds",
                field="expires_in_seconds",
            )
        expires_at = now + timedelta(seconds=seconds)
    if expires_at <= now:
        raise InvalidExpiry("expires_at must be later than now", field="expires_at")
    if expires_at > latest:
        raise InvalidExpiry(
            f"a dynamic QR code may live at most {s.max_dynamic_ttl_seconds} seconds",
            field="expires_at",
        )
    return expires_at


def on_us_amount(command: cmd.PayQr, decoded: MerchantQrSpec) -> tuple[int, str]:
    """The amount an on-us payment moves: the payer's for a static QR code, the code's own
    for a dynamic one (which the payer may repeat, but not change)."""
    given = None if command.amount is None else to_minor(command.amount, allow_zero=False)
    if decoded.initiation is Initiation.STATIC:
        if given is None:
            raise InvalidPaymentAmount("a static QR code needs an amount", field="amount")
        return given
    assert decoded.amount_minor is not None
    own = (decoded.amount_minor, decoded.currency)
    if given is not None and given != own:
        raise InvalidPaymentAmount(
            "the amount differs from the dynamic QR code's amount", field="amount"
        )
    return own
