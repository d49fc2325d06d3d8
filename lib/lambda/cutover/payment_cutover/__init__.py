"""Cutover controller steps: fence a side, measure replication lag with a marker, advance sequences,
switch the replication direction, open a side, switch the writer. Handler:
payment_cutover.handler.lambda_handler; each step is a plain function in payment_cutover.steps."""

import os

SERVICE_NAME = os.getenv("POWERTOOLS_SERVICE_NAME", "cutover")
