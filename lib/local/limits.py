"""What the local deploy cannot do as AWS would, declared in one place with the moto API or
behaviour that causes it. `make deploy-local` fails on anything not declared here: a resource that
does not apply, or an attribute that drifts on the re-plan after the apply.

Real AWS keeps everything listed here; only the local environment (a config with [emulator]) is
affected. Shims that fix an emulator bug in place (lib/local/emulator.py, SHIMS) are preferred to
an entry here and keep their resources in the local deploy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Excluded:
    resource_type: str
    reason: str


@dataclass(frozen=True)
class EmulatorDifference:
    """An attribute that shows a change on the re-plan only because moto reads it back
    differently. `address` and `attribute` are fnmatch patterns over the resource address in its
    stack (`aws_security_group.database`) and the attribute name (`ingress`)."""

    stack: str  # the stack's area: network, security, …
    address: str
    attribute: str
    reason: str


# Resource types left out of the local stacks (synthesis removes them when the config has an
# [emulator] section). Each names the moto API it would need.
EXCLUDED: tuple[Excluded, ...] = (
    Excluded("aws_route53_key_signing_key",
             "moto has no CreateKeySigningKey (Route 53 DNSSEC): the zone's key-signing key cannot be created"),
    Excluded("aws_route53_hosted_zone_dnssec",
             "moto has no EnableHostedZoneDNSSEC, and the key-signing key it needs is not created either"),
    Excluded("aws_backup_selection", "moto has no CreateBackupSelection (AWS Backup)"),
    Excluded("aws_cloudwatch_composite_alarm",
             "moto has no PutCompositeAlarm; the rehearsal drives the composite's children instead"),
    Excluded("aws_dms_event_subscription", "moto has no CreateEventSubscription (DMS task events)"),
)

EXCLUDED_TYPES = frozenset(item.resource_type for item in EXCLUDED)

# Attributes that drift on the re-plan after a local apply, only because of how moto reads them back.
EMULATOR_DIFFERENCES: tuple[EmulatorDifference, ...] = ()
