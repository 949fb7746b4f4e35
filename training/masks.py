"""Procedural face masks fitted to face-mesh landmarks.

A mask is a flat texture (u across the face, v from top edge to bottom edge) drawn in its
own space — pleats, stripes, dots, seams, valves — then warped onto the face through a
grid spanned between two landmark chains (the top edge and the jaw line). Because the grid
is made of landmark points, the mask follows yaw and roll like cloth would. The warp runs
on a 2× canvas and is shrunk back, which anti-aliases the edges.

Placements: ``over_nose`` (correct: nose bridge to under the chin), ``below_nose`` (nose
fully visible, mouth covered) and ``on_chin`` (mouth visible too). The first is
``with_mask``; the other two are ``incorrect_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.landmarks import LEFT_EAR_SIDE, NOSE_TIP, RIGHT_EAR_SIDE

PLACEMENTS = ("over_nose", "below_nose", "on_chin")
STYLES = ("surgical", "cloth", "kn95", "skin")
_STYLE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)

_SURGICAL_COLOURS = {
    "light_blue": (150, 190, 225), "white": (238, 238, 236), "green": (140, 200, 175),
    "pink": (235, 170, 190), "black": (35, 35, 40),
}
_CLOTH_COLOURS = {
    "black": (28, 28, 30), "navy": (30, 40, 80), "charcoal": (60, 62, 66), "burgundy": (95, 25, 40),
    "olive": (80, 85, 45), "denim": (70, 95, 135), "red": (170, 40, 45), "grey": (130, 130, 130),
    "white": (225, 225, 220), "brown": (95, 65, 45),
}
_KN95_COLOURS = {"white": (240, 240, 238), "grey": (165, 168, 170), "black": (40, 40, 42)}
_SKIN_COLOURS = {"beige": (225, 190, 165), "tan": (190, 145, 110), "brown": (130, 90, 65), "dark_brown": (85, 58, 42)}
_PATTERNS = ("plain", "stripes", "dots", "checks", "floral", "print")

# Landmark chains, image-left to image-right on a frontal face.
_JAW = (93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323)
_TEXTURE_SIZE = (96, 192)  # (height, width) of the flat mask texture
_GRID_COLUMNS, _GRID_ROWS = 15, 6
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class MaskSpec:
    """Everything random about one mask, recorded in the manifest."""

    style: str
    colour: str
    rgb: tuple[int, int, int]
    pattern: str
    placement: str
    valve: bool
    ear_loops: bool
    height_jitter: float  # 0..1: how far the top edge slides down within the placement

    def describe(self) -> dict[str, object]:
        return {"mask_style": self.style, "mask_colour": self.colour, "mask_pattern": self.pattern,
                "mask_placement": self.placement, "mask_valve": self.valve}


def sample_mask_spec(rng: np.random.Generator, placement: str) -> MaskSpec:
    """A random mask of any style, worn at ``placement``."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown mask placement {placement!r}; expected one of {PLACEMENTS}")
    style = str(rng.choice(STYLES, p=_STYLE_WEIGHTS))
    palette = {"surgical": _SURGICAL_COLOURS, "cloth": _CLOTH_COLOURS, "kn95": _KN95_COLOURS, "skin": _SKIN_COLOURS}[style]
    colour = str(rng.choice(sorted(palette)))
    pattern = str(rng.choice(_PATTERNS, p=(0.3, 0.15, 0.15, 0.1, 0.15, 0.15))) if style == "cloth" else "plain"
    return MaskSpec(
        style=style, colour=colour, rgb=palette[colour], pattern=pattern, placement=placement,
        valve=style == "kn95" and rng.random() < 0.35, ear_loops=rng.random() < 0.85,
        height_jitter=float(rng.random()),
    )


# --------------------------------------------------------------------------- texture


def _fabric_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: random values on a coarse lattice, upsampled bicubically."""
    h, w = shape
    coarse = rng.uniform(-1, 1, (max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), -1, 1)


def _pattern_layer(spec: MaskSpec, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    h, w = _TEXTURE_SIZE
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    accent = np.array(rng.choice([(230, 230, 225), (200, 60, 60), (220, 190, 80), (90, 140, 200), (20, 20, 20)]), np.float32)
    if spec.pattern == "stripes":
        period = rng.uniform(8, 18)
        along = v if rng.random() < 0.6 else u
        weight = (np.sin(along / period * 2 * np.pi) > 0.3).astype(np.float32)
    elif spec.pattern == "dots":
        period, radius = rng.uniform(12, 20), rng.uniform(2.5, 4.5)
        dy, dx = (v % period) - period / 2, (u % period) - period / 2
        weight = (dx**2 + dy**2 < radius**2).astype(np.float32)
    elif spec.pattern == "checks":
        period = rng.uniform(10, 22)
        weight = 0.5 * ((np.sin(u / period * np.pi) > 0) + (np.sin(v / period * np.pi) > 0)).astype(np.float32)
    elif spec.pattern == "floral":
        blobs = _fabric_noise(rng, (h, w), 10)
        weight = np.clip((blobs - 0.2) * 3, 0, 1)
    elif spec.pattern == "print":  # multi-coloured printed fabric (camouflage, logos, cartoons)
        out = base.copy()
        for cell in rng.choice([5, 8, 14, 24], size=3):
            colour = rng.uniform(20, 240, 3).astype(np.float32)
            blobs = np.clip((_fabric_noise(rng, (h, w), int(cell)) - 0.3) * 4, 0, 1)[..., None]
            out = out * (1 - blobs) + colour * blobs
        return out
    else:
        return base
    weight = cv2.GaussianBlur(weight, (0, 0), 0.7)[..., None]
    return base * (1 - weight * 0.85) + accent * weight * 0.85


def _mask_texture(spec: MaskSpec, rng: np.random.Generator, shading_centre: float) -> np.ndarray:
    """The flat mask as float32 RGBA (alpha in [0, 1]) in texture space."""
    h, w = _TEXTURE_SIZE
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    un, vn = u / (w - 1), v / (h - 1)
    base = np.broadcast_to(np.array(spec.rgb, np.float32), (h, w, 3)).copy()
    base = _pattern_layer(spec, rng, base)
    light = np.ones((h, w), np.float32)
    if spec.style == "surgical":
        for centre in (0.3, 0.5, 0.7):
            offset = vn - (centre + rng.uniform(-0.03, 0.03))
            light -= 0.16 * np.exp(-((offset / 0.012) ** 2))          # fold line
            light += 0.07 * np.exp(-(((offset + 0.05) / 0.04) ** 2))  # lit bulge above it
        binding = (vn < 0.07) | (vn > 0.93) | (un < 0.03) | (un > 0.97)
        light[binding] *= 0.93
    elif spec.style == "kn95":
        light -= 0.22 * np.exp(-(((un - 0.5) / 0.008) ** 2))          # centre seam
        light += 0.08 * np.sign(un - 0.5) * np.exp(-(((un - 0.5) / 0.08) ** 2))
        welded = (vn < 0.05) | (vn > 0.95) | (un < 0.025) | (un > 0.975)
        light[welded] *= 0.9
    light += 0.04 * _fabric_noise(rng, (h, w), 3) + 0.015 * rng.standard_normal((h, w)).astype(np.float32)
    light *= 1.0 - 0.38 * ((un - shading_centre) / 0.62) ** 2         # curvature away from the light
    light *= 1.05 - 0.15 * vn                                          # lit from above
    rgb = base * np.clip(light, 0.2, 1.3)[..., None]
    if spec.valve:
        cx, cy, radius = w * (0.3 if rng.random() < 0.5 else 0.7), h * 0.58, h * 0.16
        ring = np.hypot(u - cx, v - cy)
        valve_rgb = np.array(rng.choice([(235, 235, 235), (70, 70, 75), (90, 130, 190)]), np.float32)
        inside = np.clip(radius - ring, 0, 1)[..., None]
        rgb = rgb * (1 - inside) + valve_rgb * (0.85 + 0.15 * (ring / radius)[..., None]) * inside
        rgb[(ring > radius * 0.45) & (ring < radius * 0.55)] *= 0.75
    corner = 0.07
    du = np.maximum(0, np.maximum(corner - un, un - (1 - corner))) / corner
    dv = np.maximum(0, np.maximum(corner - vn, vn - (1 - corner))) / corner
    alpha = np.clip((1 - np.hypot(du, dv)) * 4, 0, 1)                  # rounded corners
    return np.dstack([np.clip(rgb, 0, 255), alpha]).astype(np.float32)


# --------------------------------------------------------------------------- geometry


def _resample(chain: np.ndarray, count: int) -> np.ndarray:
    """``count`` points evenly spaced by arc length along a polyline."""
    steps = np.linalg.norm(np.diff(chain, axis=0), axis=1)
    distance = np.concatenate([[0.0], np.cumsum(steps)])
    targets = np.linspace(0.0, distance[-1], count)
    return np.stack([np.interp(targets, distance, chain[:, i]) for i in range(2)], axis=1)


def face_scale(points: np.ndarray) -> float:
    """Face width in pixels (ear side to ear side), the unit for every size we draw."""
    return float(np.linalg.norm(points[LEFT_EAR_SIDE] - points[RIGHT_EAR_SIDE]))


def _edges(points: np.ndarray, spec: MaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """Top-edge and bottom-edge polylines (image-left → image-right) for the placement."""
    p = points.astype(np.float64)
    t = spec.height_jitter
    if spec.placement == "over_nose":
        bridge = p[197] + (p[5] - p[197]) * 0.5 * t         # between upper and lower nose bridge
        top = np.array([p[234], p[117], p[118], bridge, p[347], p[346], p[454]])
        jaw = list(_JAW)
        sag = 0.06
    elif spec.placement == "below_nose":
        lip = p[164] + (p[0] - p[164]) * 0.4 * t             # between nose base and upper lip
        top = np.array([p[93], p[187], p[206], lip, p[426], p[411], p[323]])
        jaw = list(_JAW[1:-1])
        sag = 0.08
    else:
        chin_top = p[18] + (p[200] - p[18]) * 0.5 * t
        top = np.array([p[58], p[172] * 0.5 + p[18] * 0.5, chin_top, p[397] * 0.5 + p[18] * 0.5, p[288]])
        jaw = list(_JAW[3:-3])
        sag = 0.12
    bottom = p[jaw]
    centre = p[NOSE_TIP]
    bottom = centre + (bottom - centre) * 1.07               # a little beyond the jaw line
    across = np.linspace(0, 1, len(bottom))
    bottom[:, 1] += np.sin(across * np.pi) * sag * face_scale(points)  # hangs under the chin
    return top, bottom


def mask_grid(points: np.ndarray, spec: MaskSpec) -> np.ndarray:
    """(rows, columns, 2) pixel grid the texture is warped onto."""
    top, bottom = _edges(points, spec)
    top, bottom = _resample(top, _GRID_COLUMNS), _resample(bottom, _GRID_COLUMNS)
    rows = np.linspace(0, 1, _GRID_ROWS)[:, None, None]
    return top[None] * (1 - rows) + bottom[None] * rows


def _warp(texture: np.ndarray, grid: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Piecewise-affine warp of ``texture`` onto ``grid``; returns the RGBA patch and its corner."""
    height, width = shape
    x0 = int(max(0, np.floor(grid[..., 0].min()) - 1))
    y0 = int(max(0, np.floor(grid[..., 1].min()) - 1))
    x1 = int(min(width, np.ceil(grid[..., 0].max()) + 2))
    y1 = int(min(height, np.ceil(grid[..., 1].max()) + 2))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, 4), np.float32), (0, 0)
    s = _SUPERSAMPLE
    local = (grid - (x0, y0)) * s
    th, tw = texture.shape[:2]
    rows, cols = grid.shape[:2]
    tex = np.stack(np.meshgrid(np.linspace(0, tw - 1, cols), np.linspace(0, th - 1, rows)), axis=-1)
    labels = np.full(((y1 - y0) * s, (x1 - x0) * s), -1, np.int32)
    affines = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            for tri in (((r, c), (r, c + 1), (r + 1, c + 1)), ((r, c), (r + 1, c + 1), (r + 1, c))):
                dst = np.array([local[i] for i in tri], np.float32)
                src = np.array([tex[i] for i in tri], np.float32)
                edge_a, edge_b = dst[1] - dst[0], dst[2] - dst[0]
                if abs(edge_a[0] * edge_b[1] - edge_a[1] * edge_b[0]) < 1e-3:  # degenerate triangle
                    continue
                cv2.fillConvexPoly(labels, np.round(dst * 16).astype(np.int32), len(affines), cv2.LINE_8, 4)
                affines.append(cv2.getAffineTransform(dst, src))
    if not affines:
        return np.zeros((0, 0, 4), np.float32), (0, 0)
    matrices = np.array(affines, np.float32)
    ys, xs = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]].astype(np.float32)
    chosen = matrices[np.maximum(labels, 0)]
    map_x = chosen[..., 0, 0] * xs + chosen[..., 0, 1] * ys + chosen[..., 0, 2]
    map_y = chosen[..., 1, 0] * xs + chosen[..., 1, 1] * ys + chosen[..., 1, 2]
    map_x[labels < 0] = -10
    warped = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    patch = cv2.resize(warped, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return patch, (x0, y0)


def _ear_loops(layer: np.ndarray, alpha: np.ndarray, points: np.ndarray, grid: np.ndarray, spec: MaskSpec) -> None:
    """Thin loops from the mask's side corners to the ears, only on sides turned to the camera."""
    scale = face_scale(points)
    colour = (225, 225, 225) if spec.style in ("surgical", "kn95") and spec.colour != "black" else tuple(int(c * 0.8) for c in spec.rgb)
    thickness = max(1, int(round(scale * 0.014)))
    nose_x = points[NOSE_TIP, 0]
    for column, ear_index, outward in ((0, RIGHT_EAR_SIDE, -1), (-1, LEFT_EAR_SIDE, 1)):
        if abs(points[ear_index, 0] - nose_x) < 0.3 * scale:
            continue  # that side is turned away: its loop is hidden behind the head
        ear = points[ear_index] + (outward * 0.06 * scale, -0.02 * scale)
        for corner in (grid[0, column], grid[-1, column]):
            control = (corner + ear) / 2 + (outward * 0.05 * scale, 0)
            curve = np.array([(1 - t) ** 2 * corner + 2 * (1 - t) * t * control + t**2 * ear for t in np.linspace(0, 1, 12)])
            curve_fixed = np.round(curve * 16).astype(np.int32)
            cv2.polylines(layer, [curve_fixed], False, colour, thickness, cv2.LINE_AA, 4)
            cv2.polylines(alpha, [curve_fixed], False, 1.0, thickness, cv2.LINE_AA, 4)


def face_brightness(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per-channel light on the face (1.0 ≈ a well-lit face), used to shade the mask alike."""
    lo = np.maximum(points[[RIGHT_EAR_SIDE, LEFT_EAR_SIDE, 10, 152]].min(axis=0).astype(int), 0)
    hi = points[[RIGHT_EAR_SIDE, LEFT_EAR_SIDE, 10, 152]].max(axis=0).astype(int)
    region = image[lo[1] : hi[1], lo[0] : hi[0]].reshape(-1, 3).astype(np.float32)
    if region.size == 0:
        return np.ones(3, np.float32)
    mean = region.mean(axis=0)
    level = np.clip(mean.mean() / 140.0, 0.35, 1.15)
    cast = mean / max(mean.mean(), 1.0)
    return (level * (0.75 + 0.25 * cast)).astype(np.float32)


def render_mask(image: np.ndarray, points: np.ndarray, spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw the mask on a copy of ``image``; returns (image, mask alpha H×W float32 in [0, 1])."""
    height, width = image.shape[:2]
    scale = face_scale(points)
    yaw = (points[NOSE_TIP, 0] - (points[RIGHT_EAR_SIDE, 0] + points[LEFT_EAR_SIDE, 0]) / 2) / max(scale / 2, 1.0)
    texture = _mask_texture(spec, rng, shading_centre=float(np.clip(0.5 + 0.35 * yaw, 0.2, 0.8)))
    grid = mask_grid(points, spec)
    patch, (x0, y0) = _warp(texture, grid, (height, width))
    layer = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    ph, pw = patch.shape[:2]
    layer[y0 : y0 + ph, x0 : x0 + pw] = patch[..., :3]
    alpha[y0 : y0 + ph, x0 : x0 + pw] = patch[..., 3]
    layer *= face_brightness(image, points)
    if spec.ear_loops:
        _ear_loops(layer, alpha, points, grid, spec)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, scale * 0.003))
    out = image.astype(np.float32) * (1 - alpha[..., None]) + layer * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), alpha
