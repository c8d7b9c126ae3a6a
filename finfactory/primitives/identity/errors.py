"""Identity errors; codes are stable. Messages and details never carry personal data (they
are kept in idempotency records and audit reasons)."""

from __future__ import annotations

from finfactory.kernel.errors import (
    AlreadyExists,
    ConfigurationError,
    DomainError,
    FinFactoryError,
    NotFound,
    ValidationError,
)


class InvalidIdentityInput(ValidationError):
    """A command or query argument is malformed; nothing was written."""

    code = "identity.invalid_input"


class CustomerNotFound(NotFound):
    code = "identity.customer_not_found"


class KycNotFound(NotFound):
    code = "identity.kyc_not_found"


class UnknownProviderReference(NotFound):
    """A provider callback names a session this tenant never opened."""

    code = "identity.unknown_provider_reference"


class DuplicateDocument(AlreadyExists):
    """Another customer of the tenant already holds this identity document."""

    code = "identity.duplicate_document"


class UnknownTier(DomainError):
    code = "identity.unknown_tier"


class KycInProgress(DomainError):
    code = "identity.kyc_in_progress"


class KycRejectedFinal(DomainError):
    """The customer's KYC was rejected for good; no new attempt is allowed."""

    code = "identity.kyc_rejected_final"


class AlreadyVerified(DomainError):
    """The customer already holds a valid verification at this tier or a higher one."""

    code = "identity.already_verified"


class DocumentRequired(DomainError):
    code = "identity.document_required"


class DocumentNotAccepted(DomainError):
    code = "identity.document_not_accepted"


class DocumentExpired(DomainError):
    code = "identity.document_expired"


class IllegalKycTransition(DomainError):
    """A KYC case was asked to move along an edge its state machine does not have."""

    code = "identity.illegal_transition"


class PiiIntegrityError(FinFactoryError):
    """Stored personal data failed authentication: tampered with, moved to another row or
    field, or sealed under a key the keyring does not hold."""

    code = "identity.pii_integrity"


class UnknownKeyVersion(ConfigurationError):
    code = "identity.unknown_key_version"


class InvalidKeyring(ConfigurationError):
    code = "identity.invalid_keyring"


class KycProviderUnavailable(FinFactoryError):
    """The KYC provider could not be reached; nothing was written and the command may be
    retried (it is not a rejection, so it is not stored under the idempotency key)."""

    code = "identity.provider_unavailable"
