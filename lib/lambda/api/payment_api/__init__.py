"""Payment API Lambda: health, create payment (idempotent), get payment, behind the ALB.

`handler` is the Lambda entry point (`payment_api.handler.lambda_handler`); `payments` is the
core that works on a psycopg2 connection, `database` finds and keeps that connection.
"""
