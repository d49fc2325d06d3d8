"""The Lambda bundler: the real API bundle built from PyPI for the runtime's platform (twice, into
two fresh directories, to compare bytes), and small local folders for the cache and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lib import bundler
from lib.bundler import BundleError, build_bundle

ROOT = Path(__file__).resolve().parents[1]
API_DIR = ROOT / "lib" / "lambda" / "api"


@pytest.fixture(scope="module")
def api_zips(tmp_path_factory) -> tuple[Path, Path]:
    """The API bundle built twice from scratch (separate output dirs, so no cache hit); pip's
    download cache is shared with `make synth` so wheels are fetched once per machine."""
    base = tmp_path_factory.mktemp("api-bundles")
    first = build_bundle(API_DIR, base / "first", pip_cache_dir=bundler.DEFAULT_PIP_CACHE_DIR)
    second = build_bundle(API_DIR, base / "second", pip_cache_dir=bundler.DEFAULT_PIP_CACHE_DIR)
    return first, second


@pytest.fixture
def small_lambda(tmp_path: Path) -> Path:
    """A Lambda folder without dependencies (no pip), with everything the bundler must leave out."""
    folder = tmp_path / "src" / "small"
    (folder / "small_pkg").mkdir(parents=True)
    (folder / "small_pkg" / "__init__.py").write_text("")
    (folder / "small_pkg" / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    (folder / "bootstrap").write_text("#!/bin/sh\nexec python3 -m small_pkg\n")
    os.chmod(folder / "bootstrap", 0o755)
    (folder / "small_pkg" / "__pycache__").mkdir()
    (folder / "small_pkg" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"stale")
    (folder / "small_pkg" / "old.pyc").write_bytes(b"stale")
    (folder / "tests").mkdir()
    (folder / "tests" / "test_small.py").write_text("def test(): pass\n")
    (folder / "requirements.txt").write_text("# no dependencies\n")
    return folder


def archive_names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return archive.namelist()


@pytest.fixture
def shared_runtime(small_lambda: Path) -> Path:
    """The shared runtime beside the small function, as lib/lambda/common is beside the functions."""
    folder = small_lambda.parent / "common"
    (folder / "shared_pkg" / "__pycache__").mkdir(parents=True)
    (folder / "shared_pkg" / "__init__.py").write_text("SIDES = ('onprem', 'aws')\n")
    (folder / "shared_pkg" / "__pycache__" / "__init__.cpython-312.pyc").write_bytes(b"stale")
    return folder


# --- the real API bundle ------------------------------------------------------------------------
# (slow: pip builds it twice, from wheels it may have to download)

@pytest.mark.slow
def test_api_bundle_holds_the_handler_and_dependencies_built_for_the_runtime(api_zips):
    with zipfile.ZipFile(api_zips[0]) as archive:
        names = set(archive.namelist())
    for expected in ("payment_api/__init__.py", "payment_api/handler.py", "payment_api/payments.py",
                     "payment_common/__init__.py", "payment_common/writer.py", "payment_common/database.py",
                     "psycopg2/_psycopg.cpython-312-x86_64-linux-gnu.so",
                     "pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so",
                     "aws_lambda_powertools/event_handler/api_gateway.py"):
        assert expected in names, f"{expected} is missing from the API bundle"
    assert any(name.startswith("psycopg2_binary.libs/libpq") for name in names), "libpq is not bundled"
    extensions = [name for name in names if ".cpython-" in name]
    assert all("cpython-312-x86_64-linux-gnu" in name for name in extensions), \
        f"extension modules for another Python or platform: {extensions}"
    assert not any(name.startswith("boto3/") or name.startswith("botocore/") for name in names), \
        "boto3 is in the runtime and must not be bundled"


@pytest.mark.slow
def test_api_bundle_carries_the_pinned_rds_ca_bundle_where_the_api_looks_for_it(api_zips):
    import payment_common.database

    with zipfile.ZipFile(api_zips[0]) as archive:
        info = archive.getinfo(bundler.RDS_CA_BUNDLE_ARCNAME)
        content = archive.read(info)
    assert hashlib.sha256(content).hexdigest() == bundler.RDS_CA_BUNDLE_SHA256
    assert info.external_attr >> 16 == 0o100644
    assert "payment_common/database.py" in archive_names(api_zips[0])
    package_root = Path(payment_common.database.__file__).resolve().parents[1]
    assert Path(payment_common.database.RDS_CA_BUNDLE) == package_root / info.filename, \
        "the functions' default sslrootcert is not where the bundler puts the CA bundle"


@pytest.mark.slow
def test_api_bundle_is_byte_identical_when_rebuilt(api_zips):
    first, second = api_zips
    assert first.read_bytes() == second.read_bytes(), "rebuilding the API bundle changed its bytes"
    assert (first.parent / "api.zip.json").read_text() == (second.parent / "api.zip.json").read_text()


@pytest.mark.slow
def test_api_bundle_entries_are_normalized(api_zips):
    with zipfile.ZipFile(api_zips[0]) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names), "entries are not sorted"
        assert {info.date_time for info in infos} == {bundler.ZIP_TIMESTAMP}
        assert {info.external_attr >> 16 for info in infos} <= {0o100644, 0o100755}
        assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}
        leftovers = [name for name in names if "__pycache__" in name or name.endswith(".pyc")
                     or name.startswith("bin/") or name == "requirements.txt"
                     or (".dist-info/" in name and name.rsplit("/", 1)[1] in bundler.SKIPPED_DIST_INFO_FILES)]
        assert not leftovers, f"build leftovers in the bundle: {leftovers[:10]}"
        leaking = [info.filename for info in infos if b"bundle-api-" in archive.read(info)]
        assert not leaking, f"files that name the build's temporary directory: {leaking}"


@pytest.mark.slow
def test_api_bundle_manifest_records_inputs_and_zip(api_zips):
    manifest = json.loads((api_zips[0].parent / "api.zip.json").read_text())
    assert manifest["python_version"] == "3.12"
    assert manifest["platform"] == "manylinux2014_x86_64"
    assert manifest["zip_sha256"] == bundler._file_sha256(api_zips[0])


@pytest.mark.slow
def test_api_bundle_is_not_rebuilt_when_nothing_changed(api_zips, monkeypatch, capsys):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the bundler reinstalled or rezipped an up-to-date bundle")

    monkeypatch.setattr(bundler, "_pip_install", must_not_run)
    monkeypatch.setattr(bundler, "_write_zip", must_not_run)
    before = api_zips[0].stat().st_mtime_ns
    assert build_bundle(API_DIR, api_zips[0].parent) == api_zips[0]
    assert api_zips[0].stat().st_mtime_ns == before
    assert "api: up to date" in capsys.readouterr().out


# --- the zip and the cache, on a folder without dependencies -------------------------------------

def test_bundle_leaves_out_caches_tests_and_requirements(small_lambda, tmp_path):
    with zipfile.ZipFile(build_bundle(small_lambda, tmp_path / "out")) as archive:
        assert archive.namelist() == ["bootstrap", "small_pkg/__init__.py", "small_pkg/handler.py"]
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["bootstrap"] == 0o100755, "an executable lost its mode"
    assert modes["small_pkg/handler.py"] == 0o100644


def test_bundle_bytes_ignore_mtimes_and_file_modes(small_lambda, tmp_path):
    first = build_bundle(small_lambda, tmp_path / "one").read_bytes()
    handler = small_lambda / "small_pkg" / "handler.py"
    os.utime(handler, (1_700_000_000, 1_700_000_000))
    os.chmod(handler, 0o600)
    second = build_bundle(small_lambda, tmp_path / "two").read_bytes()
    assert first == second


def test_bundle_is_rebuilt_when_its_code_or_target_changes(small_lambda, tmp_path, capsys):
    out = tmp_path / "out"
    zip_path = build_bundle(small_lambda, out)
    original = zip_path.read_bytes()
    build_bundle(small_lambda, out)
    assert "small: up to date" in capsys.readouterr().out

    (small_lambda / "small_pkg" / "handler.py").write_text("def lambda_handler(event, context):\n    return 1\n")
    changed = build_bundle(small_lambda, out).read_bytes()
    assert changed != original and "small: wrote" in capsys.readouterr().out

    build_bundle(small_lambda, out, python_version="3.13")
    assert "small: wrote" in capsys.readouterr().out, "a new Python version did not rebuild"


def test_a_damaged_bundle_is_rebuilt(small_lambda, tmp_path):
    zip_path = build_bundle(small_lambda, tmp_path / "out")
    good = zip_path.read_bytes()
    zip_path.write_bytes(good[:-10])
    assert build_bundle(small_lambda, tmp_path / "out").read_bytes() == good


def test_use_cache_false_always_rebuilds(small_lambda, tmp_path, capsys):
    build_bundle(small_lambda, tmp_path / "out")
    build_bundle(small_lambda, tmp_path / "out", use_cache=False)
    assert capsys.readouterr().out.count("small: wrote") == 2


def test_pip_failure_is_a_bundle_error_with_pip_s_message(small_lambda, tmp_path):
    (small_lambda / "requirements.txt").write_text("this is not a requirement!\n")
    with pytest.raises(BundleError, match=r"(?s)bundling small: pip could not install .*Invalid requirement"):
        build_bundle(small_lambda, tmp_path / "out", pip_cache_dir=None)
    assert not (tmp_path / "out" / "small.zip").exists()


# --- the RDS CA bundle and added files ----------------------------------------------------------

@pytest.fixture
def no_pip(monkeypatch):
    """Requirements are read (they decide whether the CA bundle goes in) but nothing is installed."""
    monkeypatch.setattr(bundler, "_pip_install", lambda *args, **kwargs: None)


@pytest.mark.parametrize("requirement", ["psycopg2-binary==2.9.13", "psycopg[binary]>=3.2", "Psycopg2 ; python_version>'3'"])
def test_a_function_with_a_postgresql_driver_gets_the_rds_ca_bundle(small_lambda, tmp_path, no_pip, requirement):
    (small_lambda / "requirements.txt").write_text(f"# the driver\n{requirement}\n")
    with zipfile.ZipFile(build_bundle(small_lambda, tmp_path / "out")) as archive:
        assert archive.namelist() == ["bootstrap", bundler.RDS_CA_BUNDLE_ARCNAME, "small_pkg/__init__.py",
                                      "small_pkg/handler.py"]
        assert archive.read(bundler.RDS_CA_BUNDLE_ARCNAME) == bundler.RDS_CA_BUNDLE.read_bytes()


def test_a_ca_bundle_that_differs_from_its_pin_stops_the_build(small_lambda, tmp_path, no_pip, monkeypatch):
    (small_lambda / "requirements.txt").write_text("psycopg2-binary==2.9.13\n")
    tampered = tmp_path / "rds-global-bundle.pem"
    tampered.write_bytes(bundler.RDS_CA_BUNDLE.read_bytes() + b"\n")
    monkeypatch.setattr(bundler, "RDS_CA_BUNDLE", tampered)
    with pytest.raises(BundleError, match=r"bundling small: the RDS CA bundle .* has SHA-256 [0-9a-f]{64}, "
                                          rf"not the pinned {bundler.RDS_CA_BUNDLE_SHA256}"):
        build_bundle(small_lambda, tmp_path / "out")
    assert not (tmp_path / "out" / "small.zip").exists()
    with pytest.raises(BundleError, match="not the pinned"):
        bundler.verified_rds_ca_bundle()  # what the DMS certificate's PEM is read through


def test_a_region_s_rds_root_cas_are_taken_from_the_verified_bundle():
    pem = bundler.rds_ca_pem("eu-west-1")
    blocks = [block + "-----END CERTIFICATE-----\n" for block in pem.split("-----END CERTIFICATE-----\n")[:-1]]
    assert len(blocks) == 3 and all(block in bundler.RDS_CA_BUNDLE.read_text() for block in blocks)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=pem)
    names = sorted(dict(item[0] for item in cert["subject"])["commonName"] for cert in context.get_ca_certs())
    assert names == [f"Amazon RDS eu-west-1 Root CA {kind} G1" for kind in ("ECC384", "RSA2048", "RSA4096")]
    with pytest.raises(BundleError, match="no root CA for region 'xx-nowhere-1'"):
        bundler.rds_ca_pem("xx-nowhere-1")


def test_a_new_ca_bundle_rebuilds_the_zip(small_lambda, tmp_path, no_pip, monkeypatch, capsys):
    (small_lambda / "requirements.txt").write_text("psycopg2-binary==2.9.13\n")
    out = tmp_path / "out"
    build_bundle(small_lambda, out)
    refreshed = tmp_path / "refreshed.pem"
    shutil.copyfile(bundler.RDS_CA_BUNDLE, refreshed)
    with refreshed.open("ab") as handle:
        handle.write(b"\n")
    monkeypatch.setattr(bundler, "RDS_CA_BUNDLE", refreshed)
    monkeypatch.setattr(bundler, "RDS_CA_BUNDLE_SHA256", bundler._file_sha256(refreshed))
    capsys.readouterr()
    with zipfile.ZipFile(build_bundle(small_lambda, out)) as archive:
        assert archive.read(bundler.RDS_CA_BUNDLE_ARCNAME) == refreshed.read_bytes()
    assert "small: wrote" in capsys.readouterr().out, "a changed CA bundle did not rebuild the zip"


def test_extra_files_go_into_the_zip_and_its_input_hash(small_lambda, tmp_path, capsys):
    onprem_ca = tmp_path / "onprem-ca.pem"
    onprem_ca.write_text("first\n")
    out = tmp_path / "out"
    with zipfile.ZipFile(build_bundle(small_lambda, out, extra_files={"certs/onprem-ca.pem": onprem_ca})) as archive:
        assert archive.read("certs/onprem-ca.pem") == b"first\n"
    onprem_ca.write_text("second\n")
    capsys.readouterr()
    with zipfile.ZipFile(build_bundle(small_lambda, out, extra_files={"certs/onprem-ca.pem": onprem_ca})) as archive:
        assert archive.read("certs/onprem-ca.pem") == b"second\n"
    assert "small: wrote" in capsys.readouterr().out


@pytest.mark.parametrize("arcname, message", [
    ("small_pkg/handler.py", "the code already has small_pkg/handler.py"),
    ("../outside.pem", "is not a relative name inside the zip"),
    ("/etc/ca.pem", "is not a relative name inside the zip"),
])
def test_extra_files_must_stay_inside_the_zip_and_not_replace_code(small_lambda, tmp_path, arcname, message):
    extra = tmp_path / "extra.pem"
    extra.write_text("x\n")
    with pytest.raises(BundleError, match=re.escape(message)):
        build_bundle(small_lambda, tmp_path / "out", extra_files={arcname: extra})


# --- the command line ---------------------------------------------------------------------------

def test_cli_builds_every_folder_with_requirements(small_lambda, tmp_path, capsys):
    root = small_lambda.parent
    (root / "no_requirements").mkdir()
    (root / "no_requirements" / "code.py").write_text("")
    out = tmp_path / "out"
    assert bundler.main(["--lambda-root", str(root), "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["small.zip", "small.zip.json"]
    assert "bundling small: wrote" in capsys.readouterr().out


def test_cli_fails_clearly_on_an_unknown_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lib.bundler", "--out", str(tmp_path / "out"), "no-such-lambda"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1
    assert "bundler: error: no Lambda folder no-such-lambda" in result.stderr, result.stderr


def test_cli_fails_when_a_build_fails(small_lambda, tmp_path, capsys):
    (small_lambda / "requirements.txt").write_text("this is not a requirement!\n")
    assert bundler.main(["--lambda-root", str(small_lambda.parent), "--out", str(tmp_path / "out")]) == 1
    assert "bundler: error: bundling small: pip could not install" in capsys.readouterr().err


def test_the_shared_runtime_goes_into_every_bundle_and_its_input_hash(small_lambda, shared_runtime, tmp_path,
                                                                      capsys):
    out = tmp_path / "out"
    assert archive_names(build_bundle(small_lambda, out)) == [
        "bootstrap", "shared_pkg/__init__.py", "small_pkg/__init__.py", "small_pkg/handler.py"]
    (shared_runtime / "shared_pkg" / "__init__.py").write_text("SIDES = ('onprem', 'aws', 'elsewhere')\n")
    capsys.readouterr()
    with zipfile.ZipFile(build_bundle(small_lambda, out)) as archive:
        assert b"elsewhere" in archive.read("shared_pkg/__init__.py")
    assert "up to date" not in capsys.readouterr().out, "a change to the shared runtime did not rebuild"


def test_the_shared_runtime_is_not_a_function_and_cannot_be_shadowed(small_lambda, shared_runtime, tmp_path):
    assert bundler.lambda_folders(small_lambda.parent) == [small_lambda]
    (small_lambda / "shared_pkg").mkdir()
    (small_lambda / "shared_pkg" / "__init__.py").write_text("")
    with pytest.raises(BundleError, match="the code and the shared runtime both have shared_pkg/__init__.py"):
        build_bundle(small_lambda, tmp_path / "out")


def test_every_function_folder_gets_the_real_shared_runtime():
    functions = bundler.lambda_folders()
    assert {folder.name for folder in functions} == {"api", "cutover", "rollback", "validation"}
    for folder in functions:
        assert "payment_common/writer.py" in bundler._shared_files(folder), f"{folder.name} lacks payment_common"
