"""The import rules of docs/ARCHITECTURE.md, checked on every run.

The contracts live in pyproject.toml (``[tool.importlinter]``) and are checked by
import-linter: the protocol layer never imports the factors, factor packages never
import each other and use only the shared contract of ``idp.mfa``, the sign-in policy
is pure, models import no Flask, the foundation imports nothing above it, and services
never import pages. A second rule import-linter cannot express: no module imports
another module's private (underscore) names.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is a test dependency (pyproject.toml [test])"
    run = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout and run.stdout.count("KEPT") >= 7, run.stdout


def _private_imports() -> list[str]:
    found = []
    for path in sorted((ROOT / "idp").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    return found


def test_no_module_imports_another_modules_private_names():
    """A name with a leading underscore belongs to its module: share it under a public
    name (idp.mfa.pages is where the second-factor pages share theirs)."""
    assert _private_imports() == []
