"""The translation catalogs are complete: every string the provider and Connexion mark
for translation (Python and templates, extracted as ``make messages`` does) is in each
language's catalog, translated, never fuzzy, with the placeholders of the English and
every plural form; no page shows text that was never marked; and the two README
commands (``make run``, ``make test``) compile the catalogs on a fresh machine."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
PYBABEL = Path(sys.executable).with_name("pybabel")
#: (name, the folder extracted, its babel.cfg, its catalogs)
PROJECTS = [
    ("idp", ROOT / "idp", ROOT / "babel.cfg", ROOT / "idp" / "translations"),
    (
        "connexion",
        ROOT / "clients" / "connexion",
        ROOT / "clients" / "connexion" / "babel.cfg",
        ROOT / "clients" / "connexion" / "translations",
    ),
]
LANGUAGES = ("es",)
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|<[^>]+>")


def keywords() -> list[str]:
    """``BABEL_KEYWORDS`` of the Makefile: the test extracts exactly as ``make messages``."""
    line = re.search(r"^BABEL_KEYWORDS :=(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert line, "the Makefile lost BABEL_KEYWORDS"
    return line.group(1).split()


def extract(source: Path, config: Path, out: Path) -> Catalog:
    subprocess.run(
        [
            str(PYBABEL),
            "extract",
            "-F",
            str(config),
            *keywords(),
            "--no-wrap",
            "-o",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    with out.open("rb") as f:
        return read_po(f)


def load(po: Path) -> Catalog:
    assert po.is_file(), f"{po.relative_to(ROOT)} is missing: run `make language`"
    with po.open("rb") as f:
        return read_po(f)


def problems(template: Catalog, catalog: Catalog) -> list[str]:
    """Why *catalog* does not cover *template*: strings missing from it, untranslated,
    fuzzy, with a missing plural form, or with placeholders that differ from the
    English (``%(name)s`` and HTML tags)."""
    found: list[str] = []
    for message in template:
        if not message.id:
            continue
        key = message.id[0] if isinstance(message.id, tuple) else message.id
        entry = catalog.get(key, message.context)
        if entry is None or entry.id != message.id:
            found.append(f"not in the catalog: {key!r}")
            continue
        if entry.fuzzy:
            found.append(f"fuzzy: {key!r}")
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if len(strings) != (catalog.num_plurals if entry.pluralizable else 1) or not all(strings):
            found.append(f"untranslated (or a plural form missing): {key!r}")
            continue
        english = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        wanted = sorted(set(PLACEHOLDER.findall(english[-1])))
        for text in strings:
            got = sorted(set(PLACEHOLDER.findall(text)))
            # A singular may name its count in words ("one minute"): %(num)d is optional.
            if got != wanted and sorted(set(wanted) - {"%(num)d", "%(count)s"}) != sorted(
                set(got) - {"%(num)d", "%(count)s"}
            ):
                found.append(f"placeholders differ ({wanted} / {got}): {key!r}")
    return found


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    ("name", "source", "config", "catalogs"), PROJECTS, ids=[p[0] for p in PROJECTS]
)
def test_every_marked_string_is_translated(tmp_path, name, source, config, catalogs, lang):
    template = extract(source, config, tmp_path / f"{name}.pot")
    assert len(template) > 100, "the extraction found almost nothing: is babel.cfg right?"
    catalog = load(catalogs / lang / "LC_MESSAGES" / "messages.po")
    found = problems(template, catalog)
    assert not found, (
        f"{len(found)} problem(s) in {name}'s {lang} catalog; run `make messages`, "
        "translate, then `make translations`:\n" + "\n".join(found[:40])
    )


def test_the_check_fails_on_a_missing_untranslated_fuzzy_or_broken_entry():
    template = Catalog()
    for text in ("Present", "New text", "Fuzzy", "Blank", "Hello %(name)s"):
        template.add(text)
    catalog = Catalog(locale="es")
    catalog.add("Present", "Presente")
    catalog.add("Fuzzy", "Difuso", flags=["fuzzy"])
    catalog.add("Blank", "")
    catalog.add("Hello %(name)s", "Hola")
    found = problems(template, catalog)
    assert found == [
        "not in the catalog: 'New text'",
        "fuzzy: 'Fuzzy'",
        "untranslated (or a plural form missing): 'Blank'",
        "placeholders differ (['%(name)s'] / []): 'Hello %(name)s'",
    ]
    assert problems(template, catalog)[0].startswith("not in the catalog")


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("catalogs", [p[3] for p in PROJECTS], ids=[p[0] for p in PROJECTS])
def test_plural_forms_follow_the_language(catalogs, lang):
    catalog = load(catalogs / lang / "LC_MESSAGES" / "messages.po")
    assert catalog.locale_identifier == lang
    # CLDR's Spanish plural rule: one, many (millions), other.
    assert catalog.num_plurals == 3
    assert catalog.plural_expr.startswith("(n == 1 ? 0")
    plurals = [m for m in catalog if m.id and m.pluralizable]
    assert plurals, "no plural entries: ngettext and {% pluralize %} must be extracted"
    for m in plurals:
        assert m.string[1] == m.string[2], m.id  # "many" and "other" read the same
        assert m.string[0] != m.string[2], m.id


# -- no text that was never marked --------------------------------------------------------

TEMPLATE_ROOTS = [ROOT / "idp" / "templates", ROOT / "clients" / "connexion" / "templates"]
#: Pages that stay in English (the admin area) or exist only in development.
ENGLISH_ONLY = ("admin", "dev")
#: Words that are the same in every language (names).
NAMES = {"Connexion", "–", "English", "Español"}


def unmarked_text(source: str) -> list[tuple[int, str]]:
    """Text a template shows that is outside ``_()`` / ``{% trans %}``: (line, text)."""

    def blank(m: re.Match) -> str:
        return "\n" * m.group(0).count("\n")

    s = re.sub(r"\{#.*?#\}", blank, source, flags=re.S)
    s = re.sub(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", blank, s, flags=re.S)
    s = re.sub(r"<(script|style)\b.*?</\1>", blank, s, flags=re.S)
    s = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", blank, s, flags=re.S)
    found = []
    for m in re.finditer(r'\b(alt|title|aria-label|placeholder|data-[\w-]+)="([^"]*)"', s):
        # data-* attributes hold words for scripts ("data-msg-other") and CSS
        # ("data-label"), and also values for code ("data-webauthn=register").
        words = r"[A-Z][a-z]" if m.group(1).startswith("data-") else r"[A-Za-z]{2,}"
        if re.search(words, m.group(2)):
            found.append((s[: m.start()].count("\n") + 1, m.group(0)))
    text = re.sub(r"<[^>]*>", blank, s, flags=re.S)
    for number, line in enumerate(text.split("\n"), 1):
        words = [w for w in line.split() if w not in NAMES]
        # What macros leave outside tags: class names and attributes, not words.
        words = [w for w in words if not re.fullmatch(r'[\w-]+="[^"]*"|[a-z0-9_]*-[a-z0-9_-]*', w)]
        if any(re.search(r"[A-Za-z]{2,}", w) for w in words):
            found.append((number, line.strip()))
    return found


def test_unmarked_text_is_found():
    page = (
        '<h1>{{ _("Marked") }}</h1>\n<p>{% trans %}Also marked{% endtrans %}</p>\n'
        '<p>Forgotten words</p>\n<input placeholder="Blue key">\n'
        '<div class="{{ x }} usa-form-group--error">{# a comment #}</div>\n'
        '<td data-label="Method" data-webauthn="register" data-msg="{{ _(\'Fine\') }}"></td>'
    )
    assert unmarked_text(page) == [
        (4, 'placeholder="Blue key"'),
        (6, 'data-label="Method"'),
        (3, "Forgotten words"),
    ]


def test_no_template_shows_unmarked_text():
    found = []
    for root in TEMPLATE_ROOTS:
        for path in sorted([*root.rglob("*.html"), *root.rglob("*.txt")]):
            parts = path.relative_to(root).parts
            # The admin pages stay English; what an admin sends users does not.
            if parts[0] in ENGLISH_ONLY and parts[:2] != ("admin", "email"):
                continue
            for number, text in unmarked_text(path.read_text()):
                found.append(f"{path.relative_to(ROOT)}:{number}: {text}")
    assert not found, "text outside _() / {% trans %}:\n" + "\n".join(found)


# -- the README commands compile the catalogs ---------------------------------------------


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["run", "test"])
def test_make_run_and_make_test_compile_every_catalog(target):
    catalogs = sorted(
        str(po.relative_to(ROOT))
        for _, _, _, root in PROJECTS
        for po in root.glob("*/LC_MESSAGES/messages.po")
    )
    assert len(catalogs) == len(PROJECTS) * len(LANGUAGES)
    # -n: print, do not run; -W: as if every catalog had just changed (no .mo yet).
    out = subprocess.run(
        ["make", "-n", *[f"-W{po}" for po in catalogs], target],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for po in catalogs:
        mo = po[: -len(".po")] + ".mo"
        assert re.search(rf"pybabel compile .*-i {re.escape(po)} -o {re.escape(mo)}", out), po


def test_compiled_catalogs_are_not_committed():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "*.mo" in ignored


# -- the gettext alias is never shadowed --------------------------------------------------


def shadowed_gettext(source: str) -> list[str]:
    """Functions that call ``_()`` (gettext) and also assign ``_`` (``a, _ = ...``,
    ``for _ in``): Python then reads ``_`` as the local, and the call fails."""
    import ast

    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        nodes = list(ast.walk(fn))
        stores = any(
            isinstance(n, ast.Name) and n.id == "_" and isinstance(n.ctx, ast.Store) for n in nodes
        )
        calls = any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_"
            for n in nodes
        )
        if stores and calls:
            found.append(f"{fn.name} (line {fn.lineno})")
    return found


def test_shadowing_is_found():
    source = "def f():\n    a, _ = g()\n    return _('text')\n\ndef ok():\n    return _('x')\n"
    assert shadowed_gettext(source) == ["f (line 1)"]


def test_no_function_shadows_gettext():
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for _name, source, _config, _catalogs in PROJECTS
        for path in sorted(source.rglob("*.py"))
        for name in shadowed_gettext(path.read_text())
    ]
    assert not found, "`_` assigned where _() is called:\n" + "\n".join(found)
