"""The local environment's emulator (moto plus the project's shims, lib/local/emulator.py) in a child
process, reached over HTTP: its shims patch moto there, so the other tests' moto stays plain."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SERVE = """
import sys
from lib.local.emulator import Emulator
emulator = Emulator(0)
print(emulator.endpoint, flush=True)
sys.stdin.read()
emulator.stop()
"""


@contextmanager
def emulator_process() -> Iterator[str]:
    """Yield the emulator's endpoint URL; stop it on exit."""
    process = subprocess.Popen([sys.executable, "-c", _SERVE], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"the emulator did not start: {url!r}"
        yield url
    finally:
        process.stdin.close()
        process.wait(timeout=30)
