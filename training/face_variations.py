"""Appearance variations and hard negatives for synthetic faces.

Each known failure mode of mask classifiers is answered by showing the model its
confusable look-alike *with the right label*:

- Hands over the mouth: skin-coloured fingers across mouth/nose on bare faces, labelled
  ``without_mask`` — the model must learn fabric texture and mask shape, not "mouth hidden".
- Beards and stubble: dark jaw texture in every class (under a mask a beard is invisible
  except at the edges, so a dark jaw alone must never mean "masked").
- Dark and patterned masks: black/navy/patterned cloth masks are common in the mask
  sampler (``training.masks``), so "mask" is not "light-blue surgical".
- Dark skin: face-region tone shifts (darker and warmer) in every class, on top of the
  GAN's own variety, so a dark lower face is not read as a black mask.
- Lipstick read as a low mask: coloured lips (red, dark, pink) on bare faces and with
  the mask on the chin, plus open smiles with a white band of teeth.
- IR night images: greyscale, contrast-boosted, blooming images in every class, so
  colour is not a required cue.
Plus glasses, make-up, blur, low light, backlight, small (upscaled) faces, sensor noise and
JPEG artefacts.

Every function returns the name of what it applied, recorded in the manifest.
"""

from __future__ import annotations

import cv2
import numpy as np

from training.landmarks import FACE_OVAL, LEFT_EYE, LIPS_OUTER, MOUTH_CORNERS, RIGHT_EYE
from training.masks import face_scale

_LIP_COLOURS = {"red": (170, 30, 45), "dark_red": (100, 20, 30), "pink": (215, 110, 140),
                "plum": (110, 40, 80), "brown": (120, 60, 50), "coral": (230, 100, 80)}
_BEARD_COLOURS = ((25, 20, 18), (45, 30, 20), (70, 50, 35), (110, 105, 100), (120, 60, 30))
_RIGHT_BROW, _LEFT_BROW = (70, 63, 105, 66, 107), (336, 296, 334, 293, 300)


def _soft_polygon(shape: tuple[int, int], polygon: np.ndarray, blur: float) -> np.ndarray:
    weight = np.zeros(shape, np.float32)
    cv2.fillPoly(weight, [np.round(polygon * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(weight, (0, 0), max(blur, 0.5))


def _blend(image: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Alpha-blend ``colour`` (H×W×3 or 3) into ``image`` with per-pixel ``weight``."""
    out = image.astype(np.float32) * (1 - weight[..., None]) + colour * weight[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _skin_colour(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Median colour of both cheeks (small patches under the eyes)."""
    patches = []
    radius = max(2, int(face_scale(points) * 0.04))
    for index in (50, 280):
        x, y = points[index].astype(int)
        patch = image[max(0, y - radius) : y + radius, max(0, x - radius) : x + radius].reshape(-1, 3)
        if patch.size:
            patches.append(patch)
    return np.median(np.concatenate(patches), axis=0).astype(np.float32) if patches else np.full(3, 170.0, np.float32)


def skin_tone(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Darken (mostly) or lighten the face and neck, warming the cast when darkening."""
    scale = face_scale(points)
    oval = points[list(FACE_OVAL)]
    neck = oval[(oval[:, 1] > points[1, 1])] + (0, 0.35 * scale)
    region = cv2.convexHull(np.concatenate([oval, neck]).astype(np.float32))[:, 0]
    weight = _soft_polygon(image.shape[:2], region, scale * 0.06)
    if rng.random() < 0.8:
        factor = rng.uniform(0.4, 0.75)
        gain = factor * np.array([1.0, 0.88, 0.78], np.float32)
        name = f"skin_dark_{factor:.2f}"
    else:
        factor = rng.uniform(1.05, 1.2)
        gain = np.full(3, factor, np.float32)
        name = f"skin_light_{factor:.2f}"
    return _blend(image, image.astype(np.float32) * gain, weight), name


def beard(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Stubble or a full beard with moustache on the jaw, chin and upper lip."""
    scale = face_scale(points)
    jaw = points[[132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361]]
    upper = points[[361, 287, 164, 57, 132]] + (0, -0.02 * scale)
    region = np.concatenate([jaw + (0, 0.03 * scale), upper])
    weight = _soft_polygon(image.shape[:2], region, scale * 0.04)
    lips = _soft_polygon(image.shape[:2], points[list(LIPS_OUTER)], scale * 0.01)
    full = rng.random() < 0.5
    grain = rng.random(image.shape[:2]).astype(np.float32)
    if full:
        clumps = cv2.resize(rng.random((12, 12)).astype(np.float32), image.shape[1::-1], interpolation=cv2.INTER_CUBIC)
        density = np.clip(0.55 + 0.35 * clumps + 0.2 * grain, 0, 0.95)
    else:
        density = (grain > 0.55).astype(np.float32) * rng.uniform(0.35, 0.6)
        density = cv2.GaussianBlur(density, (0, 0), 0.6)
    colour = np.array(_BEARD_COLOURS[rng.integers(len(_BEARD_COLOURS))], np.float32)
    return _blend(image, colour, weight * density * (1 - lips)), "beard" if full else "stubble"


def lipstick(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Coloured lips, keeping the lips' own shading (multiply-like blend)."""
    name = str(rng.choice(sorted(_LIP_COLOURS)))
    weight = _soft_polygon(image.shape[:2], points[list(LIPS_OUTER)], face_scale(points) * 0.008)
    luminance = image.astype(np.float32).mean(axis=2, keepdims=True) / 150.0
    coloured = np.array(_LIP_COLOURS[name], np.float32) * np.clip(luminance, 0.4, 1.3)
    return _blend(image, coloured, weight * rng.uniform(0.5, 0.85)), f"lipstick_{name}"


def open_smile(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An open mouth showing a white band of teeth between the lips."""
    left, right = points[MOUTH_CORNERS[0]], points[MOUTH_CORNERS[1]]
    centre = (points[13] + points[14]) / 2
    width = float(np.linalg.norm(right - left))
    gap = width * rng.uniform(0.12, 0.25)
    across = np.linspace(0, 1, 16)[:, None]
    spine = (1 - across) * left + across * right
    spine += (centre - (left + right) / 2) * np.sin(across * np.pi)
    bulge = np.sin(across * np.pi) * gap
    cavity = np.concatenate([spine - bulge * (0, 0.35), (spine + bulge * (0, 1.0))[::-1]])
    teeth = np.concatenate([spine - bulge * (0, 0.3), (spine + bulge * (0, 0.45))[::-1]])
    out = _blend(image, np.array((45, 20, 25), np.float32), _soft_polygon(image.shape[:2], cavity, 0.8))
    teeth_colour = np.array((235, 228, 212), np.float32) * rng.uniform(0.8, 1.0)
    return _blend(out, teeth_colour, _soft_polygon(image.shape[:2], teeth, 0.8) * 0.95), "open_smile"


def makeup(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Blush on the cheeks and eye shadow between eyes and brows."""
    scale = face_scale(points)
    out = image
    blush = np.zeros(image.shape[:2], np.float32)
    for index in (50, 280):
        cv2.circle(blush, tuple(int(v) for v in points[index]), int(scale * 0.09), 1.0, -1)
    blush = cv2.GaussianBlur(blush, (0, 0), scale * 0.05) * rng.uniform(0.15, 0.35)
    out = _blend(out, np.array((225, 110, 120), np.float32), blush)
    shadow = np.zeros(image.shape[:2], np.float32)
    for eye, brow in ((RIGHT_EYE, _RIGHT_BROW), (LEFT_EYE, _LEFT_BROW)):
        polygon = np.concatenate([points[[eye[0], eye[2], eye[1]]], (points[list(brow)] * 0.6 + points[eye[2]] * 0.4)[::-1]])
        cv2.fillPoly(shadow, [np.round(polygon).astype(np.int32)], 1.0, cv2.LINE_AA)
    shadow = cv2.GaussianBlur(shadow, (0, 0), scale * 0.015) * rng.uniform(0.3, 0.55)
    colour = np.array(rng.choice([(90, 50, 110), (90, 60, 40), (40, 60, 120), (30, 30, 35)]), np.float32)
    return _blend(out, colour, shadow), "makeup"


def glasses(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Frames around both eyes with a bridge and temple arms; sometimes tinted lenses."""
    scale = face_scale(points)
    frame = tuple(int(c) for c in rng.choice([(20, 20, 20), (70, 45, 30), (170, 170, 175), (120, 20, 30)]))
    thickness = max(1, int(round(scale * rng.uniform(0.012, 0.025))))
    tinted = rng.random() < 0.15
    out = image.copy()
    right_c, left_c = points[list(RIGHT_EYE)].mean(axis=0), points[list(LEFT_EYE)].mean(axis=0)
    angle = float(np.degrees(np.arctan2(*(left_c - right_c)[::-1])))
    lens = np.zeros(image.shape[:2], np.float32)
    axes = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        width = np.linalg.norm(points[eye[1]] - points[eye[0]])
        axes.append((max(2, int(width * 0.85)), max(2, int(width * 0.6))))
    for centre, axis in zip((right_c, left_c), axes):
        cv2.ellipse(lens, (int(centre[0]), int(centre[1])), axis, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    if tinted:
        out = _blend(out, np.array((25, 25, 30), np.float32), lens * 0.75)
    for centre, axis in zip((right_c, left_c), axes):
        cv2.ellipse(out, (int(centre[0]), int(centre[1])), axis, angle, 0, 360, frame, thickness, cv2.LINE_AA)
    direction = (left_c - right_c) / max(np.linalg.norm(left_c - right_c), 1.0)
    inner_r, inner_l = right_c + direction * axes[0][0], left_c - direction * axes[1][0]
    cv2.line(out, tuple(int(v) for v in inner_r), tuple(int(v) for v in inner_l), frame, thickness, cv2.LINE_AA)
    for centre, axis, temple, sign in ((right_c, axes[0], points[127], -1), (left_c, axes[1], points[356], 1)):
        outer = centre + sign * direction * axis[0]
        cv2.line(out, tuple(int(v) for v in outer), tuple(int(v) for v in temple), frame, thickness, cv2.LINE_AA)
    return out, "sunglasses" if tinted else "glasses"


def hand_over_mouth(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Skin-coloured fingers across the mouth (sometimes nose too), coming from one side."""
    scale = face_scale(points)
    skin = _skin_colour(image, points) * rng.uniform(0.85, 1.15) * np.array([1.0, rng.uniform(0.93, 1.03), rng.uniform(0.9, 1.05)])
    side = -1 if rng.random() < 0.5 else 1
    top = points[4] if rng.random() < 0.35 else points[164]
    bottom = points[18] + (0, 0.05 * scale)
    count = 4
    finger_w = max(2.0, float(np.linalg.norm(bottom - top)) / count * 1.05)
    centre_x = points[1, 0]
    weight = np.zeros(image.shape[:2], np.float32)
    shade = np.zeros(image.shape[:2], np.float32)
    for k in range(count):
        y = top[1] + (k + 0.5) * (bottom[1] - top[1]) / count
        length = scale * rng.uniform(0.45, 0.6) * (0.85 if k in (0, count - 1) else 1.0)
        tip = np.array([centre_x - side * length * 0.5, y])
        base = np.array([centre_x + side * scale * 0.7, y + finger_w * 0.3])
        for layer, value, width in ((weight, 1.0, finger_w), (shade, 1.0, finger_w * 0.45)):
            cv2.line(layer, tuple(int(v) for v in tip), tuple(int(v) for v in base), value, max(1, int(width)), cv2.LINE_AA)
    palm_centre = (int(centre_x + side * scale * 0.75), int((top[1] + bottom[1]) / 2 + finger_w))
    cv2.ellipse(weight, palm_centre, (int(scale * 0.3), int(finger_w * count * 0.75)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    weight = cv2.GaussianBlur(weight, (0, 0), 0.8)
    shade = cv2.GaussianBlur(shade, (0, 0), finger_w * 0.3)
    colour = skin[None, None, :] * (0.62 + 0.45 * shade[..., None])  # dark gaps between lit fingers
    return _blend(image, colour, weight), "hand_over_mouth"


# --------------------------------------------------------------------------- photometric


def infrared(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A night-mode IR look: greyscale, stretched contrast, glowing highlights."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey = (grey - grey.mean()) * rng.uniform(1.2, 1.7) + rng.uniform(110, 150)
    bloom = cv2.GaussianBlur(np.clip(grey - 180, 0, None), (0, 0), image.shape[0] * 0.04)
    grey = np.clip(grey + bloom * rng.uniform(0.5, 1.2), 0, 255)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8), "infrared"


def blur(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    size = image.shape[0]
    if rng.random() < 0.5:
        length = max(3, int(size * rng.uniform(0.02, 0.05)))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rotation, (length, length))
        return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6)), "motion_blur"
    return cv2.GaussianBlur(image, (0, 0), size * rng.uniform(0.006, 0.015)), "defocus_blur"


def low_light(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    dark = 255.0 * (image.astype(np.float32) / 255.0) ** rng.uniform(1.3, 2.0) * rng.uniform(0.6, 0.9)
    dark += rng.normal(0, rng.uniform(4, 10), image.shape)
    return np.clip(dark, 0, 255).astype(np.uint8), "low_light"


def sensor_noise(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    noisy = image.astype(np.float32) + rng.normal(0, rng.uniform(2, 7), image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), "noise"


def backlight(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A bright window behind the visitor: the face (centre) falls dark, the surround blooms."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:image.shape[1]].astype(np.float32) / size - 0.5
    centre = np.exp(-(xx**2 + yy**2) / (2 * 0.22**2))[..., None]
    face_gain = rng.uniform(0.35, 0.7)
    lit = image.astype(np.float32) * (face_gain * centre + (1 - centre) * rng.uniform(1.2, 1.8))
    lit += (1 - centre) * rng.uniform(30, 90)
    return np.clip(lit, 0, 255).astype(np.uint8), "backlight"


def low_resolution(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A far or small face: down to 20-56 px and back up (as the gate's resize would see it)."""
    side = int(rng.integers(20, 57))
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, image.shape[1::-1], interpolation=cv2.INTER_LINEAR), f"low_res_{side}"


def white_balance(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    gains = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.2)
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8), "white_balance"


def jpeg(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    quality = int(rng.integers(15, 60))
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return image, "jpeg_failed"
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), f"jpeg_{quality}"
