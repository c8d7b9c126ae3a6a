"""Sealing and opening a customer's personal data, keyed lookup hashes, and masking.

Each field is encrypted on its own with associated data naming the tenant, the customer and
the field, so a ciphertext moved to another customer, tenant or field fails to open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date

import attrs

from finfactory.primitives.identity.commands import (
    CreateCustomer,
    IdDocument,
    IdDocumentView,
)
from finfactory.primitives.identity.model import Customer, DocumentType, SealedPii
from finfactory.primitives.identity.ports import Applicant, ApplicantDocument, PiiCipher

FIELDS = (
    "given_name",
    "family_name",
    "birth_date",
    "email",
    "phone",
    "id_document",
    "document_refs",
)


@attrs.frozen(repr=False)
class PiiRecord:
    """A customer's personal data in clear; lives only for the duration of a call."""

    given_name: str
    family_name: str
    birth_date: date
    email: str | None
    phone: str | None
    id_document: IdDocument | None
    document_refs: tuple[str, ...]

    def __repr__(self) -> str:  # never in logs or tracebacks
        return "PiiRecord(<redacted>)"

    @classmethod
    def from_command(cls, command: CreateCustomer) -> PiiRecord:
        return cls(
            given_name=command.given_name,
            family_name=command.family_name,
            birth_date=command.birth_date,
            email=command.email,
            phone=command.phone,
            id_document=command.id_document,
            document_refs=tuple(command.document_refs),
        )

    def applicant(self) -> Applicant:
        doc = self.id_document
        return Applicant(
            given_name=self.given_name,
            family_name=self.family_name,
            birth_date=self.birth_date,
            document=None
            if doc is None
            else ApplicantDocument(doc.type, doc.number, doc.issuing_country, doc.expires_on),
            document_refs=self.document_refs,
        )


def _aad(tenant_id: str, customer_id: str, field: str) -> bytes:
    # Tenant ids cannot hold "|" and customer ids are UUIDs, so the parts cannot run together.
    return f"identity.customer|{tenant_id}|{customer_id}|{field}".encode()


def _encode(record: PiiRecord) -> dict[str, str]:
    values: dict[str, str | None] = {
        "given_name": record.given_name,
        "family_name": record.family_name,
        "birth_date": record.birth_date.isoformat(),
        "email": record.email,
        "phone": record.phone,
        "id_document": None if record.id_document is None else record.id_document.model_dump_json(),
        "document_refs": json.dumps(list(record.document_refs)) if record.document_refs else None,
    }
    return {k: v for k, v in values.items() if v is not None}


def seal(cipher: PiiCipher, tenant_id: str, customer_id: str, record: PiiRecord) -> SealedPii:
    fields = {
        name: cipher.encrypt(text.encode(), _aad(tenant_id, customer_id, name))
        for name, text in _encode(record).items()
    }
    return SealedPii(key_version=cipher.current_version, fields=fields)


def open_fields(
    cipher: PiiCipher, tenant_id: str, customer_id: str, sealed: Mapping[str, str]
) -> dict[str, str]:
    return {
        name: cipher.decrypt(token, _aad(tenant_id, customer_id, name)).decode()
        for name, token in sealed.items()
    }


def unseal(cipher: PiiCipher, customer: Customer) -> PiiRecord:
    text = open_fields(cipher, customer.tenant_id, customer.id, customer.pii.fields)
    doc = text.get("id_document")
    refs = text.get("document_refs")
    return PiiRecord(
        given_name=text["given_name"],
        family_name=text["family_name"],
        birth_date=date.fromisoformat(text["birth_date"]),
        email=text.get("email"),
        phone=text.get("phone"),
        id_document=None if doc is None else IdDocument.model_validate_json(doc),
        document_refs=tuple(json.loads(refs)) if refs else (),
    )


def reseal(cipher: PiiCipher, customer: Customer) -> SealedPii:
    """The same values under the cipher's current key."""
    text = open_fields(cipher, customer.tenant_id, customer.id, customer.pii.fields)
    fields = {
        name: cipher.encrypt(value.encode(), _aad(customer.tenant_id, customer.id, name))
        for name, value in text.items()
    }
    return SealedPii(key_version=cipher.current_version, fields=fields)


# -- keyed lookup hashes ---------------------------------------------------------------------


def document_hash(cipher: PiiCipher, tenant_id: str, doc: IdDocument) -> str:
    value = f"{doc.type.value}|{doc.issuing_country}|{doc.number}"
    return cipher.lookup_hash(f"identity.document|{tenant_id}", value)


def email_hash(cipher: PiiCipher, tenant_id: str, email: str) -> str:
    return cipher.lookup_hash(f"identity.email|{tenant_id}", email)


def phone_hash(cipher: PiiCipher, tenant_id: str, phone: str) -> str:
    return cipher.lookup_hash(f"identity.phone|{tenant_id}", phone)


def request_digest(cipher: PiiCipher, tenant_id: str, action: str, request_json: str) -> str:
    """Keyed fingerprint of a request holding personal data, for the idempotency record
    (a plain hash of a name and birth date could be confirmed by guessing)."""
    return cipher.lookup_hash(f"identity.request|{tenant_id}|{action}", request_json)


# -- masking ---------------------------------------------------------------------------------


def mask_name(value: str) -> str:
    return value[0] + "***"


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[0]}***@{domain}"


def mask_tail(value: str, keep: int = 4) -> str:
    shown = value[-keep:] if len(value) > keep else ""
    return "*" * (len(value) - len(shown)) + shown


def document_view(doc: IdDocument, *, clear: bool) -> IdDocumentView:
    return IdDocumentView.model_construct(
        type=DocumentType(doc.type),
        issuing_country=doc.issuing_country,
        number=doc.number if clear else mask_tail(doc.number),
        expires_on=doc.expires_on if clear else None,
    )
