"""Building blocks shared by every canonical model: config, field types, system references, entity base."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    StringConstraints,
)
from pydantic_core import core_schema

from lead2cash.canonical_model._decimal import to_decimal
from lead2cash.canonical_model.country import normalize_country
from lead2cash.canonical_model.currency import normalize_currency


class CanonicalModel(BaseModel):
    """Base of every canonical value: immutable; unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
"""Text with at least one non-blank character (surrounding whitespace stripped)."""

CurrencyCode = Annotated[str, BeforeValidator(normalize_currency)]
"""ISO 4217 alphabetic code, normalized to upper case."""

CountryCode = Annotated[str, BeforeValidator(normalize_country)]
"""ISO 3166-1 alpha-2 code, normalized to upper case."""

MAX_QUANTITY: Final = Decimal(10**9)
# More quantity decimals than this is noise from a float somewhere upstream, not a real unit of measure.
MAX_QUANTITY_DECIMALS: Final = 9


def _quantity(value: object) -> Decimal:
    return to_decimal(value, what="quantity")


def _check_quantity_bounds(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError(f"quantity must be >= 0, got {value}")
    if value > MAX_QUANTITY:
        raise ValueError(f"quantity must be <= {MAX_QUANTITY}, got {value}")
    if value != value.quantize(Decimal(1).scaleb(-MAX_QUANTITY_DECIMALS)):
        raise ValueError(f"quantity {value} has more than {MAX_QUANTITY_DECIMALS} decimal places")
    return value


def _check_quantity(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(f"quantity must be > 0, got {value}")
    return _check_quantity_bounds(value)


def _percent(value: object) -> Decimal:
    return to_decimal(value, what="percent")


def _check_percent(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= Decimal(100):
        raise ValueError(f"percent must be within 0..100, got {value}")
    return value


# Fixed-point text in JSON: Decimal's own str() would write Decimal("1E+3") as "1E+3".
_AS_PLAIN_TEXT = PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")

Quantity = Annotated[Decimal, BeforeValidator(_quantity), AfterValidator(_check_quantity), _AS_PLAIN_TEXT]
"""Decimal quantity, 0 < q <= 10**9, never from a float."""

NonNegativeQuantity = Annotated[
    Decimal, BeforeValidator(_quantity), AfterValidator(_check_quantity_bounds), _AS_PLAIN_TEXT
]
"""Like Quantity but 0 is allowed: a billed usage charge may have consumed zero units."""

Percent = Annotated[Decimal, BeforeValidator(_percent), AfterValidator(_check_percent), _AS_PLAIN_TEXT]
"""Decimal percentage within 0..100 (``19`` means 19 %), never from a float."""

_SYSTEM_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class SystemRefs(Mapping[str, str]):
    """Immutable mapping of system name -> that system's id for the entity.

    ``{"salesforce": "006...", "lago": "...", "sap": "..."}``. A real Mapping (not a dict) so that frozen
    entities stay hashable and nobody can edit a reference in place; it serializes as a JSON object.
    """

    __slots__ = ("_items",)

    def __init__(self, refs: Mapping[str, str] | None = None, /, **more: str) -> None:
        merged = {**(refs or {}), **more}
        for system, ref in merged.items():
            if not isinstance(system, str) or not _SYSTEM_NAME.fullmatch(system):
                raise ValueError(f"refs: system name {system!r} must match [a-z][a-z0-9_]*")
            if not isinstance(ref, str) or not ref.strip():
                raise ValueError(f"refs[{system!r}]: id must be a non-empty string, got {ref!r}")
        self._items: dict[str, str] = {k: merged[k] for k in sorted(merged)}

    def __getitem__(self, system: str) -> str:
        return self._items[system]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"SystemRefs({self._items!r})"

    def with_ref(self, system: str, ref: str) -> SystemRefs:
        """A copy with ``system`` set to ``ref`` (the original is unchanged)."""
        return SystemRefs({**self._items, system: ref})

    def to_dict(self) -> dict[str, str]:
        return dict(self._items)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        as_dict = core_schema.dict_schema(core_schema.str_schema(), core_schema.str_schema())

        def validate(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> SystemRefs:
            return value if isinstance(value, SystemRefs) else cls(handler(value))

        return core_schema.no_info_wrap_validator_function(
            validate,
            as_dict,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda refs: refs.to_dict(), return_schema=as_dict
            ),
        )


class CanonicalEntity(CanonicalModel):
    """A record with an identity that routes track across systems.

    ``id`` is the hub's canonical id; ``refs`` holds the id of the same record in each system; ``version``
    increases with every change the hub accepts, and with ``id`` makes the idempotency key of an effect.
    ``source_modstamp`` keeps the source system's own change stamp (e.g. Salesforce SystemModstamp) for
    watermarking and conflict diagnosis.
    """

    entity_type: ClassVar[str] = "CanonicalEntity"

    id: NonEmptyStr
    refs: SystemRefs = Field(default_factory=SystemRefs)
    version: int = Field(default=1, ge=1, strict=True)
    source_modstamp: str | None = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.entity_type = cls.__name__

    def ref(self, system: str) -> str | None:
        """This entity's id in ``system``, or None if it has none there yet."""
        return self.refs.get(system)

    @property
    def version_key(self) -> str:
        """``<entity_type>:<id>:v<version>`` — stable across processes, suitable for idempotency keys."""
        return f"{self.entity_type}:{self.id}:v{self.version}"
