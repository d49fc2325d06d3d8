"""A certificate authority made for one run (openssl), and server certificates it signs, so the local
servers are verified as Aurora is: sslmode=verify-full against a CA file.

`session_ca()` is the process's CA, in a temporary directory removed when the process exits; a run
that keeps its files (the rehearsal) makes its own with `CertificateAuthority.create`. A CA's
certificate is world-readable (its directory too): a subscriber's server process, running as another
user, verifies its publisher with it. Keys are EC P-256: quick to make on a loaded machine.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

# What a server's certificate names: how clients reach it (by address or by name).
SERVER_NAMES = ("127.0.0.1", "localhost")
DAYS = "2"
KEY_OPTIONS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, what: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"openssl: {what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")


def _subject_alt_names(names: tuple[str, ...]) -> str:
    def entry(name: str) -> str:
        return f"IP:{name}" if name.replace(".", "").isdigit() or ":" in name else f"DNS:{name}"

    return ", ".join(entry(name) for name in names)


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA whose key stays in `directory`."""

    directory: Path
    name: str

    @property
    def certificate(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @classmethod
    def create(cls, directory: Path, name: str = "payment-migration local CA") -> CertificateAuthority:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        ca = cls(directory, name)
        _openssl("req", "-x509", *KEY_OPTIONS, "-days", DAYS, "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", str(ca.key), "-out", str(ca.certificate), what=f"the CA {name!r}")
        os.chmod(ca.key, 0o600)
        os.chmod(ca.certificate, 0o644)
        return ca

    def issue(self, key: Path, certificate: Path, names: tuple[str, ...] = SERVER_NAMES) -> None:
        """A server key and a certificate for `names` (IP or DNS subject alternative names; the
        first is also the common name), signed by this CA."""
        key, certificate = Path(key), Path(certificate)
        request = certificate.with_name(certificate.name + ".csr")
        extensions = certificate.with_name(certificate.name + ".ext")
        extensions.write_text(f"subjectAltName = {_subject_alt_names(names)}\n"
                              "basicConstraints = critical, CA:FALSE\n"
                              "keyUsage = critical, digitalSignature\n"
                              "extendedKeyUsage = serverAuth\n")
        try:
            _openssl("req", "-new", *KEY_OPTIONS, "-subj", f"/CN={names[0]}", "-keyout", str(key),
                     "-out", str(request), what=f"a key for {', '.join(names)}")
            # a random serial, not -CAcreateserial: its ca.srl file, read and written by two servers'
            # certificates issued side by side, came out truncated ("Unable to load number")
            _openssl("x509", "-req", "-in", str(request), "-CA", str(self.certificate), "-CAkey", str(self.key),
                     "-set_serial", hex(secrets.randbits(120) | 1 << 119), "-days", DAYS, "-extfile", str(extensions), "-out", str(certificate),
                     what=f"a certificate for {', '.join(names)}")
        finally:
            request.unlink(missing_ok=True)
            extensions.unlink(missing_ok=True)
        os.chmod(key, 0o600)


_lock = threading.Lock()
_session: dict[str, CertificateAuthority] = {}


def session_ca() -> CertificateAuthority:
    """This process's CA, made on first use (thread-safe: servers start side by side)."""
    with _lock:
        if "ca" not in _session:
            directory = Path(tempfile.mkdtemp(prefix="pg-ca-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            _session["ca"] = CertificateAuthority.create(directory)
        return _session["ca"]
