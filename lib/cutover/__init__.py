"""The operator CLI of the cutover controller:

    python -m lib.cutover status [--json]
    python -m lib.cutover advance <phase> [--bake-minutes N]
    python -m lib.cutover cutover
    python -m lib.cutover rollback --reason "..." [--dry-run] [--json]
    python -m lib.cutover rollback --resume --reason "..."

The environment comes from PAYMENT_MIGRATION_ENV (default dev), its config from lib.config; AWS
from boto3's default credentials, or, for an environment with an [emulator] section (local), the
emulator's endpoint and test credentials. Everything it touches is found by the names the stacks
give (lib.names).
"""
