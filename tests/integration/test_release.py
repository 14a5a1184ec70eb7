"""The release: the provider's wheel installs without the repository and runs
(`idp db upgrade`, `idp keys ensure`, the WSGI app under `idp serve` and gunicorn); the
idp-verify companion app installs alone with only what it imports.

Offline-safe: the wheels are built from this tree with the project virtualenv's own
setuptools (``pip wheel --no-deps --no-build-isolation``), installed with ``--no-deps
--no-index`` into a scratch virtualenv, and the dependencies (already installed in the
project virtualenv) are reached through a ``.pth`` file naming its site-packages. A
``.pth`` line only appends a folder to ``sys.path``: the ``.pth`` files inside that
folder, among them the editable install of this repository, are not processed, so the
scratch interpreter imports ``idp`` from the wheel or not at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def _build(source: Path, out: Path) -> Path:
    subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    [wheel] = out.glob("*.whl")
    return wheel


def _scratch_venv(path: Path, wheel: Path) -> Path:
    subprocess.run([PYTHON, "-m", "venv", str(path)], check=True, timeout=300)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    deps = sysconfig.get_paths()["purelib"]  # the project virtualenv's dependencies
    (Path(site) / "project-dependencies.pth").write_text(deps + "\n")
    return path / "bin"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.pop("WEB_CONCURRENCY", None)
    env.pop("PYTHONPATH", None)
    env.update(
        IDP_DATABASE_URL=f"sqlite:///{tmp / 'fresh.sqlite3'}",
        IDP_KEYS_DIRECTORY=str(tmp / "keys"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp),
    )
    return env


@pytest.fixture(scope="module")
def provider_wheel(tmp_path_factory) -> Path:
    return _build(ROOT, tmp_path_factory.mktemp("dist"))


def test_the_wheel_holds_the_provider_only(provider_wheel):
    with zipfile.ZipFile(provider_wheel) as wheel:
        names = wheel.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    tops = {name.split("/")[0] for name in names if not name.endswith(".dist-info/")}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"idp"}  # no `clients`
    for needed in (
        "idp/wsgi.py",
        "idp/gunicorn_conf.py",
        "idp/serving.py",
        "idp/granian_app.py",
        "idp/migrations/env.py",
        "idp/migrations/alembic.ini",
        "idp/migrations/script.py.mako",
        "idp/migrations/versions/0001_initial.py",
        "idp/templates/base.html",
        "idp/translations/es/LC_MESSAGES/messages.mo",  # compiled by setup.py
    ):
        assert needed in names, needed  # fmt: skip
    migrations = sorted(p.name for p in (ROOT / "idp/migrations/versions").glob("*.py"))
    shipped = sorted(n.rsplit("/", 1)[1] for n in names
                     if n.startswith("idp/migrations/versions/") and n.endswith(".py"))  # fmt: skip
    assert shipped == migrations
    assert "idp = idp.cli:main" in scripts
    assert "connexion" not in scripts and "idp-verify" not in scripts
    size = provider_wheel.stat().st_size
    print(f"wheel {provider_wheel.name}: {size / 1024:.0f} KiB, {len(names)} files")  # noqa: T201


def test_the_installed_wheel_migrates_and_serves(provider_wheel, tmp_path):
    bin_dir = _scratch_venv(tmp_path / "venv", provider_wheel)
    env = _env(tmp_path)

    def run(*args: str) -> str:
        done = subprocess.run([*args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done
        return done.stdout

    located = run(str(bin_dir / "python"), "-c", "import idp; print(idp.__file__)")
    assert located.startswith(str(tmp_path / "venv")), located  # the wheel, not the repository
    assert "database at head" in run(str(bin_dir / "idp"), "db", "upgrade")
    assert "generated" in run(str(bin_dir / "idp"), "keys", "ensure")
    assert run(str(bin_dir / "idp"), "--version").startswith("idp ")
    probe = (
        "from idp.wsgi import app\n"
        "r = app.test_client().get('/.well-known/openid-configuration')\n"
        "print(r.status_code, r.get_json()['issuer'])\n"
    )
    assert run(str(bin_dir / "python"), "-c", probe).startswith("200 ")

    # The production servers, from the package alone: `idp serve` (granian), and
    # gunicorn with its settings.
    for server in ("idp serve", "gunicorn"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if server == "idp serve":
            command = [str(bin_dir / "idp"), "serve"]
        else:
            command = [str(bin_dir / "python"), "-m", "gunicorn", "-c", "python:idp.gunicorn_conf",
                       "idp.wsgi:app"]  # fmt: skip
        proc = subprocess.Popen(  # noqa: S603
            command, env={**env, "IDP_BIND": f"127.0.0.1:{port}"}, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.communicate()
                try:
                    resp = requests.get(f"http://127.0.0.1:{port}/jwks", timeout=2)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline, server
                    time.sleep(0.1)
            assert resp.status_code == 200 and resp.json()["keys"], server
        finally:
            proc.terminate()
            assert proc.wait(timeout=40) == 0 or server == "gunicorn", proc.communicate()


def test_idp_verify_installs_alone(tmp_path):
    wheel = _build(ROOT / "clients" / "verify", tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist()
                                     if n.endswith("METADATA"))).decode()  # fmt: skip
        tops = {n.split("/")[0] for n in archive.namelist() if ".dist-info" not in n}
    requires = sorted(line.split(":", 1)[1].strip().split(">")[0].split("=")[0].strip()
                      for line in metadata.splitlines() if line.startswith("Requires-Dist:"))  # fmt: skip
    assert requires == ["joserfc", "requests"]
    assert tops == {"idp_verify"}
    bin_dir = _scratch_venv(tmp_path / "venv", wheel)
    env = {**_env(tmp_path), "IDP_VERIFY_STATE": str(tmp_path / "accounts.json")}
    done = subprocess.run([str(bin_dir / "idp-verify"), "accounts"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0 and "No accounts" in done.stdout, done
    # It runs without the provider: `idp` is not importable there.
    alone = subprocess.run([str(bin_dir / "python"), "-c", "import idp"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert alone.returncode != 0 and "No module named 'idp'" in alone.stderr
