"""The enrollment chart of the MFA adoption dashboard, drawn on the server as SVG.

No JavaScript and no CDN: the page stays within the CSP (``default-src 'none'``) and
works without scripts. Colours are presentation attributes, not inline styles.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from ..wording import long_date

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


def enrollment_svg(
    series: list[tuple[dt.date, int]],
    *,
    today: dt.date,
    deadline: dt.date | None,
    target: int,
) -> str:
    """Cumulative users with a second factor per day (a step line), the number of active
    users to reach (dashed), today and the enforcement date (vertical lines)."""
    start = min([today - dt.timedelta(days=30), *(d for d, _ in series)])
    end = max([today + dt.timedelta(days=1), *([deadline] if deadline else [])])
    span = max(1, (end - start).days)
    top = max(1, target, *(n for _, n in series))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: dt.date) -> float:
        return round(LEFT + plot_w * (day - start).days / span, 1)

    def y(n: int) -> float:
        return round(TOP + plot_h * (1 - n / top), 1)

    points = [(x(start), y(0))]
    last = 0
    for day, n in series:
        points += [(x(day), y(last)), (x(day), y(n))]
        last = n
    points.append((x(min(today, end)), y(last)))
    line = " ".join(f"{px},{py}" for px, py in points)
    reached = series[-1][1] if series else 0
    summary = (
        f"{reached} of {target} active users have a second sign-in step as of "
        f"{today.isoformat()}"
        + (f"; enforcement date {deadline.isoformat()}." if deadline else ".")
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-labelledby="chart-title chart-desc" class="chart">',
        '<title id="chart-title">Users with a second sign-in step over time</title>',
        f'<desc id="chart-desc">{escape(summary)}</desc>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff" '
        'stroke="#565c65" stroke-width="1"/>',
        f'<line x1="{LEFT}" y1="{y(target)}" x2="{WIDTH - RIGHT}" y2="{y(target)}" '
        'stroke="#565c65" stroke-dasharray="6 4" stroke-width="1.5"/>',
        f'<text x="{LEFT + 4}" y="{y(target) + 14}" font-size="12" fill="#1b1b1b">'
        f"all active users ({target})</text>",
        f'<polyline points="{line}" fill="none" stroke="#005ea2" stroke-width="2.5"/>',
        f'<line x1="{x(today)}" y1="{TOP}" x2="{x(today)}" y2="{TOP + plot_h}" '
        'stroke="#1b1b1b" stroke-width="1"/>',
        f'<text x="{x(today) + 3}" y="{TOP + 12}" font-size="12" fill="#1b1b1b">today</text>',
    ]
    if deadline:
        parts += [
            f'<line x1="{x(deadline)}" y1="{TOP}" x2="{x(deadline)}" y2="{TOP + plot_h}" '
            'stroke="#b50909" stroke-width="2" stroke-dasharray="4 3"/>',
            f'<text x="{x(deadline) - 4}" y="{TOP + 26}" font-size="12" fill="#b50909" '
            f'text-anchor="end">enforcement {long_date(deadline)}</text>',
        ]
    parts += [
        f'<text x="{LEFT - 6}" y="{TOP + 10}" font-size="12" text-anchor="end" '
        f'fill="#1b1b1b">{top}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" font-size="12" text-anchor="end" '
        'fill="#1b1b1b">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 14}" font-size="12" fill="#1b1b1b">'
        f"{start.isoformat()}</text>",
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 14}" font-size="12" text-anchor="end" '
        f'fill="#1b1b1b">{end.isoformat()}</text>',
        "</svg>",
    ]
    return "\n".join(parts)
