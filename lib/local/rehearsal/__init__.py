"""`make rehearse`: the operator's whole runbook on this machine — no AWS, no Docker — under a steady
payment write load, with every payment counted.

    python -m lib.local.rehearsal [--env local] [--rate 8] [--clients 4] [--bake-checks 2] [--bake-interval 5]

Two real PostgreSQL servers (TLS) play on-prem and Aurora; PostgreSQL logical replication stands in
for the DMS tasks; every stack is applied to the emulator (a moto server in this process, Step
Functions executions on); the deployed Lambda functions run in-process; the controller's executions
take the system from legacy-sync through canary, split, the data cutover and aws-primary to a fault
and the fenced rollback (lib/local/rehearsal/runbook.py lists the steps).

Writes build/rehearsal/report.json, acknowledged.txt (every idempotency key the API acknowledged)
and final_payments.txt (every payment row's key in the final writer, duplicates included), and
keeps the logs (logs/moto.log, logs/lambdas.log, logs/invocations.jsonl, executions/,
postgres/<side>/server.log, deploy/logs/). Exits non-zero when a step fails, a payment is lost or
duplicated, or a target is missed.
"""
