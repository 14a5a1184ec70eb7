"""QR codes rendered on the server as SVG (no external service, no script)."""

from __future__ import annotations

import segno


def qr_svg(data: str, *, title: str) -> str:
    """An inline SVG of *data* with an accessible title."""
    qr = segno.make(data, error="m")
    # omitsize: a viewBox instead of a fixed size, so CSS can scale it to narrow screens.
    return qr.svg_inline(scale=5, border=2, title=title, dark="#000", light="#fff", omitsize=True)
