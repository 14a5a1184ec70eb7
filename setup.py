"""Build hook: the wheel carries the compiled translations.

The catalogs (``idp/translations/<lang>/LC_MESSAGES/messages.po``) are committed; their
compiled ``.mo`` files are not. ``make translations`` builds them in the working tree for
``make run`` and ``make test``; this hook compiles them into every wheel, however it is
built (``make wheel``, ``pip wheel .``), so an installed provider speaks every language
of its catalogs. Fuzzy entries are left out, as ``pybabel compile`` leaves them out.
Everything else about the package is in ``pyproject.toml``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithTranslations(build_py):
    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        root = Path(__file__).resolve().parent
        for po in sorted(root.glob("idp/translations/*/LC_MESSAGES/*.po")):
            target = Path(self.build_lib) / po.relative_to(root).with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as source:
                catalog = read_po(source, locale=po.parents[1].name)
            with target.open("wb") as out:
                write_mo(out, catalog)


setup(cmdclass={"build_py": BuildWithTranslations})
