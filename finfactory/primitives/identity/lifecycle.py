"""The KYC lifecycle inside a command: starting an attempt, ingesting a provider's verdict,
and expiring what the clock says is due. Every function runs with the customer's row locked
and records its events on the customer's aggregate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs

from finfactory.events.registry import EventPayload
from finfactory.kernel.canonical import canonical_json, sha256_hex
from finfactory.kernel.commands import CommandScope
from finfactory.primitives.identity import commands as cmd
from finfactory.primitives.identity import events as ev
from finfactory.primitives.identity import pii as p
from finfactory.primitives.identity.errors import (
    AlreadyVerified,
    DocumentExpired,
    DocumentNotAccepted,
    DocumentRequired,
    DuplicateDocument,
    KycInProgress,
    KycRejectedFinal,
)
from finfactory.primitives.identity.model import (
    CallbackEffect,
    Customer,
    ExpiryKind,
    KycCase,
    KycCheck,
    KycReason,
    KycStatus,
    RejectionKind,
    RiskFlag,
    RiskReason,
    RiskSeverity,
    RiskSource,
)
from finfactory.primitives.identity.ports import (
    IdentityStore,
    PiiCipher,
    ProviderOutcome,
    ProviderSessionRequest,
)
from finfactory.primitives.identity.sessions import SessionOpener
from finfactory.primitives.identity.settings import IdentitySettings, KycTier


def end_of_day(day: date) -> datetime:
    """A document valid through ``day`` stops being valid at the next midnight, UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


@attrs.define
class CustomerEvents:
    """A locked customer and its event numbering: each event takes the next version."""

    scope: CommandScope
    store: IdentityStore
    customer: Customer
    changed: bool = False

    def emit(self, payload_type: type[EventPayload], payload: dict[str, Any]) -> None:
        self.customer = self.customer.next_event()
        self.changed = True
        self.scope.emit(payload_type, payload, self.customer.id, self.customer.version)

    def update(self, **changes: Any) -> None:
        self.customer = attrs.evolve(self.customer, **changes)
        self.changed = True

    def save(self) -> None:
        if self.changed:
            self.store.save_customer(self.customer)
            self.changed = False


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def tier_or_default(settings: IdentitySettings, name: str) -> KycTier:
    """The tier as configured now; a tier removed since the attempt started keeps defaults."""
    return settings.tier(name) or KycTier(name=name, level=1, required_checks=[KycCheck.DOCUMENT])


# -- expiry ----------------------------------------------------------------------------------


def expire_case(
    events: CustomerEvents, case: KycCase, kind: ExpiryKind, reasons: tuple[KycReason, ...]
) -> KycCase:
    now = events.scope.now
    case = case.expire(now, kind, reasons)
    events.store.save_case(case)
    if kind is ExpiryKind.VALIDITY and events.customer.verified_kyc_id == case.id:
        events.update(verified_kyc_id=None, verified_until=None)
    events.emit(
        ev.KycExpired,
        dict(
            kyc_id=case.id,
            customer_id=case.customer_id,
            tier=case.tier,
            status=case.status.value,
            expiry=kind.value,
            reason_codes=[r.value for r in reasons],
            expired_at=now.isoformat(),
        ),
    )
    return case


def settle(events: CustomerEvents) -> list[KycCase]:
    """Expire what the clock says is over for this customer: an open session past its
    timeout, a verification past its validity end. Commands call this first, so a customer's
    state is the same whether or not the scheduler's ``expire_due`` ran yet."""
    now = events.scope.now
    store, customer = events.store, events.customer
    expired: list[KycCase] = []
    if customer.latest_kyc_id is not None:
        latest = store.get_case(customer.tenant_id, customer.latest_kyc_id)
        if latest is not None and latest.session_overdue(now):
            reason = KycReason.REVIEW_TIMEOUT if latest.in_review else KycReason.SESSION_TIMEOUT
            expired.append(expire_case(events, latest, ExpiryKind.SESSION, (reason,)))
    verified_id, until = customer.verified_kyc_id, customer.verified_until
    if verified_id is not None and until is not None and until <= now:
        case = store.get_case(customer.tenant_id, verified_id)
        if case is not None and case.status is KycStatus.VERIFIED:
            reasons = (KycReason.VALIDITY_ENDED,)
            expired.append(expire_case(events, case, ExpiryKind.VALIDITY, reasons))
    return expired


# -- starting an attempt ---------------------------------------------------------------------


def start(
    events: CustomerEvents,
    command: cmd.StartKyc,
    tier: KycTier,
    settings: IdentitySettings,
    cipher: PiiCipher,
    sessions: SessionOpener,
) -> KycCase:
    scope, store = events.scope, events.store
    tenant, now = scope.ctx.tenant_id, scope.now
    if events.customer.kyc_blocked:
        raise KycRejectedFinal("the customer's KYC was rejected for good", field="customer_id")
    settle(events)
    customer = events.customer
    if customer.latest_kyc_id is not None:
        latest = store.get_case(tenant, customer.latest_kyc_id)
        if latest is not None and latest.status is KycStatus.STARTED:
            raise KycInProgress(f"KYC {latest.id} is still open", kyc_id=latest.id)
    if customer.verified_kyc_id is not None:
        held = store.get_case(tenant, customer.verified_kyc_id)
        held_tier = None if held is None else settings.tier(held.tier)
        # A tier since removed from the settings ranks below every configured one.
        if held is not None and held_tier is not None and held_tier.level >= tier.level:
            raise AlreadyVerified(
                f"the customer holds a valid {held.tier} verification", field="tier"
            )
    record = p.unseal(cipher, customer)
    replaced = command.id_document is not None
    if command.id_document is not None:
        new_hash = p.document_hash(cipher, tenant, command.id_document)
        owner = store.customer_by_document(tenant, new_hash)
        if owner is not None and owner.id != customer.id:
            raise DuplicateDocument(
                "another customer of this tenant holds this identity document",
                field="id_document",
            )
        record = attrs.evolve(record, id_document=command.id_document)
        events.update(pii=p.seal(cipher, tenant, customer.id, record), document_hash=new_hash)
    _check_document(record, tier, now)
    # Last, after every check: the vendor hears only of attempts that will be written.
    kyc_id, reference = sessions.open(
        scope.ids.new_id,
        lambda kyc_id: ProviderSessionRequest(
            tenant_id=tenant,
            kyc_id=kyc_id,
            customer_id=customer.id,
            tier=tier.name,
            checks=tuple(tier.required_checks),
            applicant=record.applicant(),
        ),
    )
    case = KycCase(
        id=kyc_id,
        tenant_id=tenant,
        customer_id=customer.id,
        tier=tier.name,
        attempt=len(store.cases_of(tenant, customer.id)) + 1,
        status=KycStatus.STARTED,
        provider_reference=reference,
        started_at=now,
        session_expires_at=now + timedelta(minutes=tier.session_timeout_minutes),
    )
    store.add_case(case)
    events.update(latest_kyc_id=case.id)
    events.emit(
        ev.KycStarted,
        dict(
            kyc_id=case.id,
            customer_id=case.customer_id,
            tier=case.tier,
            attempt=case.attempt,
            status=case.status.value,
            started_at=now.isoformat(),
            session_expires_at=case.session_expires_at.isoformat(),
            document_replaced=replaced,
        ),
    )
    events.save()
    return case


def _check_document(record: p.PiiRecord, tier: KycTier, now: datetime) -> None:
    if KycCheck.DOCUMENT not in tier.required_checks:
        return
    doc = record.id_document
    if doc is None:
        raise DocumentRequired(f"tier {tier.name} needs an identity document", field="id_document")
    if doc.type not in tier.accepted_documents:
        raise DocumentNotAccepted(
            f"tier {tier.name} does not accept {doc.type.value} documents",
            field="id_document.type",
        )
    if doc.expires_on is not None and end_of_day(doc.expires_on) <= now:
        raise DocumentExpired("the identity document has expired", field="id_document.expires_on")


# -- provider callbacks ----------------------------------------------------------------------


def callback_key(cipher: PiiCipher, tenant_id: str, callback: cmd.ProviderCallback) -> str:
    """What makes two deliveries "the same callback": the provider's delivery id when it
    gives one, else the verdict's content. The content holds the document's expiry date, so
    it is hashed with the lookup key (a plain hash could be reversed by trying every date)."""
    if callback.callback_id is not None:
        return sha256_hex("id\n" + callback.callback_id)
    content = callback.model_dump(mode="json", exclude={"reference", "callback_id"})
    return cipher.lookup_hash(f"identity.callback|{tenant_id}", canonical_json(content))


@attrs.define
class Verdict:
    case: KycCase
    effect: CallbackEffect
    flags: list[RiskFlag] = attrs.field(factory=list)


def apply_verdict(
    events: CustomerEvents,
    case: KycCase,
    callback: cmd.ProviderCallback,
    settings: IdentitySettings,
    cipher: PiiCipher,
) -> Verdict:
    """Apply a provider's verdict to an open case (a closed case is left alone: a late or
    out-of-order callback cannot reopen or change a final decision)."""
    if case.status is not KycStatus.STARTED:
        verdict = Verdict(case, CallbackEffect.IGNORED)
    else:
        verdict = _decide(events, case, callback, settings, cipher)
    if callback.watchlist_hit:
        # A watch-list hit is a risk signal whatever state the case is in: never dropped.
        flag = raise_flag_once(
            events, RiskReason.WATCHLIST_HIT, RiskSeverity.HIGH, RiskSource.PROVIDER, case.id
        )
        if flag is not None:
            verdict.flags.append(flag)
    return verdict


def _reasons(callback: cmd.ProviderCallback, fallback: KycReason) -> tuple[KycReason, ...]:
    codes = list(callback.reason_codes)
    if callback.watchlist_hit:
        codes.append(KycReason.WATCHLIST_MATCH)
    return tuple(dict.fromkeys(codes)) or (fallback,)


def _decide(
    events: CustomerEvents,
    case: KycCase,
    callback: cmd.ProviderCallback,
    settings: IdentitySettings,
    cipher: PiiCipher,
) -> Verdict:
    outcome = callback.outcome
    tier = tier_or_default(settings, case.tier)
    if outcome is ProviderOutcome.PENDING:
        return Verdict(case, CallbackEffect.RECORDED)
    if outcome is ProviderOutcome.REVIEW or (
        # A watch-list match is never cleared by an automatic approval: the attempt waits
        # for a person's review (the provider's next verdict decides it).
        outcome is ProviderOutcome.APPROVED and callback.watchlist_hit
    ):
        reviewed = case.start_review(
            events.scope.now + timedelta(minutes=tier.review_timeout_minutes)
        )
        if reviewed != case:
            events.store.save_case(reviewed)
        return Verdict(reviewed, CallbackEffect.RECORDED)
    if outcome is ProviderOutcome.EXPIRED:
        reasons = _reasons(callback, KycReason.SESSION_TIMEOUT)
        return Verdict(
            expire_case(events, case, ExpiryKind.SESSION, reasons), CallbackEffect.APPLIED
        )
    if outcome is ProviderOutcome.APPROVED:
        valid_until = _validity_end(events, callback, tier, cipher)
        if valid_until is None or valid_until > events.scope.now:
            return Verdict(verify(events, case, valid_until), CallbackEffect.APPLIED)
        # Approved on a document that has run out: not a usable verification.
        return reject(events, case, RejectionKind.RETRYABLE, (KycReason.DOCUMENT_EXPIRED,), tier)
    kind = (
        RejectionKind.FINAL
        if outcome is ProviderOutcome.REJECTED_FINAL
        else RejectionKind.RETRYABLE
    )
    return reject(events, case, kind, _reasons(callback, KycReason.OTHER), tier)


def _validity_end(
    events: CustomerEvents, callback: cmd.ProviderCallback, tier: KycTier, cipher: PiiCipher
) -> datetime | None:
    now = events.scope.now
    ends: list[datetime] = []
    if tier.validity_days is not None:
        ends.append(now + timedelta(days=tier.validity_days))
    if tier.expire_with_document:
        expires_on = callback.document_expires_on
        if expires_on is None:
            doc = p.unseal(cipher, events.customer).id_document
            expires_on = None if doc is None else doc.expires_on
        if expires_on is not None:
            ends.append(end_of_day(expires_on))
    return min(ends) if ends else None


def verify(events: CustomerEvents, case: KycCase, valid_until: datetime | None) -> KycCase:
    store, now = events.store, events.scope.now
    previous = events.customer.verified_kyc_id
    case = case.verify(now, valid_until)
    store.save_case(case)
    if previous is not None:
        old = store.get_case(case.tenant_id, previous)
        if old is not None and old.status is KycStatus.VERIFIED:
            # The replaced verification ends here, before the new one is announced: a
            # consumer that clears the tier on kyc.expired and sets it on kyc.verified ends
            # on the right tier.
            reasons = (KycReason.SUPERSEDED,)
            old = attrs.evolve(old, superseded_by=case.id)
            expire_case(events, old, ExpiryKind.SUPERSEDED, reasons)
    events.update(verified_kyc_id=case.id, verified_until=valid_until)
    events.emit(
        ev.KycVerified,
        dict(
            kyc_id=case.id,
            customer_id=case.customer_id,
            tier=case.tier,
            status=case.status.value,
            verified_at=now.isoformat(),
            valid_until=_ts(valid_until),
            supersedes_kyc_id=previous,
        ),
    )
    return case


def reject(
    events: CustomerEvents,
    case: KycCase,
    kind: RejectionKind,
    reasons: tuple[KycReason, ...],
    tier: KycTier,
) -> Verdict:
    store, now = events.store, events.scope.now
    case = case.reject(now, kind, reasons)
    store.save_case(case)
    retryable = sum(
        1
        for k in store.cases_of(case.tenant_id, case.customer_id)
        if k.tier == case.tier and k.rejection is RejectionKind.RETRYABLE
    )
    if kind is RejectionKind.FINAL:
        events.update(kyc_blocked=True)
    events.emit(
        ev.KycRejected,
        dict(
            kyc_id=case.id,
            customer_id=case.customer_id,
            tier=case.tier,
            status=case.status.value,
            rejection=kind.value,
            reason_codes=[r.value for r in reasons],
            rejected_at=now.isoformat(),
            retryable_rejections=retryable,
        ),
    )
    verdict = Verdict(case, CallbackEffect.APPLIED)
    # One more retryable rejection than the tier tolerates raises one flag (not one per
    # further rejection: the flag is for a person to look at).
    if kind is RejectionKind.RETRYABLE and retryable == tier.max_retryable_rejections + 1:
        verdict.flags.append(
            raise_flag(
                events,
                RiskReason.REPEATED_REJECTIONS,
                RiskSeverity.MEDIUM,
                RiskSource.RULE,
                case.id,
            )
        )
    return verdict


# -- risk flags ------------------------------------------------------------------------------


def raise_flag(
    events: CustomerEvents,
    reason: RiskReason,
    severity: RiskSeverity,
    source: RiskSource,
    kyc_id: str | None,
) -> RiskFlag:
    scope = events.scope
    flag = RiskFlag(
        id=scope.ids.new_id(),
        tenant_id=scope.ctx.tenant_id,
        customer_id=events.customer.id,
        kyc_id=kyc_id,
        reason=reason,
        severity=severity,
        source=source,
        flagged_at=scope.now,
        flagged_by=scope.ctx.actor.id,
    )
    events.store.add_risk_flag(flag)
    events.update(risk_flags=events.customer.risk_flags + 1)
    events.emit(
        ev.RiskFlagged,
        dict(
            flag_id=flag.id,
            customer_id=flag.customer_id,
            kyc_id=kyc_id,
            reason=reason.value,
            severity=severity.value,
            source=source.value,
            flagged_at=scope.now.isoformat(),
        ),
    )
    return flag


def raise_flag_once(
    events: CustomerEvents,
    reason: RiskReason,
    severity: RiskSeverity,
    source: RiskSource,
    kyc_id: str,
) -> RiskFlag | None:
    """A flag for this case and reason, unless the case already has one."""
    existing = events.store.risk_flags(events.customer.tenant_id, events.customer.id)
    if any(f.kyc_id == kyc_id and f.reason is reason for f in existing):
        return None
    return raise_flag(events, reason, severity, source, kyc_id)
