"""Drawing one synthetic chest-radiograph-like image from its recipe (:func:`render`).

The recipes come from :func:`cxrlib.data.synthetic.make_synthetic`, whose docstring says what is
drawn: the anatomy, each class's sign, the nuisance variation and each collection's cues (the
built-in shortcut). The image is a pure function of the recipe: its own random stream for the
frame, anatomy and exposure, and a separate stream for the sign, so the same recipe drawn as
Normal differs only by the sign. Nothing here is a real X-ray.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cxrlib.data.synthetic import EXTERNAL

# ---------------------------------------------------------------------------------------------
# Rendering primitives (float images, 0 = black = no attenuation)


def _soft_ellipse(u, v, cu, cv, ru, rv, edge=0.08):
    r = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
    return np.clip((1.0 - r) / edge, 0.0, 1.0)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    # scipy.ndimage takes ~0.2 s to import; only rendering needs it, and the book command
    # imports this module (through cxrlib.data.curate) even when it renders nothing.
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(a, sigma, mode="nearest")


def _smooth_noise(rng, shape, sigma):
    n = _blur(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def _style(collection: str, rng) -> dict:
    """Frame, body size and exposure habits of a collection."""
    if collection == "synthetic-web":
        return dict(aspect=rng.uniform(0.85, 1.35), scale=rng.uniform(0.80, 1.02),
                    gamma=rng.uniform(0.7, 1.4), gain=rng.uniform(0.85, 1.1),
                    offset=rng.uniform(-0.05, 0.08), noise=rng.uniform(0.01, 0.04),
                    child=False)
    if collection == "synthetic-paediatric":
        return dict(aspect=rng.uniform(1.2, 1.45), scale=rng.uniform(0.56, 0.72),
                    gamma=rng.uniform(0.6, 1.0), gain=1.05, offset=0.06, noise=0.02,
                    child=True, arms=rng.random() < 0.6)
    if collection == "synthetic-hospital":
        return dict(aspect=1.0, scale=rng.uniform(0.76, 0.92), gamma=rng.uniform(0.85, 1.25),
                    gain=rng.uniform(0.9, 1.0), offset=0.0, noise=0.015, child=False)
    if collection == EXTERNAL:
        return dict(aspect=rng.uniform(0.9, 1.25), scale=rng.uniform(0.72, 0.9),
                    gamma=rng.uniform(0.9, 1.1), gain=rng.uniform(0.9, 1.0), offset=0.02,
                    noise=0.02, child=False)
    raise ValueError(f"unknown synthetic collection {collection!r}")


def _anatomy(patient_seed: int, child: bool) -> dict:
    """What stays the same between a patient's images (shape of body, lungs, heart)."""
    rng = np.random.default_rng(patient_seed)
    return dict(
        width=rng.uniform(0.85, 1.15), height=rng.uniform(0.88, 1.12),
        body_width=rng.uniform(1.1, 1.38), mediastinum=rng.uniform(0.10, 0.16),
        lung_w=rng.uniform(0.30, 0.40, 2), lung_h=rng.uniform(0.64, 0.82, 2),
        lung_u=rng.uniform(0.43, 0.52, 2), lung_v=rng.uniform(-0.12, 0.0, 2),
        heart=rng.uniform(0.8, 1.2) * (1.1 if child else 1.0), heart_u=rng.uniform(0.04, 0.18),
        dome=rng.uniform(0.06, 0.2, 2), rib_phase=rng.uniform(0, 1),
        rib_freq=rng.uniform(4.4, 5.6), body=rng.uniform(0.36, 0.48),
        vessels=rng.uniform(0.7, 1.3), lucency=rng.uniform(0.85, 1.15),
    )


def _draw_marker(img, letter: str, top: int, left: int, h: int, level: float = 0.97) -> None:
    w = max(2, h * 2 // 3)
    t = max(1, h // 5)
    if letter == "L":
        img[top:top + h, left:left + t] = level
        img[top + h - t:top + h, left:left + w] = level
    else:  # "R": a bar, a bowl and a leg
        img[top:top + h, left:left + t] = level
        img[top:top + t, left:left + w] = level
        img[top + h // 2 - t // 2:top + h // 2 + (t + 1) // 2, left:left + w] = level
        img[top:top + h // 2, left + w - t:left + w] = level
        for k in range(h // 2):
            c = left + t + (w - t) * k // max(1, h // 2)
            img[top + h // 2 + k, c:c + t] = level


def _draw_caption(img, rng, corner: int) -> None:
    """A block of bright 'words' in a corner, as in figures captured from papers."""
    H, W = img.shape
    lines, lh = int(rng.integers(1, 4)), max(2, H // 40)
    block_w = int(W * rng.uniform(0.22, 0.4))
    top = int(H * 0.03) if corner in (0, 1) else H - int(H * 0.03) - lines * 2 * lh
    left = int(W * 0.03) if corner in (0, 2) else W - int(W * 0.03) - block_w
    img[max(0, top - lh):top + lines * 2 * lh, max(0, left - lh):left + block_w + lh] = 0.05
    for line in range(lines):
        x = left
        while x < left + block_w:
            word = int(rng.integers(2, 7)) * max(1, lh // 2 + 1)
            row = top + line * 2 * lh
            img[row:row + lh, x:min(x + word, left + block_w)] = 0.95
            x += word + max(1, lh // 2 + 1)


def _draw_arrow(img, rng, tip_x, tip_y, size) -> None:
    H, W = img.shape
    ang = rng.uniform(0, 2 * np.pi)
    dx, dy = np.cos(ang), np.sin(ang)
    yy, xx = np.mgrid[0:H, 0:W]
    # shaft: points within a thin band along the direction from the tip outwards
    px, py = xx - tip_x, yy - tip_y
    along = px * dx + py * dy
    across = np.abs(-px * dy + py * dx)
    shaft = (along > size * 0.3) & (along < size * 1.6) & (across < max(1.0, size * 0.08))
    head = (along > 0) & (along < size * 0.45) & (across < along * 0.6)
    img[shaft | head] = 0.98


@dataclass(frozen=True)
class _Frame:
    """Where the thorax lies in the image: size, half-axes a and b and centre in pixels, and
    every pixel's coordinates (u, v) in thorax units (rotated; +/-1 at the half-axes)."""

    H: int
    W: int
    a: float
    b: float
    cx: float
    cy: float
    u: np.ndarray
    v: np.ndarray


def _frame(recipe: dict, st: dict, an: dict, rng) -> _Frame:
    """Image size from the native size and aspect; thorax frame with a small rotation."""
    long_side = int(recipe["native_size"])
    aspect = st["aspect"]
    if recipe.get("fault") == "partial_thorax":
        aspect = rng.uniform(2.2, 2.6)  # a strip cut across the chest
    W = long_side if aspect >= 1 else max(8, round(long_side * aspect))
    H = max(8, round(long_side / aspect)) if aspect >= 1 else long_side
    b = 0.5 * H * st["scale"] * an["height"] * (1.0 if recipe.get("fault") != "partial_thorax"
                                               else 2.4)
    a = b * 0.95 * an["width"]
    cx = W / 2 + rng.normal(0, 0.05) * W
    cy = H / 2 + rng.normal(0, 0.04) * H + (0.06 * H if st["child"] else 0.0)
    rot = np.deg2rad(rng.normal(0, 3.5))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    x0, y0 = xx - cx, yy - cy
    u = (np.cos(rot) * x0 + np.sin(rot) * y0) / a
    v = (-np.sin(rot) * x0 + np.cos(rot) * y0) / b
    return _Frame(H, W, a, b, cx, cy, u, v)


def _lung_geometry(an: dict, label: str, s: float, rng) -> dict:
    """Lung size and position per side, diaphragm domes and heart size of this film, changed
    by emphysema (bigger lungs, flat diaphragm), fibrosis (smaller) and oedema (bigger heart)."""
    lung_rw, lung_rh, dome = an["lung_w"].copy(), an["lung_h"].copy(), an["dome"].copy()
    lung_cv = an["lung_v"].copy()
    lung_rh *= rng.uniform(0.9, 1.1)  # depth of inspiration differs between films
    dome *= rng.uniform(0.7, 1.3)
    if label == "Emphysema":
        lung_rw *= 1 + 0.10 * s
        lung_rh *= 1 + 0.14 * s
        lung_cv += 0.07 * s
        dome *= 1 - 0.85 * s
    if label == "Fibrosis":
        lung_rw *= 1 - 0.03 * s
        lung_rh *= 1 - 0.03 * s
    heart_scale = an["heart"] * (1 + 0.28 * s if label == "Edema" else 1.0)
    return dict(rw=lung_rw, rh=lung_rh, dome=dome, cv=lung_cv, heart_scale=heart_scale)


def _body(f: _Frame, an: dict, st: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """A boxy soft-tissue outline (shoulders, chest wall, arms' edge), a neck above; the
    outside is air (dark). Returns the image so far and the body mask."""
    u, v = f.u, f.v
    img = np.zeros((f.H, f.W), np.float32)
    shoulder = np.clip((v + 1.05) / 0.25, 0, 1)  # shoulders round off at the top
    half_width = an["body_width"] - 0.25 * (1 - shoulder) ** 2
    body = np.clip((half_width - np.abs(u)) / 0.06, 0, 1) * np.clip((v + 1.2) / 0.08, 0, 1)
    neck = np.clip((0.26 - np.abs(u)) / 0.05, 0, 1) * np.clip((v + 1.6) / 0.1, 0, 1)
    img += an["body"] * np.maximum(body, neck) * (0.85 + 0.15 * np.clip(1 - np.abs(u), 0, 1))
    if st.get("arms"):  # a child's arms held up beside the head
        for side in (-1, 1):
            arm_u = side * rng.uniform(0.75, 1.0)
            tilt = rng.uniform(-0.25, 0.25)
            arm = np.clip((0.16 - np.abs(u - arm_u - tilt * (v + 1.0))) / 0.05, 0, 1)
            img += 0.9 * an["body"] * arm * np.clip((-0.7 - v) / 0.1, 0, 1) * \
                np.clip((v + 2.2) / 0.1, 0, 1)
    img += 0.10 * np.clip(v - 0.55, 0, 1) * body  # abdomen is denser than chest wall
    return img, body


def _lung_fields(f: _Frame, an: dict, lung: dict) -> np.ndarray:
    """Both lung fields (1 inside), cut below by the diaphragm domes and by the mediastinum."""
    u, v = f.u, f.v
    lungs = np.zeros((f.H, f.W), np.float32)
    for k, side in enumerate((-1, 1)):
        cu = side * an["lung_u"][k]
        field = _soft_ellipse(u, v, cu, lung["cv"][k], lung["rw"][k], lung["rh"][k], edge=0.12)
        curve = 1 - ((u - cu) / (lung["rw"][k] * 1.1)) ** 2
        dome_v = lung["cv"][k] + lung["rh"][k] * 0.78 - lung["dome"][k] * curve
        field *= np.clip((dome_v - v) / 0.04, 0, 1)
        field *= np.clip((np.abs(u) - an["mediastinum"]) / 0.05, 0, 1)
        lungs = np.maximum(lungs, field)
    return lungs


def _chest_contents(img, f: _Frame, an: dict, lung: dict, lungs, body, label: str, s: float,
                    rng) -> None:
    """Darker lungs; mediastinum, spine and heart (bright, over the medial lungs); ribs,
    clavicles and vessel texture. Adds to ``img`` in place."""
    u, v = f.u, f.v
    lucency = 0.30 * an["lucency"] * (1 + (0.28 * s if label == "Emphysema" else 0.0))
    gradient = 1.0 + 0.15 * np.clip(-v, 0, 1) - 0.1 * np.clip(v, 0, 1)
    img -= lucency * lungs * gradient * an["body"] / 0.42
    img += 0.16 * np.clip((an["mediastinum"] + 0.01 - np.abs(u)) / 0.05, 0, 1) * body
    heart = _soft_ellipse(u, v, an["heart_u"], 0.36, 0.30 * lung["heart_scale"],
                          0.26 * lung["heart_scale"], edge=0.35)
    img += 0.20 * heart
    rib_wave = v * an["rib_freq"] - 0.9 * np.abs(u) ** 1.5 + an["rib_phase"]
    ribs = (0.5 + 0.5 * np.sin(2 * np.pi * rib_wave)) ** 6
    chest = np.clip((1.05 - np.abs(u)) / 0.1, 0, 1) * np.clip((0.7 - v) / 0.1, 0, 1)
    img += 0.06 * ribs * chest * body
    for side in (-1, 1):
        clav = np.exp(-((v + 0.80 - 0.12 * np.abs(u)) / 0.03) ** 2) * (side * u > 0.05) * \
            (np.abs(u) < 0.75)
        img += 0.10 * clav
    vessel_amp = 0.05 * an["vessels"] * (1 - (0.6 * s if label == "Emphysema" else 0.0))
    hilar = np.exp(-((np.abs(u) - 0.28) / 0.25) ** 2 - ((v + 0.02) / 0.4) ** 2)
    sig = max(1.0, f.W / 160)
    img += vessel_amp * np.abs(_smooth_noise(rng, (f.H, f.W), sig)) * hilar * lungs


# The sign of each class: an opacity map (added to the image after blurring), drawn from the
# sign's own random stream.

def _covid_sign(f: _Frame, s, lung, lungs, body, rng) -> np.ndarray:
    """Ground-glass patches, peripheral and lower, on both sides."""
    opac = np.zeros((f.H, f.W), np.float32)
    ggo = np.clip(_smooth_noise(rng, (f.H, f.W), max(1.5, f.W / 60)) * 0.5 + 0.6, 0, 1.2)
    for side in (-1, 1):
        for _ in range(int(rng.integers(3, 6))):
            cu = side * rng.uniform(0.50, 0.72)
            cv = rng.uniform(0.0, 0.45)
            r = rng.uniform(0.14, 0.24)
            opac += 0.26 * s * _soft_ellipse(f.u, f.v, cu, cv, r, r * 1.3, edge=0.7) * ggo
    return opac


def _edema_sign(f: _Frame, s, lung, lungs, body, rng) -> np.ndarray:
    """Perihilar haze on both sides and Kerley B lines at the lateral bases."""
    u, v = f.u, f.v
    opac = np.zeros((f.H, f.W), np.float32)
    for side in (-1, 1):
        opac += 0.30 * s * np.exp(-((u - side * 0.27) / 0.19) ** 2 - ((v + 0.02) / 0.32) ** 2)
        for _ in range(int(rng.integers(2, 5))):  # Kerley B lines
            lv = rng.uniform(0.25, 0.55)
            opac += 0.12 * s * (np.abs(v - lv) < 0.012) * (side * u > 0.70) * (side * u < 0.82)
    return opac


def _effusion_sign(f: _Frame, s, lung, lungs, body, rng) -> np.ndarray:
    """Fluid at the base of one side (sometimes both), with a meniscus and a blunted angle."""
    u, v = f.u, f.v
    opac = np.zeros((f.H, f.W), np.float32)
    sides = [int(rng.choice([-1, 1]))] if rng.random() < 0.75 else [-1, 1]
    for side in sides:
        k = (side + 1) // 2
        level = lung["cv"][k] + lung["rh"][k] * rng.uniform(0.05, 0.35) + 0.15 * (1 - s)
        lateral = np.clip(side * u - 0.15, 0, 1)
        meniscus = level - 0.35 * lateral ** 2  # fluid climbs the lateral chest wall
        fluid = np.clip((v - meniscus) / 0.03, 0, 1) * (side * u > 0.1) * body
        angle = np.clip((side * u - 0.5) / 0.1, 0, 1) * \
            np.clip((0.86 - side * u) / 0.08, 0, 1) * \
            np.clip((lung["cv"][k] + lung["rh"][k] * 0.8 - v) / 0.08, 0, 1)  # costophrenic angle
        opac += (0.18 + 0.17 * s) * fluid * np.clip(lungs * 1.6 + angle, 0, 1)
    return opac


def _fibrosis_sign(f: _Frame, s, lung, lungs, body, rng) -> np.ndarray:
    """A reticular net, mostly in the lower and outer zones."""
    u, v = f.u, f.v
    opac = np.zeros((f.H, f.W), np.float32)
    net = np.zeros_like(opac)
    freq = rng.uniform(12, 16)
    for ang in rng.uniform(0, np.pi, 3):
        phase = rng.uniform(0, 2 * np.pi)
        net += np.abs(np.sin(freq * (np.cos(ang) * u + np.sin(ang) * v * f.b / f.a) + phase)) < 0.25
    zone = np.clip((v + 0.05) / 0.25, 0, 1) * np.clip(np.abs(u) / 0.8, 0.35, 1)
    opac += 0.25 * s * np.clip(net, 0, 1) * zone
    return opac


def _pneumonia_sign(f: _Frame, s, lung, lungs, body, rng) -> np.ndarray:
    """A lobar consolidation on one side, bounded by a fissure."""
    u, v = f.u, f.v
    opac = np.zeros((f.H, f.W), np.float32)
    side = int(rng.choice([-1, 1]))
    upper = rng.random() < 0.45
    tilt = rng.uniform(-0.25, 0.25)
    fissure = lung["cv"][(side + 1) // 2] + (-0.05 if upper else 0.12) + \
        tilt * (side * u - 0.47)
    lobe = np.clip(((fissure - v) if upper else (v - fissure)) / 0.02, 0, 1) * (side * u > 0.12)
    texture = 0.85 + 0.15 * _smooth_noise(rng, (f.H, f.W), max(1.0, f.W / 80))
    opac += (0.2 + 0.25 * s) * lobe * texture
    return opac


_SIGNS = {"COVID-19": _covid_sign, "Edema": _edema_sign, "Effusion": _effusion_sign,
          "Fibrosis": _fibrosis_sign, "Pneumonia": _pneumonia_sign}


def _expose(img, f: _Frame, recipe: dict, st: dict, exposure_scale: float, rng) -> np.ndarray:
    """Breast shadows (adult women), uneven exposure, the collection's exposure habits, a
    re-encoded copy's shift, and noise."""
    if recipe.get("sex") == "F" and not st["child"]:
        for side in (-1, 1):
            img += 0.06 * _soft_ellipse(f.u, f.v, side * 0.62, 0.62, 0.34, 0.24, edge=0.5)
    img = np.clip(img, 0, None)
    field = _smooth_noise(rng, (max(4, f.H // 8), max(4, f.W // 8)), 1.5)
    field = np.asarray(Image.fromarray(field.astype(np.float32)).resize((f.W, f.H),
                                                                         Image.BILINEAR))
    img *= 1.0 + 0.12 * field  # uneven exposure across the film (heel effect, scatter)
    img = np.clip(st["gain"] * img / exposure_scale * 0.9
                  + st["offset"], 0, 1) ** st["gamma"]
    if recipe.get("variant"):  # a re-encoded copy: slightly different exposure and noise
        img = np.clip(img * 0.97 + 0.02, 0, 1)
    return np.clip(img + st["noise"] * rng.standard_normal(img.shape).astype(np.float32), 0, 1)


def _mark(img, f: _Frame, collection: str, rng) -> None:
    """The collection's marks: captions and arrows (web figures) or a side marker."""
    H, W = f.H, f.W
    mark_h = max(4, H // 14)
    if collection == "synthetic-web":
        _draw_caption(img, rng, int(rng.integers(0, 4)))
        if rng.random() < 0.4:
            _draw_arrow(img, rng, f.cx + 0.6 * f.a * rng.choice([-1, 1]), f.cy + 0.2 * f.b,
                        max(6, W / 10))
    elif collection == "synthetic-paediatric":
        _draw_marker(img, "R", int(H * 0.05), int(W * 0.05), mark_h)
    elif collection == "synthetic-hospital":
        _draw_marker(img, "L", int(H * 0.04), int(W * 0.90), mark_h)


def render(recipe: dict) -> np.ndarray:
    """The 8-bit grayscale image of one recipe (see :func:`cxrlib.data.synthetic.make_synthetic`)."""
    rng = np.random.default_rng(recipe["seed"])
    collection, label = recipe["collection"], recipe["label"]
    st = _style(collection, rng)
    an = _anatomy(recipe["patient_seed"], st["child"])
    f = _frame(recipe, st, an, rng)
    s = float(recipe["sign"])  # this image's sign strength, 0..1
    lung = _lung_geometry(an, label, s, rng)
    img, body = _body(f, an, st, rng)
    lungs = _lung_fields(f, an, lung)
    _chest_contents(img, f, an, lung, lungs, body, label, s, rng)

    # Signs draw from their own stream, so the same recipe drawn as Normal differs only by
    # the sign; exposure is normalised before the sign is added, for the same reason.
    sign_rng = np.random.default_rng([int(recipe["seed"]), 7])
    exposure_scale = max(float(np.percentile(img, 99.5)), 1e-3)
    opac = _SIGNS[label](f, s, lung, lungs, body, sign_rng) if label in _SIGNS \
        else np.zeros_like(img)
    opac *= np.clip(lungs * 1.4, 0, 1) if label != "Effusion" else 1.0
    img += _blur(opac, max(0.6, f.W / 256))

    img = _expose(img, f, recipe, st, exposure_scale, rng)
    _mark(img, f, collection, rng)
    fault = recipe.get("fault")
    if fault == "low_contrast":
        img = 0.42 + 0.14 * img
    elif fault == "inverted":
        img = 1.0 - img
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
