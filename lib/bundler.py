"""Builds each Lambda folder (lib/lambda/<name>) into a deterministic zip for the Lambda runtime.

A bundle is the folder's code, the shared runtime every function uses (the sibling folder
lib/lambda/common: the package payment_common, no requirements of its own), plus its requirements.txt installed for the runtime's platform and
Python version (wheels only), zipped with sorted entries, fixed timestamps and permissions, so the
same inputs always give the same bytes and Terraform sees no change to deploy.

A bundle whose requirements install a PostgreSQL driver also gets the Amazon RDS CA bundle
(lib/certs/rds-global-bundle.pem, its SHA-256 checked against RDS_CA_BUNDLE_SHA256) at
certs/rds-global-bundle.pem, where the Lambdas look for it by default (sslmode=verify-full).
`extra_files` adds more files (e.g. the on-prem database's CA) at the names given.

A manifest beside each zip (`<name>.zip.json`) records a hash of the inputs (code, requirements,
added files, Python version, platform, bundler version); when it matches and the zip is intact, the
build is skipped. Requirements should pin the whole dependency closure: a new release of an unpinned
transitive dependency is not an input the hash can see.

    python -m lib.bundler [--python-version 3.12] [--platform manylinux2014_x86_64]
                          [--out build/lambda] [--pip-cache build/pip-cache] [--force] [name ...]

builds the named folders, or every folder under lib/lambda/ that has a requirements.txt (the shared
runtime has none: it is not a function, it goes into each).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# Bump when the bundle layout changes, so bundles cached by an older bundler are rebuilt.
BUNDLER_VERSION = "3"

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_ROOT = REPO_ROOT / "lib" / "lambda"
DEFAULT_OUT_DIR = REPO_ROOT / "build" / "lambda"
DEFAULT_PIP_CACHE_DIR = REPO_ROOT / "build" / "pip-cache"
DEFAULT_PYTHON_VERSION = "3.12"
DEFAULT_PLATFORM = "manylinux2014_x86_64"

ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold
ZIP_COMPRESSLEVEL = 9
REQUIREMENTS = "requirements.txt"
# The folder beside the functions' folders whose code goes into every bundle.
SHARED_FOLDER = "common"

SKIPPED_DIR_NAMES = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})
# Written by pip, unused at run time, and not reproducible: the installer's name, a list with
# hashes of files we drop, absolute paths of the build machine.
SKIPPED_DIST_INFO_FILES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
# Console scripts: their shebang names this machine's interpreter, and Lambda never runs them.
SKIPPED_DEPENDENCY_TOP_DIRS = frozenset({"bin"})

# The CA bundle the Lambdas verify Aurora's certificate with; where it came from and how to refresh
# it (and this checksum): lib/certs/README.md.
RDS_CA_BUNDLE = REPO_ROOT / "lib" / "certs" / "rds-global-bundle.pem"
RDS_CA_BUNDLE_SHA256 = "2c151768edd48e9ef6719de74fdcbdebe290d1e87bc02ce9014ea6eea557d2a0"
RDS_CA_BUNDLE_ARCNAME = "certs/rds-global-bundle.pem"
# A requirement on one of these (normalized names) means the function connects to PostgreSQL.
POSTGRES_DRIVERS = frozenset({"psycopg2", "psycopg2-binary", "psycopg", "psycopg-binary"})


class BundleError(Exception):
    """A bundle could not be built; the message says which and why."""


def build_bundle(
    source_dir: Path,
    out_dir: Path,
    *,
    python_version: str = DEFAULT_PYTHON_VERSION,
    platform: str = DEFAULT_PLATFORM,
    pip_cache_dir: Path | None = DEFAULT_PIP_CACHE_DIR,
    extra_files: Mapping[str, Path] | None = None,
    use_cache: bool = True,
    verbose: bool = False,
) -> Path:
    """Build `out_dir/<source_dir.name>.zip` (and its manifest `.zip.json`) and return the zip's path.

    The shared runtime (the sibling folder `common`, when there is one) goes into every bundle; the
    RDS CA bundle when the requirements name a PostgreSQL driver; `extra_files` maps
    more names in the zip to files. Skips the work when the manifest beside an intact zip records
    the same input hash, unless `use_cache` is false. `pip_cache_dir=None` uses pip's own cache.
    Progress goes to stdout (the cdktf CLI reports its app's stderr as errors); `verbose` streams
    pip's output to stderr.
    """
    source_dir = Path(source_dir).resolve()
    out_dir = Path(out_dir)
    name = source_dir.name
    if not source_dir.is_dir():
        raise BundleError(f"bundling {name}: {source_dir} is not a directory")
    zip_path = out_dir / f"{name}.zip"
    manifest_path = out_dir / f"{name}.zip.json"
    requirements = source_dir / REQUIREMENTS
    code_files = _code_files(source_dir)
    shared_files = _shared_files(source_dir)
    clashes = sorted(code_files.keys() & shared_files.keys())
    if clashes:
        raise BundleError(f"bundling {name}: the code and the shared runtime both have {', '.join(clashes)}")
    code_files.update(shared_files)
    added_files = _added_files(name, requirements, extra_files or {})
    clashes = sorted(code_files.keys() & added_files.keys())
    if clashes:
        raise BundleError(f"bundling {name}: the code already has {', '.join(clashes)}")
    code_files.update(added_files)
    inputs_sha256 = _inputs_digest(code_files, requirements, python_version, platform)

    if use_cache and _is_current(zip_path, manifest_path, inputs_sha256):
        _progress(f"bundling {name}: up to date ({_display(zip_path)})")
        return zip_path

    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"bundle-{name}-") as scratch:
        entries = dict(code_files)
        if _has_requirements(requirements):
            _progress(f"bundling {name}: installing dependencies for Python {python_version} on {platform} …")
            target = Path(scratch) / "deps"
            _pip_install(name, requirements, target, python_version, platform, pip_cache_dir, verbose)
            dependency_files = _dependency_files(target)
            clashes = sorted(entries.keys() & dependency_files.keys())
            if clashes:
                raise BundleError(f"bundling {name}: code and dependencies both provide {', '.join(clashes[:5])}")
            entries.update(dependency_files)
        _progress(f"bundling {name}: writing {len(entries)} files …")
        _write_zip(entries, zip_path)

    zip_sha256 = _file_sha256(zip_path)
    manifest = {
        "bundler_version": BUNDLER_VERSION,
        "inputs_sha256": inputs_sha256,
        "platform": platform,
        "python_version": python_version,
        "zip_sha256": zip_sha256,
    }
    _write_atomically(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    size_mib = zip_path.stat().st_size / 2**20
    _progress(f"bundling {name}: wrote {_display(zip_path)} ({size_mib:.1f} MiB) in {time.monotonic() - started:.1f} s")
    return zip_path


def lambda_folders(lambda_root: Path = LAMBDA_ROOT) -> list[Path]:
    """Every folder under `lambda_root` that declares its dependencies in a requirements.txt."""
    if not lambda_root.is_dir():
        return []
    return sorted(path for path in lambda_root.iterdir() if (path / REQUIREMENTS).is_file())


def build_all(
    out_dir: Path = DEFAULT_OUT_DIR,
    *,
    names: Iterable[str] | None = None,
    lambda_root: Path = LAMBDA_ROOT,
    **options,
) -> dict[str, Path]:
    """Build the named Lambda folders (default: all with a requirements.txt); name -> zip path."""
    if names:
        folders = [lambda_root / name for name in names]
        missing = [folder.name for folder in folders if not folder.is_dir()]
        if missing:
            raise BundleError(f"no Lambda folder {', '.join(missing)} under {_display(lambda_root)}")
    else:
        folders = lambda_folders(lambda_root)
        if not folders:
            raise BundleError(f"no Lambda folder with a {REQUIREMENTS} under {_display(lambda_root)}")
    return {folder.name: build_bundle(folder, out_dir, **options) for folder in folders}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lib.bundler",
        description="Build deterministic Lambda zips from lib/lambda/<name> (code + requirements.txt).",
    )
    parser.add_argument("names", nargs="*",
                        help="Lambda folders to build (default: every one with a requirements.txt)")
    parser.add_argument("--python-version", default=DEFAULT_PYTHON_VERSION,
                        help="Lambda runtime's Python (default %(default)s)")
    parser.add_argument("--platform", default=DEFAULT_PLATFORM, help="wheel platform tag (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="output directory (default build/lambda)")
    parser.add_argument("--pip-cache", type=Path, default=DEFAULT_PIP_CACHE_DIR,
                        help="pip cache (default build/pip-cache)")
    parser.add_argument("--lambda-root", type=Path, default=LAMBDA_ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--force", action="store_true", help="rebuild even when a bundle is up to date")
    parser.add_argument("-v", "--verbose", action="store_true", help="show pip's output")
    args = parser.parse_args(argv)
    try:
        build_all(args.out, names=args.names, lambda_root=args.lambda_root, python_version=args.python_version,
                  platform=args.platform, pip_cache_dir=args.pip_cache, use_cache=not args.force,
                  verbose=args.verbose)
    except BundleError as exc:
        print(f"bundler: error: {exc}", file=sys.stderr)
        return 1
    return 0


def verified_rds_ca_bundle() -> Path:
    """The RDS CA bundle's path, once its SHA-256 is the pinned one (else BundleError). For what
    else needs the PEM, e.g. DMS's certificate: `verified_rds_ca_bundle().read_text()`."""
    ca_bundle = Path(RDS_CA_BUNDLE)
    if not ca_bundle.is_file():
        raise BundleError(f"the RDS CA bundle {_display(ca_bundle)} is missing (lib/certs/README.md says where "
                          "it comes from)")
    actual = _file_sha256(ca_bundle)
    if actual != RDS_CA_BUNDLE_SHA256:
        raise BundleError(f"the RDS CA bundle {_display(ca_bundle)} has SHA-256 {actual}, not the pinned "
                          f"{RDS_CA_BUNDLE_SHA256} (lib/certs/README.md: how to refresh it)")
    return ca_bundle


def rds_ca_pem(region: str) -> str:
    """The PEM of `region`'s RDS root CAs (rsa2048-g1, rsa4096-g1, ecc384-g1) from the verified
    bundle: enough to verify an Aurora server there, small enough for a DMS certificate. Self-signed
    roots carry their name in their DER (subject and issuer), which is what is matched."""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----\n?",
                        verified_rds_ca_bundle().read_text(), flags=re.S)
    name = f"Amazon RDS {region} Root CA ".encode()
    chosen = [block if block.endswith("\n") else block + "\n" for block in blocks
              if name in base64.b64decode("".join(block.splitlines()[1:-1]))]
    if not chosen:
        raise BundleError(f"the RDS CA bundle has no root CA for region {region!r} (lib/certs/README.md: how to refresh it)")
    return "".join(chosen)


# --- inputs -------------------------------------------------------------------------------------

def _added_files(name: str, requirements: Path, extra_files: Mapping[str, Path]) -> dict[str, Path]:
    """arcname -> file for what goes into the zip besides the code: the RDS CA bundle (checksum
    verified) when the function connects to PostgreSQL, and `extra_files`."""
    added: dict[str, Path] = {}
    if POSTGRES_DRIVERS & _requirement_names(requirements):
        try:
            added[RDS_CA_BUNDLE_ARCNAME] = verified_rds_ca_bundle()
        except BundleError as error:
            raise BundleError(f"bundling {name}: {error}") from None
    for arcname, path in extra_files.items():
        path = Path(path)
        if not arcname or arcname.startswith("/") or ".." in arcname.split("/"):
            raise BundleError(f"bundling {name}: {arcname!r} is not a relative name inside the zip")
        if arcname in added:
            raise BundleError(f"bundling {name}: {arcname} is added twice")
        if not path.is_file():
            raise BundleError(f"bundling {name}: {path} (for {arcname}) is not a file")
        added[arcname] = path.resolve()
    return added


def _shared_files(source_dir: Path) -> dict[str, Path]:
    """arcname -> file for the shared runtime (the sibling folder SHARED_FOLDER), none when there is
    no such folder or the folder is the shared runtime itself."""
    shared_dir = source_dir.parent / SHARED_FOLDER
    if not shared_dir.is_dir() or shared_dir == source_dir:
        return {}
    return _code_files(shared_dir)


def _requirement_names(requirements: Path) -> set[str]:
    """The normalized project names requirements.txt asks for."""
    if not requirements.is_file():
        return set()
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        for stop in "[<>=!~;@ ":
            line = line.split(stop, 1)[0]
        names.add(line.lower().replace("_", "-").replace(".", "-"))
    return names


def _code_files(source_dir: Path) -> dict[str, Path]:
    """arcname -> file for the folder's own code: no caches, no tests, no requirements.txt."""
    files: dict[str, Path] = {}
    for directory, dir_names, file_names in os.walk(source_dir):
        dir_names[:] = [d for d in dir_names if d not in SKIPPED_DIR_NAMES]
        for file_name in file_names:
            path = Path(directory) / file_name
            arcname = path.relative_to(source_dir).as_posix()
            if arcname == REQUIREMENTS or path.suffix in SKIPPED_SUFFIXES or not path.is_file():
                continue
            files[arcname] = path
    return files


def _inputs_digest(code_files: dict[str, Path], requirements: Path, python_version: str, platform: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"bundler {BUNDLER_VERSION}\npython {python_version}\nplatform {platform}\n".encode())
    digest.update(f"zip compresslevel {ZIP_COMPRESSLEVEL}\n".encode())
    listed = sorted(code_files.items())
    if requirements.is_file():
        listed.append((f"<{REQUIREMENTS}>", requirements))
    for arcname, path in listed:
        mode = "x" if _is_executable(path) else "-"
        digest.update(f"{arcname}\0{mode}\0{_file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _has_requirements(requirements: Path) -> bool:
    if not requirements.is_file():
        return False
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    return any(lines)


def _is_current(zip_path: Path, manifest_path: Path, inputs_sha256: str) -> bool:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("inputs_sha256") == inputs_sha256
        and zip_path.is_file()
        and manifest.get("zip_sha256") == _file_sha256(zip_path)
    )


# --- dependencies -------------------------------------------------------------------------------

def _pip_install(name: str, requirements: Path, target: Path, python_version: str, platform: str,
                 pip_cache_dir: Path | None, verbose: bool) -> None:
    command = [
        sys.executable, "-m", "pip", "install",
        "--target", str(target),
        "--platform", platform,
        "--python-version", python_version,
        "--implementation", "cp",
        "--only-binary=:all:",
        "--no-compile",  # .pyc files would be for this interpreter, not the runtime's
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar", "off",
        "-r", str(requirements),
    ]
    if pip_cache_dir is not None:
        Path(pip_cache_dir).mkdir(parents=True, exist_ok=True)
        command += ["--cache-dir", str(pip_cache_dir)]
    # pip writes its own progress to stdout; only our progress lines go there.
    if verbose:
        result = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL, check=False)
        output = ""
    else:
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise BundleError(
            f"bundling {name}: pip could not install {_display(requirements)} for Python {python_version} "
            f"on {platform} (exit {result.returncode})" + (f":\n{tail}" if tail else "")
        )


def _dependency_files(target: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for directory, dir_names, file_names in os.walk(target):
        relative_dir = Path(directory).relative_to(target)
        if relative_dir == Path("."):
            dir_names[:] = [d for d in dir_names if d not in SKIPPED_DEPENDENCY_TOP_DIRS]
        dir_names[:] = [d for d in dir_names if d != "__pycache__"]
        in_dist_info = relative_dir.name.endswith(".dist-info")
        for file_name in file_names:
            path = Path(directory) / file_name
            if path.suffix in SKIPPED_SUFFIXES or (in_dist_info and file_name in SKIPPED_DIST_INFO_FILES):
                continue
            if path.is_symlink() or not path.is_file():
                raise BundleError(f"unexpected non-regular file in installed dependencies: {path.relative_to(target)}")
            files[path.relative_to(target).as_posix()] = path
    return files


# --- the zip ------------------------------------------------------------------------------------

def _write_zip(entries: dict[str, Path], zip_path: Path) -> None:
    """Entries sorted by name, every timestamp 1980-01-01, mode 0644 (0755 if executable), Unix
    attributes, DEFLATE at a fixed level: the bytes depend on contents only."""

    def write(handle) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESSLEVEL) as archive:
            for arcname in sorted(entries):
                path = entries[arcname]
                info = zipfile.ZipInfo(arcname, date_time=ZIP_TIMESTAMP)
                info.create_system = 3  # Unix, so external_attr carries the permissions
                info.external_attr = (stat.S_IFREG | (0o755 if _is_executable(path) else 0o644)) << 16
                archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED,
                                 compresslevel=ZIP_COMPRESSLEVEL)

    _write_atomically(zip_path, write)


def _write_atomically(path: Path, content) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- helpers ------------------------------------------------------------------------------------

def _is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o111)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _progress(message: str) -> None:
    # stdout: the cdktf CLI shows everything its app writes to stderr as an error.
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
