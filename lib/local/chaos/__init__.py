"""`make chaos`: the cutover and the writer rollback under faults at every Task state, under a payment
load, each trial judged by an independent checker (README, "Fault matrix")."""
