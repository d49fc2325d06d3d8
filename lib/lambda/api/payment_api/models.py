"""The request body of POST /payments, validated with pydantic (Powertools Parser)."""

from __future__ import annotations

import re
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from payment_api.currencies import CURRENCY_CODES

# numeric(18,2): at most 16 digits before the point, 2 after; no sign, exponent or leading zeros.
AMOUNT_PATTERN = re.compile(r"(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,2})?")
# the schema's CHECK on payments.payment_token
PAYMENT_TOKEN_PATTERN = r"^tok_[A-Za-z0-9_]{8,64}$"


class PaymentRequest(BaseModel):
    """A new payment. Unknown fields are refused, so nothing (a card number, say) slips through."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: UUID
    amount: Decimal
    currency: str
    payment_token: str | None = Field(default=None, pattern=PAYMENT_TOKEN_PATTERN)

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_is_a_positive_decimal_string(cls, value: object) -> Decimal:
        # A JSON number would already have been through a binary float: money travels as a string.
        if not isinstance(value, str) or not AMOUNT_PATTERN.fullmatch(value):
            raise PydanticCustomError(
                "amount_format",
                'must be a decimal string with at most 16 integer digits and 2 decimal places, e.g. "12.50"',
            )
        amount = Decimal(value)
        if amount <= 0:
            raise PydanticCustomError("amount_not_positive", "must be greater than 0")
        return amount

    @field_validator("currency", mode="before")
    @classmethod
    def _currency_is_iso_4217(cls, value: object) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
            raise PydanticCustomError("currency_format", 'must be an ISO 4217 code of 3 uppercase letters, e.g. "EUR"')
        if value not in CURRENCY_CODES:
            raise PydanticCustomError("currency_unknown", "is not an ISO 4217 currency one can pay in")
        return value
