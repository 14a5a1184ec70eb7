"""Push approval's small pure parts: the number and its decoys, the browser summary."""

from __future__ import annotations

from collections import Counter

from idp.mfa.push.service import Challenge, new_number, summarize_user_agent


def test_a_two_digit_number_and_two_distinct_decoys():
    seen = Counter()
    for _ in range(2000):
        number, choices = new_number()
        assert 10 <= number <= 99
        assert number in choices and len(choices) == 3 and len(set(choices)) == 3
        assert all(10 <= n <= 99 for n in choices)
        seen[choices.index(number)] += 1
    # The right answer is not always in the same place.
    assert min(seen.values()) > 500


def test_the_app_never_sees_the_number_itself():
    ch = Challenge(
        id="c",
        user_id=1,
        devices=["d"],
        number=42,
        choices=[17, 42, 88],
        client="Connexion",
        ip="203.0.113.9",
        browser="Firefox on Windows",
        created=1000,
        expires=1120,
        binding="s",
        handle="h",
    )
    shown = ch.for_app(now=1010)
    assert "number" not in shown and "handle" not in shown and "binding" not in shown
    assert shown["choices"] == [17, 42, 88] and shown["expires_in"] == 110


def test_user_agent_summary():
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
    chrome = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    )
    edge = chrome + " Edg/131.0.0.0"
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
    )
    assert summarize_user_agent(firefox) == "Firefox on Windows"
    assert summarize_user_agent(chrome) == "Chrome on Linux"
    assert summarize_user_agent(edge) == "Edge on Linux"
    assert summarize_user_agent(iphone) == "Safari on iPhone"
    assert summarize_user_agent("python-requests/2.32") == "Python requests"
    assert summarize_user_agent(None) == "Unknown browser"
