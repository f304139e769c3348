"""Procedural scene drawers behind :mod:`segloss.train.data`, vectorised on coordinate grids.

``draw_street(rng, b, s)`` and ``draw_lesion(rng, b, s)`` return ``(images, labels)``: float32
``(b, s, s, 3)`` in ``[0, 1]`` and integer ``(b, s, s)`` labels, drawn from the numpy
``Generator`` ``rng`` only (same generator state, same arrays).
"""

from __future__ import annotations

import numpy as np
import torch

# Street materials: every pixel gets one; a material fixes the class (_STREET_LABEL), the
# texture noise amplitude (_STREET_TEXTURE) and, per sample, the colour (_street_colours).
# 5-12: one per building column, 15-18: cars, 21-24: pedestrians' clothes, 27-29: signs.
_SKY, _ROAD, _LANE, _SIDEWALK, _CURB, _FACADE, _WINDOW, _VEGETATION = 0, 1, 2, 3, 4, 5, 13, 14
_CAR, _GLASS, _TYRE, _CLOTHES, _SKIN, _POLE, _SIGN = 15, 19, 20, 21, 25, 26, 27
_STREET_LABEL = np.array([0, 1, 1, 2, 2] + [3] * 9 + [4] + [5] * 6 + [6] * 5 + [7] + [8] * 3)
_STREET_TEXTURE = np.array([0.01, 0.06, 0.05, 0.05, 0.04] + [0.05] * 9 + [0.14] + [0.03] * 6
                           + [0.05] * 5 + [0.04] + [0.03] * 3, dtype=np.float32)
_FACADES = [[0.8, 0.72, 0.6], [0.6, 0.32, 0.24], [0.55, 0.55, 0.58], [0.85, 0.84, 0.8],
            [0.32, 0.31, 0.34], [0.7, 0.6, 0.45]]
_PAINTS = [[0.75, 0.1, 0.1], [0.12, 0.22, 0.6], [0.9, 0.9, 0.9], [0.08, 0.08, 0.1],
           [0.65, 0.67, 0.7], [0.85, 0.7, 0.1], [0.2, 0.45, 0.3]]
_DARK_CLOTHES = [[0.1, 0.12, 0.3], [0.08, 0.08, 0.08], [0.25, 0.25, 0.27], [0.3, 0.2, 0.12],
                 [0.55, 0.12, 0.12]]
_SIGN_COLOURS = [[0.8, 0.1, 0.1], [0.1, 0.3, 0.75], [0.95, 0.8, 0.1], [0.9, 0.9, 0.9]]


def _pick(rng: np.random.Generator, choices: list, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(choices, np.float32)[rng.integers(0, len(choices), shape)]


def _street_colours(rng: np.random.Generator, b: int) -> np.ndarray:
    """Per-sample colour of each material, ``(B, 30, 3)``."""
    t = np.empty((b, 30, 3), np.float32)
    mix = rng.random((b, 1))
    t[:, _SKY] = mix * [0.42, 0.6, 0.85] + (1 - mix) * [0.66, 0.69, 0.74]
    t[:, _ROAD] = rng.uniform(0.36, 0.56, (b, 1)) * [1.0, 1.02, 1.1]
    t[:, _LANE], t[:, _CURB] = [0.88, 0.88, 0.84], [0.78, 0.78, 0.76]
    t[:, _SIDEWALK] = rng.uniform(0.55, 0.72, (b, 1)) * [1.0, 0.96, 0.9]
    t[:, _FACADE:_WINDOW] = _pick(rng, _FACADES, (b, 8))
    t[:, _WINDOW] = _pick(rng, [[0.18, 0.22, 0.32], [0.3, 0.34, 0.45], [0.8, 0.75, 0.5]], (b,))
    t[:, _VEGETATION] = rng.uniform(0.7, 1.2, (b, 1)) * [0.2, 0.4, 0.14]
    t[:, _CAR:_GLASS] = _pick(rng, _PAINTS, (b, 4))
    t[:, _GLASS], t[:, _TYRE] = [0.14, 0.17, 0.24], [0.05, 0.05, 0.05]
    t[:, _CLOTHES:_SKIN] = _pick(rng, _DARK_CLOTHES, (b, 4))
    t[:, _SKIN] = rng.uniform(0.5, 1.1, (b, 1)) * [0.82, 0.63, 0.5]
    t[:, _POLE] = rng.uniform(0.18, 0.4, (b, 1)) * [1.0, 1.0, 1.05]
    t[:, _SIGN:] = _pick(rng, _SIGN_COLOURS, (b, 3))
    return np.clip(t + rng.normal(0.0, 0.04, t.shape).astype(np.float32), 0.0, 1.0)


def _smooth_field(rng: np.random.Generator, b: int, size: int, cells: int = 4) -> np.ndarray:
    """Low-frequency noise ``(B, S, S)``: a ``cells x cells`` normal grid upsampled bilinearly."""
    coarse = torch.from_numpy(rng.standard_normal((b, 1, cells, cells), dtype=np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                           align_corners=True)
    return fine[:, 0].numpy()


def _blur(a: np.ndarray, axes: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """Separable binomial [1, 2, 1] / 4 blur along ``axes`` (edges replicated)."""
    for axis in axes:
        v = np.moveaxis(a, axis, 0)
        out = 0.5 * v
        out[1:] += 0.25 * v[:-1]
        out[:-1] += 0.25 * v[1:]
        out[0] += 0.25 * v[0]
        out[-1] += 0.25 * v[-1]
        a = np.moveaxis(out, 0, axis)
    return a


def draw_street(rng: np.random.Generator, b: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Street scenes: float32 ``(B, S, S, 3)`` images and uint8 ``(B, S, S)`` labels."""
    yi, xi = np.arange(s)[:, None], np.arange(s)[None, :]
    y, x = yi + np.float32(0.5), xi + np.float32(0.5)

    def u(lo: float, hi: float, n: int | None = None) -> np.ndarray:
        return rng.uniform(lo, hi, (b, 1, 1) if n is None else (b, n)).astype(np.float32)

    h, vx, cxb, half = u(0.3, 0.45) * s, u(0.38, 0.62) * s, u(0.35, 0.65) * s, u(0.25, 0.4) * s
    side = half * u(1.5, 2.1)
    t = np.clip((y - h) / (s - h), 0.0, 1.0)  # depth: 0 at the horizon, 1 at the bottom row
    dx = np.abs(x - (vx + t * (cxb - vx)))
    mat = np.zeros((b, s, s), np.int16)

    def paint(where: np.ndarray, material: int | np.ndarray) -> None:
        np.copyto(mat, np.asarray(material, np.int16), where=where)

    # Buildings and trees in 8 random columns; nearer the vanishing point they are lower.
    cuts = np.sort(rng.uniform(0, s, (b, 7)), axis=1)
    bounds = np.concatenate([np.zeros((b, 1)), cuts, np.full((b, 1), s)], axis=1)
    seg = (x[0][None, :, None] >= cuts[:, None, :]).sum(-1)

    def column(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, seg, axis=1)[:, None, :]

    spread = np.abs((bounds[:, :-1] + bounds[:, 1:]) / 2 - vx[:, 0]) / s
    top = h[:, 0] - rng.uniform(0.1, 0.35, (b, 8)) * s * (0.4 + 1.2 * spread)
    is_building = column(rng.random((b, 8)) < 0.7)
    wave = 0.025 * s * np.sin(x / (0.03 * s) + u(0, 6.3))
    top_col = column(top) + np.where(is_building, 0.0, wave)
    back = y >= top_col
    paint(back & is_building, _FACADE + column(np.arange(8)[None].repeat(b, 0)))
    paint(back & ~is_building, _VEGETATION)
    px = u(0.045, 0.08) * s
    py, wx, wy = px * u(0.9, 1.4), (x - column(bounds[:, :-1])) % px, (y - top_col)
    paint(back & is_building & (wx > 0.3 * px) & (wx < 0.75 * px) & (wy % py > 0.35 * py)
          & (wy % py < 0.8 * py) & (wy > 0.5 * py), _WINDOW)
    # Ground: sidewalk, curb, road and a dashed centre line, all in perspective.
    below = y > h
    paint(below & (dx < side * t), _SIDEWALK)
    paint(below & (dx < half * t + np.maximum(0.6, 0.025 * s * t)), _CURB)
    paint(below & (dx < half * t), _ROAD)
    dash = (1.5 / (t + 0.05) + u(0, 1)) % 1.0 < 0.5
    paint(below & (dx < np.maximum(0.5, 0.012 * s * t)) & dash, _LANE)

    def on_ground(depth: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, ...]:
        """For ``(B, n)`` depths: x on a random side of the sidewalk, base row, side (+-1)."""
        sign = rng.choice(np.float32([-1.0, 1.0]), depth.shape)
        offset = depth * (half[:, 0] + rng.uniform(lo, hi, depth.shape) * (side - half)[:, 0])
        centre = vx[:, 0] + depth * (cxb - vx)[:, 0]
        return centre + sign * offset, h[:, 0] + depth * (s - h[:, 0]), sign

    # Poles (1+ px wide) on the sidewalk, most carrying a small sign at the top.
    tp = u(0.2, 0.95, 3)
    xp, base, sign = on_ground(tp, 0.25, 0.8)
    wp = np.maximum(1, np.round(tp * 0.02 * s))
    tops = base - tp * u(0.5, 0.75, 3) * s
    size = np.maximum(2, np.round(tp * 0.05 * s))
    sx0, shape = np.floor(xp - sign * 0.3 * size - size / 2), rng.integers(0, 3, (b, 3))
    pole_on, sign_on = rng.random((b, 3)) < 0.65, rng.random((b, 3)) < 0.7
    for k in range(3):
        x0, w, top_k, base_k, sz = (a[:, k, None, None] for a in (np.floor(xp - wp / 2), wp,
                                                                   tops, base, size))
        on = pole_on[:, k, None, None]
        paint(on & (xi >= x0) & (xi < x0 + w) & (y > top_k) & (y <= base_k), _POLE)
        rx, ry = xi - sx0[:, k, None, None], yi - np.floor(top_k)
        cx_, cy_ = rx + 0.5 - sz / 2, ry + 0.5 - sz / 2
        keep = np.select([shape[:, k, None, None] == 1, shape[:, k, None, None] == 2],
                         [cx_**2 + cy_**2 <= sz**2 / 4 + 0.25, np.abs(cx_) <= (ry + 1) / 2], True)
        paint(on & sign_on[:, k, None, None] & keep & (rx >= 0) & (rx < sz) & (ry >= 0)
              & (ry < sz), _SIGN + k)
    # Cars on the road, far to near so that nearer cars occlude farther ones.
    tc = np.sort(u(0.12, 0.95, 4), axis=1)
    road_w = 2 * half[:, 0] * tc
    cw = road_w * u(0.28, 0.42, 4)
    cx = vx[:, 0] + tc * (cxb - vx)[:, 0] + u(-0.5, 0.5, 4) * (road_w - cw)
    car_on, ch, cb = rng.random((b, 4)) < 0.7, cw * u(0.5, 0.65, 4), h[:, 0] + tc * (s - h[:, 0])
    for k in range(4):
        c, w, hh, base_k = (a[:, k, None, None] for a in (cx, cw, ch, cb))
        on, ax = car_on[:, k, None, None], np.abs(x - c)
        paint(on & (ax < w / 2) & (y > base_k - 0.62 * hh) & (y <= base_k - 0.12 * hh), _CAR + k)
        paint(on & (ax < 0.36 * w) & (y > base_k - hh) & (y <= base_k - 0.62 * hh), _CAR + k)
        paint(on & (ax < 0.29 * w) & (y > base_k - 0.9 * hh) & (y <= base_k - 0.66 * hh), _GLASS)
        paint(on & (np.abs(ax - 0.3 * w) < 0.11 * w) & (y > base_k - 0.25 * hh) & (y <= base_k),
              _TYRE)
    # Small pedestrians on the sidewalk: a dark body and a head.
    tq = u(0.25, 0.95, 4)
    xq, qb, _ = on_ground(tq, 0.15, 0.85)
    hq = np.maximum(3, np.round(tq * u(0.14, 0.2, 4) * s))
    wq = np.maximum(1, np.round(hq * 0.3))
    hw, head, ped_on = np.maximum(1, np.round(wq * 0.6)), np.maximum(1, np.round(hq * 0.2)), \
        rng.random((b, 4)) < 0.5
    for k in range(4):
        x0, w, hx0, hwk, b0, hk, hd = (a[:, k, None, None] for a in (
            np.floor(xq - wq / 2), wq, np.floor(xq - hw / 2), hw, np.round(qb), hq, head))
        on = ped_on[:, k, None, None]
        paint(on & (xi >= x0) & (xi < x0 + w) & (yi < b0) & (yi >= b0 - hk + hd), _CLOTHES + k)
        paint(on & (xi >= hx0) & (xi < hx0 + hwk) & (yi >= b0 - hk) & (yi < b0 - hk + hd), _SKIN)
    # Colour, shading (sky brighter at the horizon, smooth illumination, a gradient), texture.
    image = _street_colours(rng, b)[np.arange(b)[:, None, None], mat]
    shade = 1 + 0.35 * (mat == _SKY) * (y / h - 0.6)
    shade *= (1 + 0.12 * _smooth_field(rng, b, s)) * (1 + u(-0.3, 0.3) * (x / s - 0.5)
                                                      + u(-0.3, 0.3) * (y / s - 0.5))
    image *= shade[..., None]
    image += _STREET_TEXTURE[mat][..., None] * rng.standard_normal((b, s, s, 1), np.float32)
    image = _blur(image) + 0.015 * rng.standard_normal((b, s, s, 3), np.float32)
    return np.clip(image, 0.0, 1.0, dtype=np.float32), _STREET_LABEL[mat].astype(np.uint8)


def draw_lesion(rng: np.random.Generator, b: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Ultrasound-like images: float32 ``(B, S, S, 3)`` and uint8 ``(B, S, S)`` labels."""
    y = (np.arange(s, dtype=np.float32)[:, None] + 0.5) / s
    x = (np.arange(s, dtype=np.float32)[None, :] + 0.5) / s

    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, (b, 1, 1)).astype(np.float32)

    # Sector (fan) of a curvilinear probe whose apex lies above the image.
    apex = u(-0.2, -0.08)
    r = np.sqrt((x - 0.5) ** 2 + (y - apex) ** 2)
    fan = (np.abs(np.arctan2(x - 0.5, y - apex)) < u(0.55, 0.75)) & (r < u(1.2, 1.35)) \
        & (r > 0.04 - apex)
    # Organ: a rotated ellipse with a slightly irregular outline, 12-19% of the image.
    cx, cy, phi, area, ratio = u(0.4, 0.6), u(0.42, 0.6), u(0, np.pi), u(0.12, 0.19), u(0.55, 0.9)
    a = np.sqrt(area / (np.pi * ratio))
    cos, sin = np.cos(phi), np.sin(phi)
    du, dv = (x - cx) * cos + (y - cy) * sin, (y - cy) * cos - (x - cx) * sin
    angle = np.arctan2(dv / (a * ratio), du / a)
    outline = 1 + 0.06 * np.sin(2 * angle + u(0, 6.3)) + 0.04 * np.sin(3 * angle + u(0, 6.3))
    rho = np.sqrt((du / a) ** 2 + (dv / (a * ratio)) ** 2) / outline
    organ = rho < 1
    # Lesion: a small ellipse (0.6-1.8% of the image) well inside the organ.
    lr = np.sqrt(u(0.006, 0.018) / np.pi)
    lratio = u(0.65, 1.0)
    la, lb = lr / np.sqrt(lratio), lr * np.sqrt(lratio)
    reach = np.clip(1 - 1.5 * la / (a * ratio), 0, 0.6) * u(0, 1)
    theta = u(0, 2 * np.pi)
    ou, ov = reach * a * np.cos(theta), reach * a * ratio * np.sin(theta)
    lx, ly = cx + ou * cos - ov * sin, cy + ou * sin + ov * cos
    lphi = u(0, np.pi)
    lu = (x - lx) * np.cos(lphi) + (y - ly) * np.sin(lphi)
    lv = -(x - lx) * np.sin(lphi) + (y - ly) * np.cos(lphi)
    lesion = (lu / la) ** 2 + (lv / lb) ** 2 < 1
    labels = np.where(fan, np.where(lesion, 2, np.where(organ, 1, 0)), 0).astype(np.uint8)
    # Echogenicity: tissue with a bright superficial layer, organ brighter or darker, a bright
    # capsule, a hypo-echoic lesion with posterior enhancement, depth attenuation.
    tissue = u(0.3, 0.42)
    refl = tissue * (1 + 0.25 * _smooth_field(rng, b, s, cells=5))
    refl = refl + 0.3 * np.exp(-(((r + apex - 0.12) / 0.04) ** 2))
    organ_level = tissue * np.where(rng.random((b, 1, 1)) < 0.7, u(1.35, 1.7), u(0.55, 0.7))
    refl = np.where(organ, organ_level * (1 + 0.08 * _smooth_field(rng, b, s, 6)), refl)
    refl = refl * (1 + 0.8 * np.exp(-(((rho - 1) / 0.05) ** 2)))
    behind = (np.abs(x - lx) < 0.8 * lr) & (y > ly)
    refl = refl * (1 + 0.3 * behind * np.exp(-(y - ly) / 0.25))
    refl = np.where(lesion, organ_level * u(0.45, 0.75), refl) * (1.1 - 0.4 * y)
    speckle = _blur(rng.standard_gamma(1.5, (b, s, s), np.float32) / 1.5, axes=(2, 2, 1))
    image = _blur(refl * speckle) * fan + 0.01 * rng.standard_normal((b, s, s), np.float32)
    image = np.clip(image, 0.0, 1.0, dtype=np.float32)
    return np.repeat(image[..., None], 3, axis=-1), labels
