"""A tiny HTML form parser, enough to submit a provider's pages like a browser.

It understands ``<form>``, ``<input>`` (text-like, hidden, password, checkbox,
radio, submit, image), ``<button>``, ``<select>``/``<option>`` and ``<textarea>``.
Disabled controls are skipped, checkboxes and radios only count when checked,
a ``<select>`` contributes its selected option (or its first one).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

__all__ = ["Form", "PageInfo", "find_form", "page_info", "parse_forms"]

_NON_VALUE_INPUTS = {"submit", "image", "button", "reset", "file"}


@dataclass
class Form:
    """One parsed form.

    ``fields`` holds what a browser would submit (hidden fields included),
    ``buttons`` the named submit buttons as ``(name, value)`` in document order,
    ``names`` every control name seen (including unchecked checkboxes).
    """

    action: str
    method: str = "GET"
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    attrs: dict[str, str] = field(default_factory=dict)

    def has(self, *names: str) -> bool:
        """True when every name is a control or a button of this form."""
        known = self.names | set(self.fields) | {name for name, _ in self.buttons}
        return all(name in known for name in names)

    def fill(self, values: dict[str, Any] | None = None, /, **kwargs: Any) -> Form:
        """Set field values (``None`` removes a field). Returns the form for chaining."""
        for name, value in {**(values or {}), **kwargs}.items():
            if value is None:
                self.fields.pop(name, None)
            else:
                self.fields[name] = str(value)
        return self

    def submit_data(self, button: str | tuple[str, str] | None = None) -> dict[str, str]:
        """The form data a browser would send.

        ``button`` is ``None`` (implicit submission: the first named submit button,
        if any, is included, as when pressing Enter), a button name (the first
        button with that name) or an explicit ``(name, value)`` pair. Pass
        ``button=False`` to send no button at all.
        """
        data = dict(self.fields)
        if button is False:
            return data
        if button is None:
            if self.buttons:
                name, value = self.buttons[0]
                data[name] = value
        elif isinstance(button, str):
            for name, value in self.buttons:
                if name == button:
                    data[name] = value
                    break
            else:
                raise KeyError(f"form has no button named {button!r}: {self.buttons}")
        else:
            name, value = button
            data[name] = value
        return data


@dataclass
class PageInfo:
    title: str = ""
    h1: str = ""
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [p for p in (self.title, self.h1) if p]
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return " / ".join(dict.fromkeys(parts)) or "(no title)"


def _attr_dict(attrs: list[tuple[str, str | None]]) -> dict[str, str]:
    return {k.lower(): ("" if v is None else v) for k, v in attrs}


class _FormParser(HTMLParser):
    def __init__(self, base_url: str):
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: dict[str, Any] | None = None
        self._option: dict[str, Any] | None = None
        self._textarea: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = _attr_dict(attrs)
        if tag == "form":
            action = a.get("action", "").strip()
            self._form = Form(
                action=urljoin(self.base_url, action) if action else self.base_url,
                method=(a.get("method") or "GET").upper(),
                attrs=a,
            )
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        name = a.get("name")
        disabled = "disabled" in a
        if tag == "input":
            kind = a.get("type", "text").lower()
            if name:
                form.names.add(name)
            if not name or disabled:
                return
            if kind in ("submit", "image"):
                form.buttons.append((name, a.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if "checked" in a:
                    form.fields[name] = a.get("value", "on")
            elif kind not in _NON_VALUE_INPUTS:
                form.fields[name] = a.get("value", "")
        elif tag == "button":
            kind = a.get("type", "submit").lower()
            if name:
                form.names.add(name)
            if name and not disabled and kind == "submit":
                form.buttons.append((name, a.get("value", "")))
        elif tag == "select":
            if name:
                form.names.add(name)
            self._select = {"name": name, "disabled": disabled, "first": None, "chosen": None}
        elif tag == "option" and self._select is not None:
            self._finish_option()
            self._option = {"value": a.get("value"), "selected": "selected" in a, "text": []}
        elif tag == "textarea":
            if name:
                form.names.add(name)
            self._textarea = {"name": name, "disabled": disabled, "text": []}

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("textarea", "select", "option", "button", "form"):
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option["text"].append(data)
        if self._textarea is not None:
            self._textarea["text"].append(data)

    def _finish_option(self) -> None:
        opt, sel = self._option, self._select
        self._option = None
        if opt is None or sel is None:
            return
        value = opt["value"]
        if value is None:
            value = " ".join("".join(opt["text"]).split())
        if sel["first"] is None:
            sel["first"] = value
        if opt["selected"] and sel["chosen"] is None:
            sel["chosen"] = value

    def handle_endtag(self, tag: str) -> None:
        if tag == "option":
            self._finish_option()
        elif tag == "select" and self._select is not None:
            self._finish_option()
            sel, self._select = self._select, None
            value = sel["chosen"] if sel["chosen"] is not None else sel["first"]
            if self._form is not None and sel["name"] and not sel["disabled"] and value is not None:
                self._form.fields[sel["name"]] = value
        elif tag == "textarea" and self._textarea is not None:
            ta, self._textarea = self._textarea, None
            if self._form is not None and ta["name"] and not ta["disabled"]:
                text = "".join(ta["text"])
                self._form.fields[ta["name"]] = text[1:] if text.startswith("\n") else text
        elif tag == "form":
            self._form = None

    def close(self) -> None:
        super().close()
        if self._select is not None:
            self.handle_endtag("select")


_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class _InfoParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.info = PageInfo()
        # Open elements as (tag, kind, text parts); kind is "title", "h1", "error" or "".
        self._stack: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        a = _attr_dict(attrs)
        classes = a.get("class", "").split()
        is_error = a.get("role") == "alert" or any(
            c in ("error", "errors", "alert", "flash-error", "alert-danger") for c in classes
        )
        kind = "error" if is_error else tag if tag in ("title", "h1") else ""
        self._stack.append((tag, kind, []))

    def handle_endtag(self, tag: str) -> None:
        if all(t != tag for t, _, _ in self._stack):
            return
        while self._stack:
            open_tag, kind, text = self._stack.pop()
            value = " ".join("".join(text).split())
            if kind == "title" and not self.info.title:
                self.info.title = value
            elif kind == "h1" and not self.info.h1:
                self.info.h1 = value
            elif kind == "error" and value:
                self.info.errors.append(value)
            if self._stack:
                self._stack[-1][2].extend(text)
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._stack:
            self._stack[-1][2].append(data)


def parse_forms(html: str, base_url: str) -> list[Form]:
    """All forms of ``html``; actions are resolved against ``base_url``."""
    parser = _FormParser(base_url)
    parser.feed(html)
    parser.close()
    return parser.forms


def find_form(forms: list[Form], *field_names: str) -> Form:
    """The first form having every named field or button. Raises ``LookupError``."""
    for form in forms:
        if form.has(*field_names):
            return form
    seen = [sorted(f.names | {n for n, _ in f.buttons}) for f in forms]
    raise LookupError(f"no form with {list(field_names)}; forms on page have {seen}")


def page_info(html: str) -> PageInfo:
    """The page's ``<title>``, first ``<h1>`` and error/alert messages, for diagnostics."""
    parser = _InfoParser()
    # Diagnostics must never mask the real error, whatever the markup looks like.
    with contextlib.suppress(Exception):
        parser.feed(html)
        parser.close()
    return parser.info
