"""Browser tests: the real provider in its own process, a tiny relying party, headless Chromium.

- ``live_server``   ``idp db upgrade`` / ``users create`` / ``clients create`` / ``idp run`` on a
                    free 127.0.0.1 port with a temporary SQLite database; a module sets its
                    settings by overriding ``live_server_env`` and its host name (e.g.
                    ``"localhost"`` for WebAuthn) by overriding ``live_server_host``; a module
                    that needs another provider too uses :func:`run_provider`/:func:`run_rp`;
- ``rp_server``     :mod:`tests.e2e.rp_app` on the port the client was registered with;
- :func:`run_connexion`  the Connexion sample (``python -m clients.connexion``) in its own
                    process beside a provider, registered there as a first-party client;
- ``browser_page``  a fresh Chromium context and page per test (Debian's /usr/bin/chromium,
                    never a downloaded build), with console messages, page errors and CSP
                    violations collected in ``browser_log``;
- ``virtual_authenticator``  a CTAP2 platform authenticator (resident keys, user
                    verification) attached to ``browser_page`` over the DevTools protocol;
- :func:`page_basics`  the accessibility smoke of a page: one ``<h1>``, every control named.
- ``a11y_page``     like ``browser_page`` but with the page's CSP bypassed, so that
                    :mod:`tests.e2e.axe` can inject axe-core (accessibility tests only).

When a test fails, ``test-artifacts/`` receives ``<test>.png`` and ``<test>.html`` (the final
page), ``<test>-NN-<step>.png`` for every :func:`snap` taken, ``<test>.console.txt`` and
``<test>.provider.log``. Nothing is written for passing tests.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need

from .rp_app import RelyingParty, RPServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
E2E_DIR = Path(__file__).resolve().parent
STARTUP_TIMEOUT = 20.0

USER_EMAIL = "e2e.user@example.com"
USER_NAME = "Eddie Tester"
USER_PASSWORD = "browser tests need a long passphrase"


# -- marks and reports -------------------------------------------------------------


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item (``item.rep_setup``/``rep_call``/...)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(node) -> bool:
    return any(
        getattr(node, f"rep_{when}", None) is not None and getattr(node, f"rep_{when}").failed
        for when in ("setup", "call")
    )


def _artifact_stem(node) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name).strip("_")


# -- the provider ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _idp_command() -> str:
    beside = Path(sys.executable).with_name("idp")
    if beside.exists():
        return str(beside)
    fallback = PROJECT_ROOT / ".venv" / "bin" / "idp"
    if fallback.exists():
        return str(fallback)
    found = shutil.which("idp")
    if not found:
        pytest.fail("the `idp` command is not installed (pip install -e .)")
    return found


@dataclass
class LiveServer:
    issuer: str
    port: int
    rp_port: int
    email: str
    password: str
    name: str
    client_id: str
    client_secret: str
    workdir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.issuer

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def create_user(self, email: str, password: str, name: str) -> None:
        """Add a user to the running provider's database through the CLI."""
        _run_cli(
            self.env, self.workdir, "users", "create", "--email", email, "--name", name,
            stdin=password + "\n",
        )  # fmt: skip


@dataclass(frozen=True)
class User:
    email: str
    password: str
    name: str


def _run_cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    cmd = [_idp_command(), *args]
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`idp {' '.join(args)}` exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc.stdout


def _wait_until_up(server: LiveServer, proc: subprocess.Popen) -> None:
    url = f"{server.issuer}/.well-known/openid-configuration"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"the provider exited with {proc.returncode} during start-up\n"
                f"--- provider log ---\n{server.log()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                meta = json.load(resp)
            if meta.get("issuer") == server.issuer:
                return
            last_error = f"issuer is {meta.get('issuer')!r}"
        except (OSError, ValueError) as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    pytest.fail(
        f"the provider did not answer {url} within {STARTUP_TIMEOUT:.0f} s ({last_error})\n"
        f"--- provider log ---\n{server.log()}"
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    """Extra IDP_* settings for this module's provider (override in a test module)."""
    return {"IDP_MFA_REQUIRED": "false"}


@pytest.fixture(scope="module")
def live_server_host() -> str:
    """The host name in the issuer and the RP's URLs (override in a test module).

    The servers always listen on 127.0.0.1; ``"localhost"`` (which Chromium resolves to
    the loopback address) is for WebAuthn, whose RP ID may not be an IP address.
    """
    return "127.0.0.1"


@contextmanager
def run_provider(
    tmp_path_factory, keys_dir: Path, extra_env: dict[str, str], host: str = "127.0.0.1"
) -> Iterator[LiveServer]:
    """Start the real provider (``idp run``) with *extra_env*; stop it on exit.

    The ``live_server`` fixture uses this; a module that needs a second provider with
    other settings can call it from a module-scoped fixture of its own.
    """
    workdir = tmp_path_factory.mktemp("live-idp")
    port, rp_port = free_port(), free_port()
    while rp_port == port:
        rp_port = free_port()
    issuer = f"http://{host}:{port}"
    rp_origin = f"http://{host}:{rp_port}"
    # Only our settings: IDP_* from the caller's shell (e.g. the Makefile's IDP_ISSUER)
    # must not leak into the provider under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ENV="test",
        IDP_ISSUER=issuer,
        IDP_DATABASE_URL=f"sqlite:///{workdir / 'idp.sqlite3'}",
        IDP_KEYS_DIRECTORY=str(keys_dir),
        IDP_PASSWORD_MEMORY_COST="1024",
        IDP_PASSWORD_TIME_COST="1",
        IDP_DELIVERY_OUTBOX=str(workdir / "outbox.jsonl"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env)
    _run_cli(env, workdir, "db", "upgrade")
    client = json.loads(
        _run_cli(
            env,
            workdir,
            "clients",
            "create",
            "--name",
            "E2E RP",
            "--redirect-uri",
            f"{rp_origin}/callback",
            "--post-logout-redirect-uri",
            f"{rp_origin}/",
            "--json",
        )
    )
    server = LiveServer(
        issuer=issuer,
        port=port,
        rp_port=rp_port,
        email=USER_EMAIL,
        password=USER_PASSWORD,
        name=USER_NAME,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        workdir=workdir,
        log_path=workdir / "provider.log",
        env=env,
        host=host,
    )
    server.create_user(USER_EMAIL, USER_PASSWORD, USER_NAME)
    with server.log_path.open("wb") as log:
        proc = subprocess.Popen(
            [_idp_command(), "run", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server.process = proc
    try:
        _wait_until_up(server, proc)
        yield server
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory, keys_dir, live_server_env, live_server_host
) -> Iterator[LiveServer]:
    """The real provider (``idp run``) as a separate process on a free port."""
    with run_provider(tmp_path_factory, keys_dir, live_server_env, live_server_host) as server:
        yield server


# -- Connexion, the sample relying party (clients/connexion) -------------------------------


@dataclass
class ConnexionServer:
    """``python -m clients.connexion`` in its own process, registered at *live* as a
    first-party confidential client (no consent page)."""

    base_url: str
    port: int
    client_id: str
    client_secret: str
    database: Path
    log_path: Path
    live: LiveServer  # so that a failed test's artifacts include the provider's log
    process: subprocess.Popen | None = field(default=None, repr=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _wait_for_connexion(cx: ConnexionServer, proc: subprocess.Popen) -> None:
    url = f"http://127.0.0.1:{cx.port}/"  # the landing page needs no provider
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"Connexion exited with {proc.returncode} during start-up\n"
                f"--- Connexion log ---\n{cx.log()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
                last_error = f"status {resp.status}"
        except (OSError, ValueError) as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    pytest.fail(
        f"Connexion did not answer {url} within {STARTUP_TIMEOUT:.0f} s ({last_error})\n"
        f"--- Connexion log ---\n{cx.log()}"
    )


@contextmanager
def run_connexion(
    live: LiveServer, extra_env: dict[str, str] | None = None
) -> Iterator[ConnexionServer]:
    """Register Connexion at *live* (``idp clients create --first-party``, with its
    back-channel logout URI, as ``idp demo`` does) and serve it with ``python -m
    clients.connexion`` on a free port of *live*'s host; stop it on exit.

    *extra_env* adds ``CONNEXION_*`` settings (e.g. ``CONNEXION_STEP_UP_MAX_AGE``).
    """
    port = free_port()
    while port in (live.port, live.rp_port):
        port = free_port()
    base_url = f"http://{live.host}:{port}"
    # The Form C API is a resource of the provider (RFC 8707), as `idp demo` registers it.
    _run_cli(live.env, live.workdir, "resources", "create", "--uri", f"{base_url}/api",
             "--scope", "form-c:file=File the Form C report", "--json")  # fmt: skip
    client = json.loads(
        _run_cli(
            live.env, live.workdir, "clients", "create", "--name", "Connexion",
            "--redirect-uri", f"{base_url}/callback",
            "--post-logout-redirect-uri", f"{base_url}/",
            "--client-uri", f"{base_url}/", "--logo-uri", f"{base_url}/static/favicon.svg",
            "--scope", "openid profile email form-c:file", "--resource", f"{base_url}/api",
            "--backchannel-logout-uri", f"{base_url}/backchannel-logout",
            "--first-party", "--json",
        )
    )  # fmt: skip
    workdir = live.workdir / f"connexion-{port}"
    workdir.mkdir()
    cx = ConnexionServer(
        base_url=base_url,
        port=port,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        database=workdir / "connexion.sqlite3",
        log_path=workdir / "connexion.log",
        live=live,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "CONNEXION_"))}
    env.update(
        CONNEXION_ISSUER=live.issuer,
        CONNEXION_CLIENT_ID=cx.client_id,
        CONNEXION_CLIENT_SECRET=cx.client_secret,
        CONNEXION_BASE_URL=base_url,
        CONNEXION_HOST="127.0.0.1",
        CONNEXION_PORT=str(port),
        CONNEXION_DATABASE=str(cx.database),
        CONNEXION_SECRET_KEY=f"e2e-connexion-{port}-" + os.urandom(16).hex(),
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    with cx.log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clients.connexion"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    cx.process = proc
    try:
        _wait_for_connexion(cx, proc)
        yield cx
    finally:
        _stop(proc)


_user_numbers = itertools.count(1)


def new_user(live: LiveServer) -> User:
    """Create a fresh user (unique across every provider of the session)."""
    n = next(_user_numbers)
    u = User(f"e2e.{n}@example.com", f"passphrase number {n} for the browser", f"E2E User {n}")
    live.create_user(u.email, u.password, u.name)
    return u


@pytest.fixture
def user(live_server) -> User:
    """A user of its own for this test: no remembered consent, no failed attempts."""
    return new_user(live_server)


@contextmanager
def run_rp(live: LiveServer) -> Iterator[RelyingParty]:
    """The test relying party for *live*, on the port its redirect URI was registered with."""
    rp = RelyingParty(
        issuer=live.issuer,
        client_id=live.client_id,
        client_secret=live.client_secret,
        port=live.rp_port,
        host=live.host,
    )
    server = RPServer(rp).start()
    try:
        yield rp
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rp_server(live_server) -> Iterator[RelyingParty]:
    """The test relying party, on the port its redirect URI was registered with."""
    with run_rp(live_server) as rp:
        yield rp


# -- the browser -------------------------------------------------------------------


@dataclass
class BrowserLog:
    """What the page reported: console messages, uncaught errors, CSP violations."""

    console: list[dict[str, Any]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[dict[str, Any]] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    @property
    def console_errors(self) -> list[dict[str, Any]]:
        return [m for m in self.console if m["type"] in ("error", "assert")]

    def problems(self) -> list[str]:
        out = [f"console {m['type']}: {m['text']} ({m['url']})" for m in self.console_errors]
        out += [f"page error: {e}" for e in self.page_errors]
        out += [
            f"CSP violation on {v.get('documentURI')}: {v.get('effectiveDirective')} "
            f"blocked {v.get('blockedURI')!r} ({v.get('disposition')})"
            for v in self.csp_violations
        ]
        return out

    def dump(self) -> str:
        lines = [f"[{m['type']}] {m['text']} ({m['url']})" for m in self.console]
        lines += [f"[pageerror] {e}" for e in self.page_errors]
        lines += [f"[csp] {json.dumps(v, sort_keys=True)}" for v in self.csp_violations]
        lines += [f"[requestfailed] {r}" for r in self.failed_requests]
        return "\n".join(lines) + "\n"


# Runs in every document before its own scripts. Injected over the DevTools protocol, so
# the page's CSP (script-src 'self') does not apply to it; it reports through a binding.
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__e2eCspViolation({
    documentURI: e.documentURI, blockedURI: e.blockedURI,
    effectiveDirective: e.effectiveDirective, violatedDirective: e.violatedDirective,
    originalPolicy: e.originalPolicy, disposition: e.disposition,
    sourceFile: e.sourceFile, lineNumber: e.lineNumber,
  });
});
"""

# page -> [(step name, png bytes)], written to test-artifacts only if the test fails.
_SNAPSHOTS: dict[Any, list[tuple[str, bytes]]] = {}


def snap(page, name: str) -> None:
    """Screenshot a step; kept in memory and saved only when the test fails."""
    shots = _SNAPSHOTS.get(page)
    if shots is None:  # a page not made by browser_page
        return
    try:
        shots.append((name, page.screenshot(full_page=True)))
    except Exception as exc:  # a failed screenshot must not fail the step
        shots.append((f"{name}-screenshot-failed-{type(exc).__name__}", b""))


# -- widths and kept screenshots --------------------------------------------------------

#: The widths every page is checked at: a laptop, and a phone (an iPhone 12 to 15).
DESKTOP_WIDTH = 1280
PHONE_WIDTH = 390
SCREENS = ARTIFACTS / "screens"


def set_width(page, width: int, height: int | None = None) -> None:
    """Resize the viewport to *width* CSS px (a phone's height below 768 px wide)."""
    page.set_viewport_size({"width": width, "height": height or (844 if width < 768 else 900)})


def width_name(name: str, width: int) -> str:
    """A page name for *width*: unchanged at the desktop width, ``<name>@390`` on a phone,
    so that the phone screenshots and reports are told apart."""
    return name if width == DESKTOP_WIDTH else f"{name}@{width}"


def keep_screenshot(page, name: str) -> Path | None:
    """Save a full-page screenshot as ``test-artifacts/screens/<name>.png`` whatever the
    outcome of the test (unlike :func:`snap`, which keeps them only for a failure), and
    add it to the test's :func:`snap` list too."""
    snap(page, name)
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{re.sub(r'[^A-Za-z0-9_.@-]+', '_', name)}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception:  # a failed screenshot must not fail the step
        return None
    return path


@pytest.fixture(scope="session")
def browser():
    need("browser", os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        need("browser", False, f"the playwright package is missing ({exc})")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def browser_page(request, browser, browser_log):
    """A page in a fresh browser context (no cookies shared between tests)."""
    context = browser.new_context(viewport={"width": 1000, "height": 800}, locale="en-US")
    context.set_default_timeout(10_000)
    context.set_default_navigation_timeout(15_000)
    context.expose_function(
        "__e2eCspViolation", lambda v: browser_log.csp_violations.append(dict(v))
    )
    context.add_init_script(_CSP_LISTENER)
    page = context.new_page()

    def on_console(msg) -> None:
        loc = msg.location or {}
        browser_log.console.append({"type": msg.type, "text": msg.text, "url": loc.get("url")})

    page.on("console", on_console)
    page.on("pageerror", lambda err: browser_log.page_errors.append(str(err)))
    page.on(
        "requestfailed",
        lambda req: browser_log.failed_requests.append(f"{req.method} {req.url}: {req.failure}"),
    )
    _SNAPSHOTS[page] = []
    _clear_artifacts(request.node)
    try:
        yield page
    finally:
        shots = _SNAPSHOTS.pop(page, [])
        if _failed(request.node):
            _save_artifacts(request, page, shots, browser_log)
        context.close()


def _clear_artifacts(node) -> None:
    """Remove what an earlier failed run of this test left, so artifacts are never stale."""
    if not ARTIFACTS.is_dir():
        return
    stem = _artifact_stem(node)
    mine = re.compile(
        rf"{re.escape(stem)}(-\d\d-.*\.png|\.png|\.html|\.console\.txt|\.provider\.log)"
    )
    for path in ARTIFACTS.iterdir():
        if mine.fullmatch(path.name):
            path.unlink(missing_ok=True)


def _save_artifacts(request, page, shots, log: BrowserLog) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    stem = _artifact_stem(request.node)
    for i, (name, png) in enumerate(shots, 1):
        if png:
            step = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
            (ARTIFACTS / f"{stem}-{i:02d}-{step}.png").write_bytes(png)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
        (ARTIFACTS / f"{stem}.html").write_text(
            f"<!-- {page.url} -->\n{page.content()}", encoding="utf-8"
        )
    except Exception as exc:
        (ARTIFACTS / f"{stem}.html").write_text(f"<!-- page not readable: {exc!r} -->\n")
    (ARTIFACTS / f"{stem}.console.txt").write_text(log.dump(), encoding="utf-8")
    servers = _providers_of(request)
    if servers:
        text = (
            servers[0].log()
            if len(servers) == 1
            else "".join(f"===== {s.issuer} =====\n{s.log()}\n" for s in servers)
        )
        (ARTIFACTS / f"{stem}.provider.log").write_text(text, encoding="utf-8")


def _providers_of(request) -> list[LiveServer]:
    """The providers this test used: ``live_server`` and any fixture value that is a
    :class:`LiveServer` or holds one as ``.live`` (see :func:`run_provider`)."""
    found: list[LiveServer] = []
    for value in getattr(request.node, "funcargs", {}).values():
        live = value if isinstance(value, LiveServer) else getattr(value, "live", None)
        if isinstance(live, LiveServer) and live not in found:
            found.append(live)
    return found


# -- WebAuthn and accessibility ----------------------------------------------------------


@dataclass
class VirtualAuthenticator:
    """Chromium's virtual authenticator (DevTools ``WebAuthn`` domain) for one page.

    Credentials live in the authenticator, not in cookies: clearing the context's cookies
    "signs out" while the passkey stays available for the next sign-in.
    """

    cdp: Any
    authenticator_id: str

    def credentials(self) -> list[dict[str, Any]]:
        result = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )
        return list(result.get("credentials", []))

    def set_user_verified(self, verified: bool) -> None:
        """Whether the next user verification (fingerprint, PIN...) succeeds."""
        self.cdp.send(
            "WebAuthn.setUserVerified",
            {"authenticatorId": self.authenticator_id, "isUserVerified": verified},
        )


@pytest.fixture
def virtual_authenticator(browser_page) -> Iterator[VirtualAuthenticator]:
    """A passkey-capable platform authenticator that always verifies the user."""
    cdp = browser_page.context.new_cdp_session(browser_page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "ctap2Version": "ctap2_1",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    auth = VirtualAuthenticator(cdp, added["authenticatorId"])
    try:
        yield auth
    finally:
        try:
            cdp.send(
                "WebAuthn.removeVirtualAuthenticator", {"authenticatorId": auth.authenticator_id}
            )
            cdp.send("WebAuthn.disable")
            cdp.detach()
        except Exception:  # the context may already be gone
            pass


_PAGE_BASICS = """
() => {
  const problems = [];
  const shown = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const text = (el) => (el && el.textContent || "").replace(/\\s+/g, " ").trim();
  const h1 = [...document.querySelectorAll("h1")].filter(shown);
  if (h1.length !== 1) problems.push(`${h1.length} visible <h1> elements (want 1)`);
  else if (!text(h1[0])) problems.push("the <h1> is empty");
  if (!document.documentElement.lang) problems.push("<html> has no lang");
  if (!document.title.trim()) problems.push("the page has no <title>");
  const byIds = (ids) => (ids || "").split(/\\s+/).filter(Boolean).map((i) => document.getElementById(i));
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const named = [...(el.labels || [])].some((l) => text(l))
      || (el.getAttribute("aria-label") || "").trim()
      || byIds(el.getAttribute("aria-labelledby")).some((l) => text(l));
    if (!named) problems.push(`unlabelled <${el.tagName.toLowerCase()} name="${el.name}">`);
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    if (!shown(el)) continue;
    if (!text(el) && !(el.getAttribute("aria-label") || "").trim())
      problems.push(`<${el.tagName.toLowerCase()}> without a name: ${el.outerHTML.slice(0, 80)}`);
  }
  for (const el of document.querySelectorAll("[aria-describedby], [aria-labelledby]")) {
    const ids = [el.getAttribute("aria-describedby"), el.getAttribute("aria-labelledby")].join(" ");
    if (byIds(ids).some((ref) => !ref)) problems.push(`dangling aria reference on ${el.outerHTML.slice(0, 80)}`);
  }
  // ARIA 1.2 prohibits naming generic and text-level roles: the label would be ignored
  // (or, where honoured, hide the element's text, such as a setup key).
  const unnameable = "code, span, div, p, strong, em, b, i, small, pre, samp, kbd";
  for (const el of document.querySelectorAll(`:is(${unnameable})[aria-label]:not([role])`))
    problems.push(`aria-label on <${el.tagName.toLowerCase()}> is ignored: ${el.outerHTML.slice(0, 80)}`);
  const ids = [...document.querySelectorAll("[id]")].map((el) => el.id);
  const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dup.length) problems.push(`duplicate ids: ${[...new Set(dup)].join(", ")}`);
  return problems;
}
"""


def page_basics(page) -> list[str]:
    """Accessibility smoke of the current page: exactly one visible ``<h1>`` with text, a
    ``lang`` and a title, every form control labelled, every button and link named, no
    ``aria-label`` where ARIA forbids naming (``<code>``, ``<span>``...), no dangling
    ``aria-*`` id references and no duplicate ids. Returns the problems found."""
    return list(page.evaluate(_PAGE_BASICS))


# -- accessibility (axe-core) --------------------------------------------------------------


@pytest.fixture
def a11y_page(request, browser, browser_log):
    """Like ``browser_page``, but the context bypasses the provider's CSP so that
    :func:`tests.e2e.axe.run_axe` can inject axe-core as an inline script. Only for the
    accessibility tests: CSP violations are neither enforced nor reported here (the
    other browser tests, on ``browser_page``, check them)."""
    context = browser.new_context(
        viewport={"width": 1000, "height": 800}, locale="en-US", bypass_csp=True
    )
    context.set_default_timeout(10_000)
    context.set_default_navigation_timeout(15_000)
    page = context.new_page()

    def on_console(msg) -> None:
        loc = msg.location or {}
        browser_log.console.append({"type": msg.type, "text": msg.text, "url": loc.get("url")})

    page.on("console", on_console)
    page.on("pageerror", lambda err: browser_log.page_errors.append(str(err)))
    _SNAPSHOTS[page] = []
    _clear_artifacts(request.node)
    try:
        yield page
    finally:
        shots = _SNAPSHOTS.pop(page, [])
        if _failed(request.node):
            _save_artifacts(request, page, shots, browser_log)
        context.close()
