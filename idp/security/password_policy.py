"""What a new password must be (NIST SP 800-63B 3.1.1.2), checked offline.

Length only, between ``[password] min_length`` and ``max_length`` characters; every
character is allowed (spaces and emoji too) and there are no composition rules. A new
password is refused when it is common, breached-style, repetitive, a sequence, or built
from the user's own context (email, name, the service's name): zxcvbn estimates how
many guesses it takes with its bundled lists of common passwords, names and words, and
the password must reach ``[password] min_score``. Nothing leaves the process.

:func:`check_new_password` returns ``None`` or one message the user can act on.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable

from flask_babel import gettext as _
from zxcvbn import zxcvbn

# zxcvbn keeps the user inputs of the current call in a module-level dictionary; two
# threads checking at once would see each other's context, so calls are serialised.
_ZXCVBN_LOCK = threading.Lock()

# Runs of one character (or one short unit) repeated, and keyboard/alphabet/digit runs:
# zxcvbn scores these low already, but a plain message helps the user more.
_REPEAT = re.compile(r"(.{1,3}?)\1+", re.DOTALL)
_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "qwertyuiopasdfghjklzxcvbnm",
    "qwertzuiopasdfghjklyxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn",
)

# zxcvbn's cost grows quickly with length (about 20 ms at 40 characters, 370 ms at 128
# here), and the check runs before any rate limit can count a form. A long password is
# judged on windows of this many characters: guessing the whole is at least as hard as
# guessing one window, so one strong window makes the password strong.
ANALYSED_LENGTH = 40


def _too_common(reason: str | None = None) -> str:
    """*reason* (already in the page's language), then the advice every refusal ends with."""
    advice = _(
        "This password is too easy to guess. Try a passphrase of four or more unrelated "
        "words, or a longer password."
    )
    return f"{reason} {advice}" if reason else advice


def _normalise(password: str) -> str:
    # NIST SP 800-63B 3.1.1.2: apply Unicode normalisation (NFKC) before checking.
    return unicodedata.normalize("NFKC", password)


def _is_sequence(value: str) -> bool:
    folded = value.lower().replace(" ", "")
    if len(folded) < 4:
        return False
    for run in _SEQUENCES:
        for alphabet in (run, run[::-1]):
            if folded in alphabet * 2:
                return True
    return False


def _context_words(user_inputs: Iterable[str]) -> list[str]:
    """The user's own words: whole values, email local part and domain labels, name parts."""
    words: set[str] = set()
    for value in user_inputs:
        value = (value or "").strip().lower()
        if not value:
            continue
        words.add(value)
        local, _, domain = value.partition("@")
        words.add(local)
        words.update(re.split(r"[.\-_+\s]+", local))
        if domain:
            words.update(label for label in domain.split(".")[:-1])
        words.update(value.split())
    return sorted(w for w in words if len(w) >= 4)


def _mostly_context(password: str, words: list[str]) -> bool:
    """True when removing the user's own words leaves too little of the password."""
    rest = password.lower()
    found = False
    for word in sorted(words, key=len, reverse=True):
        if word in rest:
            rest = rest.replace(word, "")
            found = True
    if not found:
        return False
    rest = re.sub(r"[\W\d_]+", "", rest)
    return len(rest) < 6


def check_new_password(
    password: str,
    *,
    min_length: int = 12,
    max_length: int = 128,
    min_score: int = 3,
    user_inputs: Iterable[str] = (),
) -> str | None:
    """Return a message saying why *password* is not acceptable, else ``None``.

    *user_inputs* are context-specific words to refuse (the user's email and name, the
    service's name).
    """
    if len(password) < min_length:
        return _("Use at least %(min)s characters.", min=min_length)
    if len(password) > max_length:
        return _("Use at most %(max)s characters.", max=max_length)
    normalised = _normalise(password)
    if not normalised.strip():
        return _("The password cannot be only spaces.")
    compact = normalised.replace(" ", "")
    if _REPEAT.fullmatch(compact) or len(set(compact)) <= 2:
        return _too_common(_("Avoid repeated characters like “aaaa” or “abab”."))
    if _is_sequence(normalised):
        return _too_common(_("Avoid sequences like “abcd”, “1234” or “qwerty”."))
    inputs = [v for v in user_inputs if v]
    if _mostly_context(normalised, _context_words(inputs)):
        return _too_common(_("Do not build your password from your name or email address."))
    windows = [normalised[:ANALYSED_LENGTH]]
    if len(normalised) > ANALYSED_LENGTH:
        windows.append(normalised[-ANALYSED_LENGTH:])
    for window in windows:
        with _ZXCVBN_LOCK:
            result = zxcvbn(window, user_inputs=inputs, max_length=ANALYSED_LENGTH)
        if result["score"] >= min_score:
            return None
    patterns = {m.get("pattern") for m in result.get("sequence", [])}
    dictionaries = {m.get("dictionary_name") for m in result.get("sequence", [])}
    if "user_inputs" in dictionaries:
        return _too_common(_("Do not build your password from your name or email address."))
    if "repeat" in patterns:
        return _too_common(_("Avoid repeated words or characters."))
    if "sequence" in patterns or "spatial" in patterns:
        return _too_common(_("Avoid sequences and keyboard patterns like “1234” or “qwerty”."))
    if "date" in patterns:
        return _too_common(_("Avoid dates and years."))
    if "dictionary" in patterns:
        return _(
            "This password is common or appears in lists of leaked passwords. "
            "Try a passphrase of four or more unrelated words, or a longer password."
        )
    return _too_common()


def check_for(settings, password: str, user_inputs: Iterable[str] = ()) -> str | None:
    """:func:`check_new_password` with the ``[password]`` settings and the service name."""
    p = settings.password
    return check_new_password(
        password,
        min_length=p.min_length,
        max_length=p.max_length,
        min_score=p.min_score,
        user_inputs=[*user_inputs, settings.ui.service_name],
    )
