"""Validation Lambda: proves that the target database (Aurora) holds exactly the rows of the source
(on-prem), or names the keys that differ. `engine` is plain Python; `handler` is the Lambda entry."""

from .engine import Status, TableResult, ValidationError, ValidationOptions, ValidationReport, validate

__all__ = ["Status", "TableResult", "ValidationError", "ValidationOptions", "ValidationReport", "validate"]
