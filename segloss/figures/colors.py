"""Line colours legible on both of Streamlit's backgrounds (light ``#ffffff``, dark ``#0e1117``).

A chart's lines keep their colours whichever theme the reader picked, so a colour chosen on white
(the light theme's text grey ``#31333f``, Cityscapes' navy car ``(0, 0, 142)``) can vanish on the dark
background. :func:`for_both_themes` lifts such a colour towards white, keeping its hue, until its
WCAG contrast ratio against the dark background reaches ``MIN_CONTRAST`` (3:1, WCAG's minimum for
graphical objects); the lifted colours stay well above that against white (a colour at the dark
bound has about 7:1 there). Colours already legible on the dark background are returned unchanged.
"""

from __future__ import annotations

DARK_BACKGROUND = "#0e1117"  # Streamlit's dark theme
LIGHT_BACKGROUND = "#ffffff"
MIN_CONTRAST = 3.0


def _rgb(color: str) -> tuple[float, float, float]:
    value = color.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"expected a colour as '#rrggbb', got {color!r}")
    return tuple(int(value[i:i + 2], 16) / 255 for i in (0, 2, 4))


def luminance(color: str) -> float:
    """WCAG 2 relative luminance of ``"#rrggbb"``: 0 (black) to 1 (white)."""
    def linear(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours, 1 to 21."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def for_both_themes(color: str) -> str:
    """``color``, or the least mix of it with white that reaches ``MIN_CONTRAST`` on the dark
    background (``"#rrggbb"``, same hue)."""
    if contrast(color, DARK_BACKGROUND) >= MIN_CONTRAST:
        return color
    rgb = _rgb(color)
    for step in range(1, 101):
        t = step / 100
        mixed = "#" + "".join(f"{round(255 * (c + (1 - c) * t)):02x}" for c in rgb)
        if contrast(mixed, DARK_BACKGROUND) >= MIN_CONTRAST:
            return mixed
    return LIGHT_BACKGROUND  # pragma: no cover - white itself passes
