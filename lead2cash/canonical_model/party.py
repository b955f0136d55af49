"""Parties: the customer (a Salesforce Account, a Lago customer, an SAP business partner) and its contacts."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, Field

from lead2cash.canonical_model.base import (
    CanonicalEntity,
    CanonicalModel,
    CountryCode,
    CurrencyCode,
    NonEmptyStr,
)

# Deliberately loose: one @, no spaces, a dot in the domain. Full RFC 5322 checking belongs to the mail
# system; here we only catch values that are clearly not addresses (a name, a phone number).
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _check_email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"email {value!r} is not an e-mail address")
    return value


Email = Annotated[NonEmptyStr, AfterValidator(_check_email)]


class Address(CanonicalModel):
    """A postal address. ``country`` is ISO 3166-1 alpha-2 (upper-cased on input)."""

    line1: NonEmptyStr | None = None
    line2: NonEmptyStr | None = None
    city: NonEmptyStr | None = None
    region: NonEmptyStr | None = None
    """State, province or county, as the source spells it (ISO 3166-2 subdivision codes preferred)."""
    postal_code: NonEmptyStr | None = None
    country: CountryCode


class Contact(CanonicalEntity):
    """A person at the customer (Salesforce Contact; Lago and SAP keep only the billing e-mail)."""

    last_name: NonEmptyStr
    first_name: NonEmptyStr | None = None
    email: Email | None = None
    phone: NonEmptyStr | None = None
    title: NonEmptyStr | None = None

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}" if self.first_name else self.last_name


class Customer(CanonicalEntity):
    """The paying party. ``refs`` carries e.g. the Salesforce Account id, Lago external id, SAP BP number."""

    name: NonEmptyStr
    legal_name: NonEmptyStr | None = None
    email: Email | None = None
    """Billing e-mail (where invoices go)."""
    phone: NonEmptyStr | None = None
    tax_id: NonEmptyStr | None = None
    """VAT / tax registration number as issued (e.g. ``DE123456789``)."""
    currency: CurrencyCode | None = None
    """Preferred billing currency, if the source system fixes one."""
    language: NonEmptyStr | None = None
    """Preferred document language (BCP 47 tag, e.g. ``de`` or ``en-GB``)."""
    net_payment_term_days: int | None = Field(default=None, ge=0, le=365)
    billing_address: Address | None = None
    shipping_address: Address | None = None
    contacts: tuple[Contact, ...] = ()

    @property
    def country(self) -> str | None:
        """Billing country, the one that drives tax and the SAP business partner's address."""
        return self.billing_address.country if self.billing_address else None
