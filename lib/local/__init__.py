"""The local environment: every stack applied to an AWS-compatible API on this machine (a moto
server), and the shims, limits and tooling that make that honest. Nothing here reaches an
environment without an `[emulator]` section in its config."""
