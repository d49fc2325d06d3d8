"""The local PostgreSQL harness the tests, the rehearsal and the fault matrix share: real servers
(server.py: initdb + pg_ctl, TLS only, scram-sha-256), the certificate authority that signs their
certificates (tls.py), and the replicated pair playing on-prem and Aurora (replication.py)."""
