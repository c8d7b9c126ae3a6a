"""The provider session of one ``start_kyc`` call.

The session is opened inside the command's transaction, after every check (a refused
command never reaches the vendor) and before the rows are written. Two things can still go
wrong after the vendor said yes, and both would leave a vendor session no callback can match:

* the transaction loses a race and the command runner runs the handler again: the session
  opened the first time is reused (same KYC id, same vendor session) when the request is the
  same, so one call opens one vendor session;
* the call fails for good, or ends up returning another attempt (an idempotent replay): the
  session is cancelled at the provider, when its adapter offers ``cancel_session``.

What remains: in a caller's transaction (``uow=``) the commit is the caller's, so a session
of a command that succeeded but whose transaction the caller then rolls back is not cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from finfactory.primitives.identity.errors import KycProviderUnavailable
from finfactory.primitives.identity.ports import KycProvider, ProviderSessionRequest

MAX_REFERENCE = 128
_log = logging.getLogger("finfactory.identity")


@attrs.define
class SessionOpener:
    provider: KycProvider
    opened: list[tuple[ProviderSessionRequest, str]] = attrs.field(factory=list)

    def open(
        self, new_id: Callable[[], str], request_for: Callable[[str], ProviderSessionRequest]
    ) -> tuple[str, str]:
        """``(kyc_id, provider reference)`` for the attempt ``request_for(kyc_id)`` describes."""
        if self.opened:
            earlier, reference = self.opened[-1]
            if request_for(earlier.kyc_id) == earlier:
                return earlier.kyc_id, reference
        kyc_id = new_id()
        request = request_for(kyc_id)
        session = self.provider.open_session(request)
        opened = getattr(session, "reference", None)
        if not isinstance(opened, str) or not 0 < len(opened) <= MAX_REFERENCE:
            raise KycProviderUnavailable("the provider returned no usable session reference")
        self.opened.append((request, opened))
        return kyc_id, opened

    def release(self, kept_kyc_id: str | None) -> None:
        """Cancel every session this call opened except the one of ``kept_kyc_id``."""
        cancel = getattr(self.provider, "cancel_session", None)
        for request, reference in self.opened:
            if request.kyc_id == kept_kyc_id or not callable(cancel):
                continue
            try:
                cancel(reference)
            except Exception:  # the command's own outcome matters more than the clean-up
                _log.warning(
                    "KYC provider session of attempt %s could not be cancelled",
                    request.kyc_id,
                    exc_info=True,
                )
        self.opened.clear()
