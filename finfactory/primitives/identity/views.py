"""Entities -> API results. Personal data is shown in clear or masked, as the caller decides."""

from __future__ import annotations

from datetime import datetime

from finfactory.primitives.identity import commands as cmd
from finfactory.primitives.identity import pii as p
from finfactory.primitives.identity.model import Customer, KycCase, RiskFlag


def kyc_view(case: KycCase) -> cmd.KycView:
    return cmd.KycView.model_construct(
        id=case.id,
        customer_id=case.customer_id,
        tier=case.tier,
        attempt=case.attempt,
        status=case.status,
        in_review=case.in_review,
        rejection=case.rejection,
        expiry=case.expiry,
        reason_codes=list(case.reason_codes),
        started_at=case.started_at,
        session_expires_at=case.session_expires_at,
        decided_at=case.decided_at,
        valid_until=case.valid_until,
        expired_at=case.expired_at,
        superseded_by=case.superseded_by,
    )


def risk_flag_view(flag: RiskFlag) -> cmd.RiskFlagView:
    return cmd.RiskFlagView.model_construct(
        id=flag.id,
        customer_id=flag.customer_id,
        kyc_id=flag.kyc_id,
        reason=flag.reason,
        severity=flag.severity,
        source=flag.source,
        flagged_at=flag.flagged_at,
    )


def customer_view(
    customer: Customer,
    record: p.PiiRecord,
    *,
    clear: bool,
    latest: KycCase | None,
    verified: KycCase | None,
    now: datetime,
) -> cmd.CustomerView:
    held = verified if verified is not None and verified.holds_verification(now) else None
    doc = record.id_document
    return cmd.CustomerView.model_construct(
        id=customer.id,
        created_at=customer.created_at,
        pii="clear" if clear else "masked",
        given_name=record.given_name if clear else p.mask_name(record.given_name),
        family_name=record.family_name if clear else p.mask_name(record.family_name),
        birth_date=record.birth_date if clear else None,
        email=record.email if clear or record.email is None else p.mask_email(record.email),
        phone=record.phone if clear or record.phone is None else p.mask_tail(record.phone),
        id_document=None if doc is None else p.document_view(doc, clear=clear),
        document_refs=list(record.document_refs) if clear else [],
        kyc_status=None if latest is None else latest.status,
        latest_kyc_id=customer.latest_kyc_id,
        verified_tier=None if held is None else held.tier,
        verified_until=None if held is None else held.valid_until,
        kyc_blocked=customer.kyc_blocked,
        risk_flags=customer.risk_flags,
    )
