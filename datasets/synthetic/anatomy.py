"""The static field of view: somata, out-of-focus cells, neurites, vessels, neuropil, optics.

Everything that does not change over time is drawn once per recording from
``numpy.random.default_rng([seed, 0])`` and stored as a spatial footprint
matrix ``S`` (pixels x units, sparse) plus a few dense background images, so
that a block of frames is two matrix products (see ``simulate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.synthetic.params import SimulationParams

__all__ = ["FieldOfView", "build_field_of_view", "KIND_SOMA", "KIND_OOF", "KIND_NEURITE"]

KIND_SOMA, KIND_OOF, KIND_NEURITE = 0, 1, 2

#: Centre distance, in units of the sum of the two radii, below which two somata may touch.
CONTACT = 1.15


@dataclass
class FieldOfView:
    """Static content of one synthetic recording.

    Attributes
    ----------
    masks : Masks
        Binary masks of all in-focus somata (N), nucleus included.
    silent : ndarray of bool, (N,)
        Somata that never fire.
    footprints : scipy.sparse.csr_matrix, (H*W, U)
        Spatial profile of every fluorescent unit: N somata first, then
        out-of-focus cells, then neurites.
    kinds : ndarray of int8, (U,)
        ``KIND_SOMA``, ``KIND_OOF`` or ``KIND_NEURITE`` per unit.
    brightness : ndarray, (U,)
        Resting fluorescence F0 per unit (relative to mean neuropil = 1).
    background : ndarray of float32, (1 + K, H*W)
        Static neuropil image, then K neuropil activity components.
    gain : ndarray of float32, (H*W,)
        Vignetting x vessel transmission (multiplies everything).
    vessels : ndarray of bool, (H, W)
        Pixels inside a blood vessel.
    focal_offsets : ndarray, (N,)
        Depth at which the focal plane cuts each soma, in soma radii
        (``SimulationParams.focal_offset_max``): its nucleus shows where
        ``|offset| < nucleus_fraction``.
    """

    masks: Masks
    silent: np.ndarray
    footprints: sp.csr_matrix
    kinds: np.ndarray
    brightness: np.ndarray
    background: np.ndarray
    gain: np.ndarray
    vessels: np.ndarray
    focal_offsets: np.ndarray

    @property
    def n_somata(self) -> int:
        return self.masks.n

    @property
    def n_units(self) -> int:
        return self.footprints.shape[1]

    def overlapping(self) -> np.ndarray:
        """Bool (N,): the soma's mask shares at least one pixel with another soma's mask."""
        m = self.masks.matrix.astype(np.int32)
        inter = (m @ m.T).tocsr()
        inter.setdiag(0)
        inter.eliminate_zeros()
        return np.diff(inter.indptr) > 0


# ---------------------------------------------------------------------- helpers
def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian random field with correlation length sigma_px."""
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma=max(sigma_px, 0.5), mode="wrap")
    sd = f.std()
    return (f - f.mean()) / (sd if sd > 0 else 1.0)


def _illumination(h: int, w: int, vignetting: float) -> np.ndarray:
    """Radial fall-off 1 - v * rho^2 (rho = 1 at the corners): the centre is brightest."""
    y = (np.arange(h) - (h - 1) / 2) / ((h - 1) / 2 if h > 1 else 1)
    x = (np.arange(w) - (w - 1) / 2) / ((w - 1) / 2 if w > 1 else 1)
    rho2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2.0
    return 1.0 - vignetting * rho2


def _vessels(rng: np.random.Generator, p: SimulationParams) -> tuple[np.ndarray, np.ndarray]:
    """Dark tubes crossing the frame. Returns (transmission image, distance beyond vessel wall in px)."""
    h, w = p.height, p.width
    trans = np.ones((h, w))
    clearance = np.full((h, w), np.inf)
    for _ in range(p.n_vessels):
        lo, hi = p.vessel_radius_um
        # Small vessels are far more common than large ones: draw the radius log-uniformly.
        r_px = math.exp(rng.uniform(math.log(lo), math.log(hi))) / p.um_per_px
        # Start on a random edge, head inwards, wander slowly (a smooth curve).
        side = rng.integers(4)
        t = rng.uniform(0.1, 0.9)
        y, x, ang = {
            0: (0.0, t * w, math.pi / 2),
            1: (h - 1.0, t * w, -math.pi / 2),
            2: (t * h, 0.0, 0.0),
            3: (t * h, w - 1.0, math.pi),
        }[int(side)]
        ang += rng.uniform(-0.6, 0.6)
        line = np.zeros((h, w), bool)
        for _step in range(4 * (h + w)):
            iy, ix = int(round(y)), int(round(x))
            if not (0 <= iy < h and 0 <= ix < w):
                if _step > 5:
                    break
            else:
                line[iy, ix] = True
            ang += rng.normal(0, 0.03)
            y += 0.5 * math.sin(ang)
            x += 0.5 * math.cos(ang)
        if not line.any():
            continue
        dist = ndi.distance_transform_edt(~line)
        # Soft wall (about 1 px) so that the vessel edge is not aliased.
        inside = 1.0 / (1.0 + np.exp((dist - r_px) / 0.7))
        trans *= 1.0 - (1.0 - p.vessel_transmission) * inside
        clearance = np.minimum(clearance, dist - r_px)
    return trans, clearance


def _soma_geometry(rng: np.random.Generator, p: SimulationParams, n: int) -> dict[str, np.ndarray]:
    r_um = np.clip(rng.normal(p.soma_radius_um, p.soma_radius_sd_um, n), 0.6 * p.soma_radius_um, 1.5 * p.soma_radius_um)
    aspect = rng.uniform(1.0, p.soma_aspect_max, n)
    # Keep the area of the ellipse equal to pi r^2 so the radius sets the size.
    a = r_um / np.sqrt(aspect) * aspect / p.um_per_px
    b = r_um / np.sqrt(aspect) / p.um_per_px
    return {
        "a": a,
        "b": b,
        "theta": rng.uniform(0, np.pi, n),
        "eps": rng.normal(0, 1, (n, 4)) * p.border_irregularity / np.arange(1, 5) ** 0.5,
        "phase": rng.uniform(0, 2 * np.pi, (n, 4)),
        "nuc_off": rng.normal(0, 0.08, (n, 2)),
        "nuc_scale": rng.uniform(0.85, 1.15, n),
        "r_px": r_um / p.um_per_px,
    }


def _rasterize_soma(g: dict, i: int, cy: float, cx: float, p: SimulationParams):
    """(flat pixel indices, mask bool, footprint values) of soma i centred at (cy, cx)."""
    h, w = p.height, p.width
    a, b, th = g["a"][i], g["b"][i], g["theta"][i]
    reach = int(math.ceil(max(a, b) * (1 + 4 * p.border_irregularity))) + 2
    r0, r1 = max(0, int(cy) - reach), min(h, int(cy) + reach + 2)
    c0, c1 = max(0, int(cx) - reach), min(w, int(cx) + reach + 2)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    dy, dx = yy - cy, xx - cx
    u = (dx * math.cos(th) + dy * math.sin(th)) / a
    v = (-dx * math.sin(th) + dy * math.cos(th)) / b
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    k = np.arange(2, 6)[:, None, None]
    border = 1.0 + np.sum(g["eps"][i][:, None, None] * np.cos(k * phi + g["phase"][i][:, None, None]), axis=0)
    mask = rho <= border
    # Soft membrane edge (~0.5 px) and a dark nucleus: GCaMP is excluded from the nucleus,
    # so a soma cut through its nucleus looks like a bright ring around a dim centre. The
    # nucleus is a sphere; the focal plane crosses it at the soma's depth offset ``dz`` (in
    # soma radii), so its section is a disk of radius sqrt(rn^2 - dz^2), and its darkness
    # scales with the same factor: near a pole the optical section holds cytoplasm too.
    edge_px = 0.5 / max(a, b)
    body = 1.0 / (1.0 + np.exp((rho - border) / edge_px))
    rn = p.nucleus_fraction * g["nuc_scale"][i]
    cut = math.sqrt(max(rn * rn - g["dz"][i] ** 2, 0.0)) / rn if rn > 0 else 0.0
    if cut > 0:
        nu = u - g["nuc_off"][i][0]
        nv = v - g["nuc_off"][i][1]
        nucleus = 1.0 / (1.0 + np.exp((np.hypot(nu, nv) - rn * cut * border) / (1.5 * edge_px)))
        value = body * (1.0 - (1.0 - p.nucleus_brightness) * cut * nucleus)
    else:
        value = body
    keep = value > 0.02
    flat = (yy * w + xx)[keep]
    return flat, mask[keep], value[keep]


def _place_somata(rng, p: SimulationParams, clearance: np.ndarray, n: int, g: dict) -> np.ndarray:
    """Centres (n, 2) by sequential rejection sampling with a soft core (Poisson-disk-like).

    A candidate closer than ``min_center_distance`` x (r_i + r_j) to a placed
    soma is always rejected; one closer than ``CONTACT`` x (r_i + r_j) (the two
    outlines would likely touch or overlap in projection) is kept with
    probability ``overlap_probability`` only. Cells in a tissue slab exclude
    each other, so at the densities of the real ground truth a purely random
    placement would make most somata overlap; this keeps the overlapping
    share near the real one.
    """
    h, w = p.height, p.width
    r = g["r_px"]
    centres = np.zeros((n, 2))
    placed = 0
    tries = 0
    max_tries = 300 * n + 1000
    # Candidates are drawn in batches (same sequence whatever the outcome: deterministic).
    batch = 256
    while placed < n and tries < max_tries:
        ys = rng.uniform(0, 1, batch)
        xs = rng.uniform(0, 1, batch)
        coin = rng.random(batch)
        for k in range(batch):
            if placed >= n or tries >= max_tries:
                break
            tries += 1
            m = 0.3 * r[placed]
            cy, cx = m + ys[k] * (h - 2 * m), m + xs[k] * (w - 2 * m)
            if clearance[min(int(cy), h - 1), min(int(cx), w - 1)] < 0.6 * r[placed]:
                continue  # no soma inside a blood vessel
            if placed:
                d = np.hypot(centres[:placed, 0] - cy, centres[:placed, 1] - cx) / (r[:placed] + r[placed])
                dmin = d.min()
                if dmin < p.min_center_distance:
                    continue
                if dmin < CONTACT and coin[k] >= p.overlap_probability:
                    continue
            centres[placed] = cy, cx
            placed += 1
    if placed < n:
        achieved = placed / (p.area_um2 * 1e-6)
        raise InputError(
            f"simulation parameter soma_density_per_mm2={p.soma_density_per_mm2:g} is too high to place the somata: "
            f"only {placed} of {n} fit the {p.height}x{p.width} px field without overlapping more than "
            f"min_center_distance={p.min_center_distance:g} and overlap_probability={p.overlap_probability:g} "
            f"allow; valid range: 0 to about {0.8 * achieved:.0f} "
            "(or lower min_center_distance / soma_radius_um, or raise overlap_probability)"
        )
    return centres


def _blob(rng, p: SimulationParams, cy: float, cx: float, r_px: float, sigma_px: float):
    """A defocused cell: a ring blurred by the point spread function of the defocus."""
    h, w = p.height, p.width
    reach = int(math.ceil(r_px + 3 * sigma_px)) + 1
    r0, r1 = max(0, int(cy) - reach), min(h, int(cy) + reach + 1)
    c0, c1 = max(0, int(cx) - reach), min(w, int(cx) + reach + 1)
    if r1 <= r0 or c1 <= c0:
        return np.zeros(0, np.int64), np.zeros(0)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    rho = np.hypot(yy - cy, xx - cx) / r_px
    img = (rho <= 1) * (1 - 0.6 * (rho < 0.55))
    img = ndi.gaussian_filter(img.astype(float), sigma_px, mode="constant")
    keep = img > 0.05 * img.max() if img.max() > 0 else np.zeros(img.shape, bool)
    return (yy * w + xx)[keep], img[keep] / max(img.max(), 1e-12)


def _neurite(rng, p: SimulationParams):
    """A dendrite (thick, smooth) or axon (thin, beaded) fragment as a blurred random curve."""
    h, w = p.height, p.width
    axon = rng.random() < 0.5
    length_px = rng.uniform(15, 60) / p.um_per_px
    y, x = rng.uniform(0, h), rng.uniform(0, w)
    ang = rng.uniform(0, 2 * np.pi)
    n = max(int(length_px / 0.5), 2)
    angs = ang + np.cumsum(rng.normal(0, 0.06, n))
    ys = y + np.cumsum(0.5 * np.sin(angs))
    xs = x + np.cumsum(0.5 * np.cos(angs))
    iy, ix = np.round(ys).astype(int), np.round(xs).astype(int)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    if ok.sum() < 4:
        return np.zeros(0, np.int64), np.zeros(0)
    iy, ix = iy[ok], ix[ok]
    weight = np.ones(iy.size)
    if axon:
        # Boutons: brighter beads every few micrometres.
        weight = 0.5 + 1.5 * (np.sin(np.arange(iy.size) * 0.5 * p.um_per_px / rng.uniform(1.0, 2.0)) > 0.7)
    r0, r1 = max(0, iy.min() - 4), min(h, iy.max() + 5)
    c0, c1 = max(0, ix.min() - 4), min(w, ix.max() + 5)
    img = np.zeros((r1 - r0, c1 - c0))
    np.add.at(img, (iy - r0, ix - c0), weight)
    width_px = (0.35 if axon else 0.7) / p.um_per_px
    img = ndi.gaussian_filter(img, max(width_px, 0.5), mode="constant")
    img /= max(img.max(), 1e-12)
    keep = img > 0.05
    yy, xx = np.mgrid[r0:r1, c0:c1]
    return (yy * w + xx)[keep], img[keep]


# ---------------------------------------------------------------------- main entry
def build_field_of_view(p: SimulationParams, seed: int) -> FieldOfView:
    """Draw the static content of a recording from ``default_rng([seed, 0])``.

    Raises
    ------
    InputError
        If the somata cannot be placed at the requested density.
    """
    rng = np.random.default_rng([int(seed), 0])
    h, w = p.height, p.width
    area_mm2 = p.area_um2 * 1e-6

    trans, clearance = _vessels(rng, p)
    n = int(round(p.soma_density_per_mm2 * area_mm2))
    g = _soma_geometry(rng, p, n)
    # Depth offsets from their own stream, so that every other draw is unchanged by them.
    g["dz"] = np.random.default_rng([int(seed), 0, 1]).uniform(-1.0, 1.0, n) * p.focal_offset_max
    centres = _place_somata(rng, p, clearance, n, g)

    # Footprint columns: somata first, then out-of-focus cells, then neurites, one column per component.
    rows, cols, vals, mask_coords = [], [], [], []

    def add_component(flat: np.ndarray, value: np.ndarray) -> None:
        cols.append(np.full(flat.size, len(rows)))
        rows.append(flat)
        vals.append(value)

    for i in range(n):
        flat, mask, value = _rasterize_soma(g, i, centres[i, 0], centres[i, 1], p)
        mask_coords.append(np.divmod(flat[mask], w))
        add_component(flat, value)
    masks = Masks.from_coordinates(mask_coords, (h, w))
    # Silent neurons: a fixed share (rounded up, so never below it), chosen at random
    # (visible in the mean image, never firing).
    silent = np.zeros(n, bool)
    silent[rng.permutation(n)[: int(math.ceil(p.silent_fraction * n - 1e-9))]] = True

    blur_px = p.oof_blur_um / p.um_per_px
    for _ in range(int(round(p.oof_density_per_mm2 * area_mm2))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r_px = rng.normal(p.soma_radius_um, p.soma_radius_sd_um) / p.um_per_px * 1.2
        flat, value = _blob(rng, p, cy, cx, max(r_px, 2.0), blur_px * rng.uniform(0.7, 1.4))
        if flat.size:
            add_component(flat, value)
    n_oof = len(rows) - n
    for _ in range(int(round(p.dendrite_density_per_mm2 * area_mm2))):
        flat, value = _neurite(rng, p)
        if flat.size:
            add_component(flat, value)
    u = len(rows)
    kinds = np.concatenate(
        [np.full(n, KIND_SOMA), np.full(n_oof, KIND_OOF), np.full(u - n - n_oof, KIND_NEURITE)]
    ).astype(np.int8)
    if vals:
        footprints = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(h * w, u),
        )
    else:  # an empty field of view (e.g. to measure the background alone)
        footprints = sp.csr_matrix((h * w, 0), dtype=np.float32)
    brightness = np.exp(rng.normal(0, p.soma_brightness_log_sd, u))
    brightness[kinds == KIND_SOMA] *= p.soma_brightness
    brightness[kinds == KIND_OOF] *= p.oof_brightness
    brightness[kinds == KIND_NEURITE] *= p.dendrite_brightness

    # Neuropil: a spatially correlated static texture and K slowly fluctuating patches.
    length_px = p.neuropil_length_um / p.um_per_px
    static = np.clip(1.0 + p.neuropil_contrast * _smooth_field(rng, (h, w), length_px / 2), 0.2, None)
    comps = [static]
    for _ in range(p.n_neuropil_components):
        patch = np.exp(0.5 * _smooth_field(rng, (h, w), 2 * length_px))
        comps.append(static * patch / patch.mean())
    background = np.stack([c.ravel() for c in comps]).astype(np.float32)
    gain = (_illumination(h, w, p.vignetting) * trans).ravel().astype(np.float32)
    return FieldOfView(
        masks=masks,
        silent=silent,
        footprints=footprints,
        kinds=kinds,
        brightness=brightness,
        background=background,
        gain=gain,
        vessels=(clearance < 0),
        focal_offsets=g["dz"],
    )
