"""Parameter records of the two-photon movie simulator.

Every number that shapes a synthetic movie lives in :class:`SimulationParams`
(one frozen dataclass, validated on construction) so that a recording is a
pure function of its parameters and seed, and the parameters can be stored
beside the movie as provenance. Indicator kinetics live in :class:`Indicator`.

Defaults follow NAOMi (Song et al., J Neurosci Methods 2021) where it gives a
value (GCaMP6f K_d 290 nM, Hill 2.7; soma radius ~5.9 um; vessels 2-15 um
radius) and were otherwise tuned so that the ``synthetic`` preset matches the
statistics of the ABO 275 um ground truth (see ``datasets.describe``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

from datasets.errors import InputError

__all__ = ["Indicator", "INDICATORS", "SimulationParams"]


@dataclass(frozen=True)
class Indicator:
    """Kinetics of a genetically encoded calcium indicator.

    Parameters
    ----------
    name : str
        ``"GCaMP6f"`` or ``"GCaMP6s"``.
    kd_nM : float
        Dissociation constant K_d (nM).
    hill : float
        Hill coefficient of the calcium binding curve.
    rise_s : float
        Time constant of the rise of the fluorescence after a spike (s).
    half_decay_s : float
        Half decay time t_1/2 after a single spike (s); the paper's matched
        filter uses tau = t_1/2 / ln 2 (0.2 s for GCaMP6f, 0.8 s for GCaMP6s).
    dynamic_range : float
        F_max / F_min of the indicator (saturation level).
    resting_nM : float
        Resting free calcium concentration (nM).
    """

    name: str
    kd_nM: float
    hill: float
    rise_s: float
    half_decay_s: float
    dynamic_range: float
    resting_nM: float = 50.0

    @property
    def tau_s(self) -> float:
        """Exponential decay constant used by the paper's d' (t_1/2 / ln 2)."""
        return self.half_decay_s / math.log(2.0)


#: GCaMP6f after NAOMi (K_d 290 nM, n 2.7); GCaMP6s after Chen et al. 2013.
INDICATORS: dict[str, Indicator] = {
    "GCaMP6f": Indicator("GCaMP6f", kd_nM=290.0, hill=2.7, rise_s=0.02, half_decay_s=0.1386, dynamic_range=20.0),
    "GCaMP6s": Indicator("GCaMP6s", kd_nM=144.0, hill=2.9, rise_s=0.07, half_decay_s=0.5545, dynamic_range=20.0),
}


def _range_error(name: str, value, valid: str) -> InputError:
    return InputError(f"simulation parameter {name}={value!r} is out of range; valid: {valid}")


@dataclass(frozen=True)
class SimulationParams:
    """Everything that defines one synthetic recording except its seed.

    Lengths are in micrometres unless the name says ``px``; densities are per
    mm^2 of the field of view; brightnesses are relative to the mean neuropil
    level (1.0); ``photons_per_px`` sets the absolute photon budget.

    Raises
    ------
    InputError
        On construction, for any impossible value; the message names the
        parameter and its valid range.
    """

    # --- geometry and timing
    height: int = 256
    width: int = 256
    n_frames: int = 2400
    fps: float = 30.0
    um_per_px: float = 0.78
    indicator: str = "GCaMP6f"
    # --- somata (in focus); NAOMi radius ~5.9 um with a dark nucleus
    soma_density_per_mm2: float = 4500.0
    soma_radius_um: float = 5.75
    soma_radius_sd_um: float = 0.55
    soma_aspect_max: float = 1.4
    border_irregularity: float = 0.07
    nucleus_fraction: float = 0.55
    nucleus_brightness: float = 0.3
    # The focal plane cuts each in-focus soma at a depth offset drawn uniformly within
    # +-focal_offset_max soma radii: the nucleus shows only where the plane crosses it
    # (|offset| < nucleus_fraction), smaller and fainter towards its poles (0: every soma is
    # cut through its middle and shows a dark nucleus, the model before 2026-12).
    focal_offset_max: float = 1.0
    min_center_distance: float = 0.7
    overlap_probability: float = 0.05
    soma_brightness: float = 1.6
    soma_brightness_log_sd: float = 0.35
    # --- activity
    silent_fraction: float = 0.2
    rate_mean_hz: float = 2.9
    rate_log_sd: float = 2.0
    burst_extra_spikes: float = 4.0
    burst_isi_s: float = 0.06
    calcium_per_spike_nM: float = 20.0
    calcium_log_sd: float = 0.3
    calcium_rate_exponent: float = 0.0
    # --- background structures
    neuropil_length_um: float = 20.0
    neuropil_contrast: float = 0.25
    neuropil_modulation: float = 0.06
    neuropil_tau_s: float = 3.0
    n_neuropil_components: int = 4
    dendrite_density_per_mm2: float = 500.0
    dendrite_brightness: float = 0.9
    oof_density_per_mm2: float = 1200.0
    oof_blur_um: float = 3.5
    oof_brightness: float = 0.4
    n_vessels: int = 2
    vessel_radius_um: tuple[float, float] = (2.0, 15.0)
    vessel_transmission: float = 0.15
    # --- optics and detection
    vignetting: float = 0.45
    bleach_per_min: float = 0.06
    photons_per_px: float = 0.28
    read_noise_photons: float = 0.1
    adc_gain: float = 140.0
    adc_offset: float = 6.0
    motion_um: float = 0.0
    # --- registration borders (dark, zero-photon margins of a motion-corrected movie)
    border_left_px: float = 0.0
    border_right_px: float = 0.0
    border_top_px: float = 0.0
    border_bottom_px: float = 0.0
    border_ragged_px: float = 0.0
    # --- ground truth (paper's d'); None = derive from the rate prior
    dprime_threshold: float | None = None
    dprime_rate_prior_hz: float = 2.9
    dprime_p_n: float = 0.035
    bin_fps: float = 6.0
    # --- streaming
    block_frames: int = 250
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        positive_int = ("height", "width", "n_frames", "block_frames")
        for name in positive_int:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise _range_error(name, v, "a whole number >= 1")
        if self.height < 16 or self.width < 16:
            raise _range_error("height/width", (self.height, self.width), "at least 16 px each")
        positive = (
            "fps",
            "um_per_px",
            "soma_radius_um",
            "rate_mean_hz",
            "calcium_per_spike_nM",
            "neuropil_length_um",
            "neuropil_tau_s",
            "oof_blur_um",
            "photons_per_px",
            "adc_gain",
            "bin_fps",
            "soma_aspect_max",
        )
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise _range_error(name, v, "a finite number > 0")
        non_negative = (
            "soma_density_per_mm2",
            "soma_radius_sd_um",
            "border_irregularity",
            "soma_brightness",
            "soma_brightness_log_sd",
            "rate_log_sd",
            "burst_extra_spikes",
            "burst_isi_s",
            "calcium_log_sd",
            "calcium_rate_exponent",
            "neuropil_contrast",
            "neuropil_modulation",
            "dendrite_density_per_mm2",
            "dendrite_brightness",
            "oof_density_per_mm2",
            "oof_brightness",
            "bleach_per_min",
            "read_noise_photons",
            "adc_offset",
            "motion_um",
            "border_left_px",
            "border_right_px",
            "border_top_px",
            "border_bottom_px",
            "border_ragged_px",
        )
        for name in non_negative:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise _range_error(name, v, "a finite number >= 0")
        unit = (
            "nucleus_fraction",
            "nucleus_brightness",
            "focal_offset_max",
            "silent_fraction",
            "vessel_transmission",
            "vignetting",
            "overlap_probability",
        )
        for name in unit:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise _range_error(name, v, "a number in [0, 1]")
        if not 0 < self.dprime_p_n < 0.5:
            raise _range_error("dprime_p_n", self.dprime_p_n, "a probability in (0, 0.5)")
        if not 0.1 <= self.min_center_distance <= 2.0:
            raise _range_error("min_center_distance", self.min_center_distance, "[0.1, 2] x (sum of radii)")
        if self.soma_aspect_max < 1:
            raise _range_error("soma_aspect_max", self.soma_aspect_max, ">= 1")
        if self.n_neuropil_components < 0 or self.n_vessels < 0:
            raise _range_error("n_neuropil_components/n_vessels", (self.n_neuropil_components, self.n_vessels), ">= 0")
        lo, hi = self.vessel_radius_um
        if not 0 < lo <= hi:
            raise _range_error("vessel_radius_um", self.vessel_radius_um, "(min, max) with 0 < min <= max")
        self._check_field_of_view()
        if self.indicator not in INDICATORS:
            raise _range_error("indicator", self.indicator, " or ".join(INDICATORS))
        if self.bin_fps > self.fps:
            raise _range_error("bin_fps", self.bin_fps, f"<= fps ({self.fps})")
        if self.dprime_threshold is not None and not self.dprime_threshold > 0:
            raise _range_error("dprime_threshold", self.dprime_threshold, "None or a number > 0")
        fs = self.fps / self.bin_factor
        if not 0 < self.dprime_rate_prior_hz < fs:
            raise _range_error("dprime_rate_prior_hz", self.dprime_rate_prior_hz, f"(0, {fs:g}) Hz (the binned rate)")
        r_max = self.soma_radius_um + 3 * self.soma_radius_sd_um
        if 2 * r_max / self.um_per_px > min(self.height, self.width):
            raise _range_error(
                "soma_radius_um",
                self.soma_radius_um,
                f"small enough that a soma fits the {self.height}x{self.width} frame",
            )

    def _check_field_of_view(self) -> None:
        """Borders and motion must leave a field of view: at least 16 px between the borders."""
        for side, other, size in (
            ("border_left_px", "border_right_px", self.width),
            ("border_right_px", "border_left_px", self.width),
            ("border_top_px", "border_bottom_px", self.height),
            ("border_bottom_px", "border_top_px", self.height),
        ):
            room = size - 16 - getattr(self, other)
            if getattr(self, side) > room:
                raise _range_error(side, getattr(self, side), f"0 to {max(room, 0):g} px (frame {size} px, {other} "
                                   f"{getattr(self, other):g} px, at least 16 px left between the borders)")
        max_ragged = min(self.height, self.width) / 8
        if self.border_ragged_px > max_ragged:
            raise _range_error("border_ragged_px", self.border_ragged_px, f"0 to {max_ragged:g} px")
        max_motion = min(self.height, self.width) / 4 * self.um_per_px
        if self.motion_um > max_motion:
            raise _range_error("motion_um", self.motion_um, f"0 to {max_motion:g} um (a quarter of the frame)")

    # ------------------------------------------------------------------ derived values
    @property
    def ind(self) -> Indicator:
        """The :class:`Indicator` record."""
        return INDICATORS[self.indicator]

    @property
    def bin_factor(self) -> int:
        """Frames summed per bin for the d' analysis (30 Hz -> 6 Hz: 5)."""
        return max(1, int(round(self.fps / self.bin_fps)))

    @property
    def area_um2(self) -> float:
        """Field-of-view area in um^2."""
        return self.height * self.width * self.um_per_px**2

    @property
    def threshold(self) -> float:
        """The d' threshold: given, or the paper's d'_min from the rate prior."""
        if self.dprime_threshold is not None:
            return float(self.dprime_threshold)
        from datasets.synthetic.truth import dprime_threshold

        return dprime_threshold(self.fps / self.bin_factor, self.dprime_rate_prior_hz, self.dprime_p_n)

    def replace(self, **changes) -> SimulationParams:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-able dictionary of all fields."""
        d = asdict(self)
        d["vessel_radius_um"] = list(self.vessel_radius_um)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SimulationParams:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown simulation parameters {unknown}")
        d = dict(d)
        if "vessel_radius_um" in d:
            d["vessel_radius_um"] = tuple(d["vessel_radius_um"])
        return cls(**d)

    def digest(self) -> str:
        """Short hash of the parameters (cache key)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]
