"""The runtime every Lambda zip shares (lib/bundler.py puts this package into each): the two sides,
the writer record, database settings, TLS, credentials and connecting, the base errors, AWS client
configuration and the Step Functions helpers. Written once, so the functions cannot disagree on
what a writer record is or whether an unreadable secret is worth a retry."""
