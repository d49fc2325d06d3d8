"""Rollback Lambda: moves all payment traffic back to on-prem in one Route 53 change, then stops
forward replication and notifies. Handler: payment_rollback.handler.lambda_handler."""

import os

SERVICE_NAME = os.getenv("POWERTOOLS_SERVICE_NAME", "rollback")
