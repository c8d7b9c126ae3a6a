"""A deterministic KYC provider and a fixed keyring for tests of the identity primitive.

``FakeKycProvider`` decides each session's verdict when the session is opened, from a script
keyed by customer id or by the applicant's input (document number, family name), falling back
to a default; ``callback(...)`` then builds the normalised callback the provider would send.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import date

import attrs

from finfactory.primitives.identity.commands import ProviderCallback
from finfactory.primitives.identity.crypto import PiiKeyring
from finfactory.primitives.identity.errors import KycProviderUnavailable
from finfactory.primitives.identity.model import KycReason
from finfactory.primitives.identity.ports import (
    ProviderOutcome,
    ProviderSession,
    ProviderSessionRequest,
)

__all__ = ["FakeKycProvider", "FakeSession", "FakeVerdict", "fixed_keyring"]


@attrs.frozen
class FakeVerdict:
    outcome: ProviderOutcome
    reason_codes: tuple[KycReason, ...] = ()
    watchlist_hit: bool = False
    document_expires_on: date | None = None

    @classmethod
    def approve(cls, *, document_expires_on: date | None = None) -> FakeVerdict:
        return cls(ProviderOutcome.APPROVED, document_expires_on=document_expires_on)

    @classmethod
    def reject(cls, *reasons: KycReason, final: bool = False) -> FakeVerdict:
        outcome = ProviderOutcome.REJECTED_FINAL if final else ProviderOutcome.REJECTED_RETRYABLE
        return cls(outcome, tuple(reasons) or (KycReason.DATA_MISMATCH,))

    @classmethod
    def review(cls) -> FakeVerdict:
        return cls(ProviderOutcome.REVIEW)

    @classmethod
    def pending(cls) -> FakeVerdict:
        return cls(ProviderOutcome.PENDING)

    @classmethod
    def timeout(cls) -> FakeVerdict:
        """The provider reports that the applicant's session timed out."""
        return cls(ProviderOutcome.EXPIRED, (KycReason.SESSION_TIMEOUT,))

    @classmethod
    def watchlist(cls, outcome: ProviderOutcome = ProviderOutcome.REJECTED_FINAL) -> FakeVerdict:
        """A sanctions / watch-list match, reported with ``outcome``."""
        return cls(outcome, (KycReason.WATCHLIST_MATCH,), watchlist_hit=True)


@attrs.frozen
class FakeSession:
    reference: str
    request: ProviderSessionRequest
    verdict: FakeVerdict


class FakeKycProvider:
    """Implements the ``KycProvider`` port deterministically (references ``fake-kyc-1``...),
    including the optional ``cancel_session``."""

    def __init__(self, default: FakeVerdict | None = None, *, prefix: str = "fake-kyc") -> None:
        self.default = default or FakeVerdict.approve()
        self.sessions: list[FakeSession] = []
        self.cancelled: list[str] = []
        """References of sessions cancelled through ``cancel_session``, in order."""
        self._prefix = prefix
        self._scripts: dict[tuple[str, str], list[FakeVerdict]] = {}
        self._failures = 0
        self._lock = threading.Lock()

    def script(
        self,
        *verdicts: FakeVerdict,
        customer_id: str | None = None,
        document_number: str | None = None,
        family_name: str | None = None,
    ) -> None:
        """Verdicts for the next sessions that match, in order (then the default). Exactly
        one of ``customer_id``, ``document_number`` or ``family_name`` selects them; a
        customer's script wins over an input's."""
        keys = [
            (kind, value)
            for kind, value in (
                ("customer", customer_id),
                ("document", document_number),
                ("family_name", family_name),
            )
            if value is not None
        ]
        if len(keys) != 1 or not verdicts:
            raise ValueError("script needs verdicts and exactly one selector")
        with self._lock:
            self._scripts.setdefault(keys[0], []).extend(verdicts)

    def fail_next(self, times: int = 1) -> None:
        """The next ``times`` sessions fail as if the provider were down."""
        with self._lock:
            self._failures += times

    def open_session(self, request: ProviderSessionRequest) -> ProviderSession:
        with self._lock:
            if self._failures:
                self._failures -= 1
                raise KycProviderUnavailable("fake KYC provider is unavailable")
            verdict = self._next_verdict(request)
            reference = f"{self._prefix}-{len(self.sessions) + 1}"
            self.sessions.append(FakeSession(reference, request, verdict))
        return ProviderSession(reference=reference)

    def cancel_session(self, reference: str) -> None:
        """Implements the optional ``cancel_session`` of the port (``CancellableKycProvider``)."""
        with self._lock:
            self.cancelled.append(reference)

    def _next_verdict(self, request: ProviderSessionRequest) -> FakeVerdict:
        applicant = request.applicant
        candidates = [("customer", request.customer_id)]
        if applicant.document is not None:
            candidates.append(("document", applicant.document.number))
        candidates.append(("family_name", applicant.family_name))
        for key in candidates:
            queue = self._scripts.get(key)
            if queue:
                return queue.pop(0)
        return self.default

    def session_for(self, customer_id: str) -> FakeSession:
        """The customer's latest session."""
        for session in reversed(self.sessions):
            if session.request.customer_id == customer_id:
                return session
        raise LookupError(f"no session was opened for customer {customer_id}")

    def callback(
        self,
        customer_id: str | None = None,
        *,
        reference: str | None = None,
        verdict: FakeVerdict | None = None,
        callback_id: str | None = None,
    ) -> ProviderCallback:
        """The callback for a session (the customer's latest, or by reference), carrying
        its scripted verdict or ``verdict``."""
        if reference is None:
            if customer_id is None:
                raise ValueError("give a customer_id or a reference")
            session = self.session_for(customer_id)
        else:
            found = [s for s in self.sessions if s.reference == reference]
            if not found:
                raise LookupError(f"no session has reference {reference}")
            session = found[0]
        chosen = verdict or session.verdict
        return ProviderCallback(
            reference=session.reference,
            outcome=chosen.outcome,
            reason_codes=list(chosen.reason_codes),
            watchlist_hit=chosen.watchlist_hit,
            document_expires_on=chosen.document_expires_on,
            callback_id=callback_id,
        )


def fixed_keyring(*versions: int, current: int | None = None) -> PiiKeyring:
    """A keyring with fixed, publicly known keys: for tests only, never for real data."""
    versions = versions or (1,)

    def key(label: str) -> bytes:
        return hashlib.sha256(f"finfactory-test-{label}".encode()).digest()

    return PiiKeyring(
        {v: key(f"key-{v}") for v in versions}, hash_key=key("hash"), current_version=current
    )
