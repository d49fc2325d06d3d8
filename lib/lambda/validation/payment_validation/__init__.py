"""Validation Lambda: proves that the target database (Aurora) holds exactly the rows of the source
(on-prem), or names the keys that differ. `engine` is plain Python; `handler` is the Lambda entry;
`chunks` and `merge` let a state machine cut large tables into key ranges checked in parallel."""

from .chunks import Chunk
from .engine import Status, TableResult, ValidationError, ValidationOptions, ValidationReport, plan, validate
from .merge import merge

__all__ = ["Chunk", "Status", "TableResult", "ValidationError", "ValidationOptions", "ValidationReport", "merge",
           "plan", "validate"]
