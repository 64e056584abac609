"""The recording's waveform, drawn on the server as SVG (no script, no library in the page)."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import numpy as np

from linerec.codec import Samples

WIDTH = 800
HEIGHT = 120


def waveform_svg(
    samples: Samples,
    *,
    rate: int,
    spans: tuple[tuple[float, float, str], ...] = (),
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Peak envelope (min/max per column), with the given spans (start s, length s, label)
    shaded: pauses, redactions. Presentation attributes, not a style sheet: the console's
    content security policy allows no inline style."""
    audio = np.asarray(samples, dtype=np.float64) / 32768.0
    duration = len(audio) / rate if len(audio) else 0.0
    columns = max(1, min(width, len(audio)))
    edges = np.linspace(0, len(audio), columns + 1).astype(int)
    middle = height / 2
    top, bottom = [], []
    for column in range(columns):
        part = audio[edges[column] : max(edges[column + 1], edges[column] + 1)]
        high = float(part.max()) if part.size else 0.0
        low = float(part.min()) if part.size else 0.0
        x = column * width / columns
        top.append(f"{x:.1f},{middle - high * middle:.1f}")
        bottom.append(f"{x:.1f},{middle - low * middle:.1f}")
    outline = " ".join(top + bottom[::-1])
    shaded = []
    for start, length, label in spans:
        if duration <= 0:
            break
        x = max(0.0, start / duration * width)
        w = max(1.0, length / duration * width)
        shaded.append(
            f'<rect fill="#e53e3e" fill-opacity="0.3" x="{x:.1f}" y="0" '
            f'width="{w:.1f}" height="{height}">'
            f"<title>{_text(label)}</title></rect>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f"aria-label={quoteattr(f'waveform, {duration:.1f} s')}>"
        f'<line stroke="#a0aec0" stroke-width="0.5" '
        f'x1="0" y1="{middle}" x2="{width}" y2="{middle}"/>'
        f'<polygon fill="#2b6cb0" points="{outline}"/>{"".join(shaded)}</svg>'
    )


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
