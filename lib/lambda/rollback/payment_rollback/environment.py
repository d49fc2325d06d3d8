"""Reading the function's environment: every value the stack sets, checked before any AWS call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from payment_common.errors import ConfigurationError


def required(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The named variables, stripped; all missing or blank ones named in one error."""
    values = {name: environ.get(name, "").strip() for name in names}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigurationError(
            f"missing environment variable(s) {', '.join(missing)}: the stack that deploys this "
            "function sets them; check its configuration"
        )
    return values


def name_list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of names (alarm names), in order, without blanks or repeats. A list
    that names nothing is an error: checking no alarm must never pass for checking them all."""
    names = tuple(dict.fromkeys(part.strip() for part in environ.get(name, "").split(",")))
    names = tuple(part for part in names if part)
    if not names:
        raise ConfigurationError(
            f"environment variable {name} names no alarm: it must be a comma-separated list of "
            "alarm names; check the stack that deploys this function"
        )
    return names
