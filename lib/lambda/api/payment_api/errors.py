"""Domain errors. Each carries the HTTP status the handler answers with and a message a client
(or an operator reading the log) can act on. The shared runtime's ConfigurationError
(payment_common.errors: the environment, the secret or the writer parameter is wrong) is answered
503 "configuration_error" by the handler: a deployment fault, reported as unavailable. No message ever contains a credential or request data
beyond the names of fields."""

from __future__ import annotations

from http import HTTPStatus


class PaymentApiError(Exception):
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict:
        return {"error": self.code, "message": self.message}


class InvalidRequest(PaymentApiError):
    """The request is malformed; `errors` names every offending field with what is wrong."""

    status = HTTPStatus.BAD_REQUEST
    code = "invalid_request"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors))

    @classmethod
    def field(cls, field: str, problem: str) -> InvalidRequest:
        return cls([(field, problem)])

    def to_body(self) -> dict:
        return {
            **super().to_body(),
            "fields": [field for field, _ in self.errors],
            "errors": [{"field": field, "message": problem} for field, problem in self.errors],
        }


class UnknownCustomer(PaymentApiError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "unknown_customer"

    def __init__(self, customer_id: object) -> None:
        super().__init__(f"customer_id: no customer {customer_id}")

    def to_body(self) -> dict:
        return {**super().to_body(), "fields": ["customer_id"]}


class IdempotencyConflict(PaymentApiError):
    status = HTTPStatus.CONFLICT
    code = "idempotency_conflict"

    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key was already used for a different request body; "
            "use a new key for a new payment, or resend the original body"
        )


class PaymentNotFound(PaymentApiError):
    status = HTTPStatus.NOT_FOUND
    code = "payment_not_found"

    def __init__(self, payment_id: object) -> None:
        super().__init__(f"no payment {payment_id}")


class DatabaseUnavailable(PaymentApiError):
    """The database cannot be reached or used right now; `reason` is safe to show to callers."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "database_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WriterFenced(DatabaseUnavailable):
    """The database refused the write because it is not the writer (fenced during a cutover) or the
    fence ended the session. The client retries with the same Idempotency-Key after `retry_after`."""

    code = "writer_fenced"
    retry_after = 2  # seconds: a data cutover pauses writes for a few seconds

    def __init__(self) -> None:
        super().__init__("the database is not accepting writes right now (writer switch in progress); "
                         "retry with the same Idempotency-Key")


class PrivilegeRefused(PaymentApiError):
    """The database refused an operation for lack of privilege. On a write, the writer layer turns it
    into WriterFenced when the side is fenced (the role lost its payment_writer membership, or the
    writer parameter names the other side now); otherwise it is a missing grant — a deployment fault,
    answered 500 and logged apart, never turned into a retry. Clients see only "internal error"."""

    code = "internal_error"

    def __init__(self, *, write: bool, writer_member: bool | None, detail: str, session_ended: bool = False) -> None:
        super().__init__("internal error")
        self.write = write
        self.writer_member = writer_member  # None: not checked (a read, an ended session) or no payment_writer
        self.session_ended = session_ended  # the session was ended before its membership could be checked
        self.detail = detail  # the server's primary message, e.g. "permission denied for table payments"
        self.side: str | None = None
