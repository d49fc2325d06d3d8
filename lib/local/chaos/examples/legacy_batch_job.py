"""An example fault file for `make chaos FAULTS=lib/local/chaos/examples/legacy_batch_job.py`.

A payments estate's own quirk: a nightly batch job that logs in as the application role and holds a
transaction open on the current writer while it works. Injected at the states where the old writer
is fenced and proven; the fence must end it (or wait for it) and nothing it wrote may reach a
replicated table after the fence.

A fault is any object with `name`, `states` (the Task states where it applies; None: all of them),
`inject(world)` and `heal(world)`; `hold_seconds` (default 2) says how long after the injection it is
healed. `world.connect(side, role)` gives an autocommit psycopg2 connection to "onprem" or "aws" as
that role ("postgres": the superuser); `world.source_target()` names the sides the trial's execution
moves the writer from and to.
"""

from __future__ import annotations


class BatchJobHoldsATransaction:
    name = "batch-job-transaction"
    states = ("Fence", "ProveFence")
    hold_seconds = 3.0

    def __init__(self) -> None:
        self.conn = None

    def inject(self, world) -> None:
        source, _ = world.source_target()
        self.conn = world.connect(source, "payment_app")
        self.conn.autocommit = False
        with self.conn.cursor() as cur:  # a write the job never commits in time: the fence must end it
            cur.execute("INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', 'batch', 'nightly')")

    def heal(self, world) -> None:
        try:
            self.conn.commit()  # refused once the fence ended the session: nothing reaches the table
        except Exception:  # noqa: BLE001 - what the fence is for
            pass
        finally:
            self.conn.close()


FAULTS = [BatchJobHoldsATransaction()]
