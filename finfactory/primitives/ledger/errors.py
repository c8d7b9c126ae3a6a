"""Ledger errors; codes are stable."""

from __future__ import annotations

from finfactory.kernel.errors import AlreadyExists, DomainError, NotFound


class AccountNotFound(NotFound):
    code = "ledger.account_not_found"


class JournalNotFound(NotFound):
    code = "ledger.journal_not_found"


class HoldNotFound(NotFound):
    code = "ledger.hold_not_found"


class DuplicateAccountCode(AlreadyExists):
    code = "ledger.duplicate_account_code"


class DuplicateReference(AlreadyExists):
    code = "ledger.duplicate_reference"


class UnbalancedJournal(DomainError):
    code = "ledger.unbalanced_journal"


class CurrencyMismatch(DomainError):
    code = "ledger.currency_mismatch"


class BalanceBoundExceeded(DomainError):
    """The posting or hold would take an account past its balance bound."""

    code = "ledger.insufficient_funds"


class AccountNotActive(DomainError):
    code = "ledger.account_not_active"


class AccountNotEmpty(DomainError):
    code = "ledger.account_not_empty"


class HoldNotPending(DomainError):
    code = "ledger.hold_not_pending"


class CaptureExceedsHold(DomainError):
    code = "ledger.capture_exceeds_hold"


class AlreadyReversed(DomainError):
    code = "ledger.already_reversed"


class AccountClosed(DomainError):
    code = "ledger.account_closed"


class HoldExpiryInPast(DomainError):
    code = "ledger.hold_expiry_in_past"


class AmountOutOfRange(DomainError):
    """A total would leave the signed 64-bit range the ledger stores amounts in."""

    code = "ledger.amount_out_of_range"


class CurrencyNotAllowed(DomainError):
    code = "ledger.currency_not_allowed"


class BatchTooLarge(DomainError):
    code = "ledger.batch_too_large"
