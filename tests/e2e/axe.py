"""axe-core in the browser: run the accessibility rules on a page and judge the result.

``.ci/test-setup`` installs axe-core from the npm registry into ``.cache/axe`` (git-ignored;
``AXE_DIR`` overrides the folder). Without it the accessibility tests skip, or fail when
``IDP_TEST_REQUIRE`` names ``browser``.

axe.min.js is injected as an inline ``<script>``, which the provider's CSP
(``script-src 'self'``) forbids: use a page whose context bypasses CSP (the ``a11y_page``
fixture of ``tests/e2e/conftest.py``), never the CSP-checking ``browser_page``.

- :func:`run_axe`           the violations of the WCAG 2.0/2.1 A and AA and best-practice
                            rules (Section 508 refers to WCAG 2.0 AA) on the current page;
- :func:`assert_accessible` fails on serious or critical violations, listing each (rule,
                            impact, help, target selectors), and writes the full report to
                            ``test-artifacts/axe-<name>.json``.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
AXE_DIR = Path(os.environ.get("AXE_DIR") or PROJECT_ROOT / ".cache" / "axe")
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"

TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice")
BLOCKING = ("serious", "critical")

_RUN = """
([context, tags]) => axe.run(context || document, {
  runOnly: {type: "tag", values: tags},
  resultTypes: ["violations"],
})
"""


@cache
def _axe_source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


def axe_available() -> bool:
    return AXE_JS.is_file() and AXE_JS.stat().st_size > 0


def require_axe() -> None:
    """Skip the test (or fail it, when IDP_TEST_REQUIRE names browser) without axe-core."""
    need(
        "browser",
        axe_available(),
        f"axe-core is not installed at {AXE_JS} (run .ci/test-setup, or "
        "npm install --prefix .cache/axe axe-core@4)",
    )


def run_axe(page, *, context: Any = None) -> list[dict[str, Any]]:
    """Run axe-core on *page* (or on *context*: a selector or axe context object) and
    return its violations, each with ``id``, ``impact``, ``help``, ``helpUrl``, ``tags``
    and ``nodes`` (``target`` selectors, ``html``, ``failureSummary``)."""
    require_axe()
    if not page.evaluate("() => typeof window.axe === 'object'"):
        from playwright.sync_api import Error

        try:
            page.add_script_tag(content=_axe_source())
        except Error as exc:
            pytest.fail(
                f"axe-core could not be injected into {page.url}: the page's CSP forbids "
                f"inline scripts; use the a11y_page fixture (bypass_csp) ({exc.message[:120]})",
                pytrace=False,
            )
    result = page.evaluate(_RUN, [context, list(TAGS)])
    return list(result["violations"])


def blocking(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The serious and critical violations."""
    return [v for v in violations if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    """One paragraph per violation: rule, impact, help, and every offending element."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v.get('impact')}): {v['help']} <{v.get('helpUrl', '')}>")
        for node in v.get("nodes", []):
            target = " ".join(json.dumps(t) for t in node.get("target", []))
            lines.append(f"    {target}: {node.get('html', '')[:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ").strip()
            if summary:
                lines.append(f"      {summary[:300]}")
    return "\n".join(lines)


def _report_path(name: str) -> Path:
    return ARTIFACTS / f"axe-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_')}.json"


class AxeAudit:
    """Several pages of one journey: :meth:`check` each (a failure does not stop the
    journey), then :meth:`assert_clean` fails listing every page's serious or critical
    violations. Every checked page's violations of any impact are in :attr:`results`."""

    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.failures: list[str] = []

    def check(self, page, name: str, *, context: Any = None) -> list[dict[str, Any]]:
        violations = run_axe(page, context=context)
        self.results[name] = violations
        report = _report_path(name)
        bad = blocking(violations)
        if not bad:
            report.unlink(missing_ok=True)
            return violations
        ARTIFACTS.mkdir(exist_ok=True)
        report.write_text(
            json.dumps(
                {"name": name, "url": page.url, "tags": TAGS, "violations": violations},
                indent=2,
                sort_keys=True,
            ),
            encoding="utf-8",
        )
        self.failures.append(
            f"{name} ({page.url}): {len(bad)} serious or critical accessibility "
            f"violation(s), report in {report.relative_to(PROJECT_ROOT)}\n{describe(bad)}"
        )
        return violations

    def assert_clean(self) -> None:
        if self.failures:
            pytest.fail("\n\n".join(self.failures), pytrace=False)


def assert_accessible(page, name: str, *, context: Any = None) -> list[dict[str, Any]]:
    """Fail when axe-core finds serious or critical violations on *page*.

    On failure ``test-artifacts/axe-<name>.json`` holds the URL and every violation (all
    impacts); a stale report of the same name is removed on success. Returns all
    violations (moderate and minor ones included) for callers that want to look further.
    """
    audit = AxeAudit()
    violations = audit.check(page, name, context=context)
    audit.assert_clean()
    return violations
