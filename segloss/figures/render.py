"""Images for a screen: label masks in their palette, per-pixel maps as heatmaps, upscaled crisply.

Everything returns uint8 RGB arrays ``(H, W, 3)`` that any UI can show (``st.image``, PIL,
``plotly.express.imshow``) or encode losslessly with :func:`png_bytes`. Heatmaps use the
perceptually uniform "inferno" colour map (dark = little loss, bright = much), linearly or on a
log scale, clipped at ``vmax``. Imports numpy and pillow.

Example:
    >>> import numpy as np
    >>> rgb = heatmap_rgb(np.array([[0.0, 1.0], [2.0, 4.0]]), vmax=2.0)
    >>> rgb.shape, rgb.dtype, bool((rgb[1, 1] == rgb[1, 0]).all())     # 4.0 is clipped to vmax
    ((2, 2, 3), dtype('uint8'), True)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# matplotlib's "inferno" sampled at 9 evenly spaced points; interpolated linearly in between.
_INFERNO = np.array([[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
                     [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]], np.float64)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO)), _INFERNO[:, k])
                     for k in range(3)], axis=1).round().astype(np.uint8)
#: Colour stops of :data:`COLORMAP` for plotly (``colorscale=``), so a colour bar matches the images.
PLOTLY_COLORSCALE = [[i / 8, "rgb({},{},{})".format(*map(int, c))] for i, c in enumerate(_INFERNO)]
LOG_DECADES = 4.0  # a log-scale heatmap spans [vmax / 10^4, vmax]


def _as_map(values, name: str = "values") -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) map, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def robust_max(values, quantile: float = 0.99) -> float:
    """The ``quantile`` of the finite values (so a few extreme pixels do not wash out the rest);
    falls back to the maximum when the quantile is 0, and to 1.0 for an all-zero map."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    if not finite.size:
        return 1.0
    top = float(np.quantile(finite, quantile))
    top = top if top > 0 else float(finite.max())
    return top if top > 0 else 1.0


def normalise(values, vmax: float, log: bool = False) -> np.ndarray:
    """Map values to [0, 1]: ``v / vmax`` (linear) or ``log10(v)`` over ``[vmax/10^4, vmax]``.

    Raises:
        ValueError: ``vmax`` not a positive finite number.
    """
    if not (isinstance(vmax, (int, float, np.floating)) and np.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a positive finite number, got {vmax!r}")
    array = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=vmax, neginf=0.0)
    if log:
        low = np.log10(vmax) - LOG_DECADES
        scaled = (np.log10(np.maximum(array, vmax * 10.0 ** -LOG_DECADES)) - low) / LOG_DECADES
    else:
        scaled = array / vmax
    return np.clip(scaled, 0.0, 1.0)


def heatmap_rgb(values, vmax: float | None = None, *, log: bool = False) -> np.ndarray:
    """Colour a per-pixel map ``(H, W)`` with the inferno colour map.

    Args:
        values: real ``(H, W)`` (e.g. a loss map); NaN shows as 0.
        vmax: value drawn brightest (larger values clip); None: :func:`robust_max` of ``values``.
        log: colour by ``log10`` over the 4 decades below ``vmax``.

    Returns:
        uint8 ``(H, W, 3)``.

    Raises:
        ValueError: not 2-D or bad ``vmax``. TypeError: non-numeric values.
    """
    array = _as_map(values)
    vmax = robust_max(array) if vmax is None else vmax
    return COLORMAP[np.round(normalise(array, vmax, log) * 255).astype(np.intp)]


def colorbar_rgb(width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal strip of the colour map, low on the left: uint8 ``(height, width, 3)``."""
    ramp = np.linspace(0, 255, width).round().astype(np.intp)
    return np.ascontiguousarray(np.broadcast_to(COLORMAP[ramp], (height, width, 3)))


def upscale(rgb: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale by the smallest integer factor that makes the short side >= ``min_side``
    (so a browser never blurs the pixels of a small map); ``(H, W)`` or ``(H, W, K)`` arrays.

    Raises:
        ValueError: if ``rgb`` is not 2-D or 3-D, or ``min_side < 1``.
    """
    array = np.asarray(rgb)
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W) or (H, W, K) image, got shape {array.shape}")
    if min_side < 1:
        raise ValueError(f"min_side must be >= 1, got {min_side}")
    factor = max(1, -(-min_side // min(array.shape[:2])))
    return array.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else array


def png_bytes(rgb: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 ``(H, W, 3)`` or ``(H, W)`` image (label colours must not be
    JPEG-blurred into colours no class has).

    Raises:
        TypeError: if ``rgb`` is not uint8.
    """
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        raise TypeError(f"png_bytes needs a uint8 image, got dtype {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()
