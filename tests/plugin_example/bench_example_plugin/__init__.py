"""Example plugin: one simple real method and four that fail on purpose.

``MeanImageThreshold`` is a deliberately simple segmenter (local contrast of
the mean image, threshold, connected components): it shows the adapter
shape. The failing methods exercise the harness's isolation.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from datasets.masks import Masks
from methods.base import Method, Segmentation


class MeanImageThreshold(Method):
    name = "example-threshold"
    description = "example plugin: threshold the local contrast of the mean image"

    def default_params(self, recording):
        return {"k": 2.0, "min_area": 20}

    def param_grid(self, recording):
        return {"k": [1.5, 2.0, 3.0], "min_area": [10, 20]}

    def segment(self, recording, params):
        t0 = time.perf_counter()
        mean = recording.movie.mean_image()
        contrast = mean - ndimage.gaussian_filter(mean, 8)
        fg = contrast > contrast.mean() + params["k"] * contrast.std()
        labels, n = ndimage.label(fg)
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        keep = np.flatnonzero(areas >= params["min_area"])
        keep = keep[keep > 0]
        stack = labels[None] == keep[:, None, None]
        masks = Masks.from_dense(stack) if keep.size else Masks.empty(mean.shape)
        return Segmentation(masks, dict(params), process_s=time.perf_counter() - t0, n_frames=recording.n_frames)


class Raises(Method):
    name = "example-raises"

    def segment(self, recording, params):
        raise RuntimeError("this method always fails")


class Hangs(Method):
    name = "example-hangs"

    def segment(self, recording, params):
        time.sleep(3600)


class MemoryHog(Method):
    name = "example-hog"

    def segment(self, recording, params):
        blocks = []
        for _ in range(64):  # up to 8 GB, 128 MB at a time, touched so it is resident
            blocks.append(np.ones(16 * 1024 * 1024))
            time.sleep(0.02)
        return None


class WrongFrame(Method):
    name = "example-wrong-frame"

    def segment(self, recording, params):
        h, w = recording.frame_shape
        return Segmentation(Masks.empty((h + 1, w)), {})
