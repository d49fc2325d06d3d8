"""Rollback and traffic control of the payment migration (one zip, two handlers):

- payment_rollback.handler.lambda_handler: the one-call emergency rollback. All traffic back to
  on-prem in one Route 53 change; when AWS is the writer, the fenced writer rollback (the rollback
  state machine) waited for; a notification and metrics.
- payment_rollback.traffic.lambda_handler: the controller's traffic steps (weights, alarms,
  replication alarm actions, status).
"""

import os

SERVICE_NAME = os.getenv("POWERTOOLS_SERVICE_NAME", "rollback")
