"""Post-processing: threshold, watershed split, area filter, fusion across windows, encompassing removal."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.errors import InputError
from datasets.masks import Masks
from stnn.postprocess import (
    PostprocessConfig,
    candidate_regions,
    fuse_windows,
    postprocess,
    remove_encompassing,
    split_pieces,
)

SHAPE = (64, 64)
RR, CC = np.mgrid[: SHAPE[0], : SHAPE[1]]


def disk(r, c, radius):
    return (RR - r) ** 2 + (CC - c) ** 2 <= radius**2


def cfg(**kw):
    # 1 um/px so that um and px agree; average area 200 px splits two 9-px-radius disks (2 x 253 px).
    base = dict(threshold=0.5, min_area=20, um_per_px=1.0, avg_area_um2=200.0)
    base.update(kw)
    return PostprocessConfig(**base)


def test_two_touching_disks_are_split_by_the_watershed():
    p = np.zeros(SHAPE)
    p[disk(30, 22, 9) | disk(30, 38, 9)] = 0.9
    labels = candidate_regions(p, cfg())
    assert labels.max() == 2
    masks = postprocess(p, cfg())
    assert masks.n == 2
    cents = masks.centroids[np.argsort(masks.centroids[:, 1])]
    np.testing.assert_allclose(cents, [[30, 22], [30, 38]], atol=1.0)


def test_small_component_not_split_and_single_component_kept():
    # One component alone in its map: the authors' code returned nothing for it.
    p = np.zeros(SHAPE)
    p[disk(20, 20, 5)] = 0.99
    masks = postprocess(p, cfg())
    assert masks.n == 1
    assert masks.areas[0] == disk(20, 20, 5).sum()


def test_threshold_is_inclusive():
    p = np.zeros(SHAPE)
    p[disk(20, 20, 5)] = 0.7
    assert postprocess(p, cfg(threshold=0.7)).n == 1
    assert postprocess(p, cfg(threshold=0.71)).n == 0


def test_min_area_is_strict():
    p = np.zeros(SHAPE)
    p[10:15, 10:15] = 1.0  # 25 px
    assert postprocess(p, cfg(min_area=24)).n == 1
    assert postprocess(p, cfg(min_area=25)).n == 0


def test_fusion_keeps_the_member_closest_to_the_mean_area():
    # Three windows see one neuron with radii 4, 5, 6 (centres < 4 um apart): keep radius 5.
    maps = np.zeros((3, *SHAPE))
    for k, (rad, dc) in enumerate([(4, 0), (5, 1), (6, -1)]):
        maps[k][disk(30, 30 + dc, rad)] = 0.9
    masks = postprocess(maps, cfg(min_area=10))
    assert masks.n == 1
    assert masks.areas[0] == disk(30, 31, 5).sum()


def test_fusion_keeps_distant_neurons_apart():
    maps = np.zeros((2, *SHAPE))
    maps[0][disk(20, 20, 5)] = 0.9
    maps[1][disk(20, 26, 5)] = 0.9  # 6 um away: another neuron (they overlap little)
    masks = postprocess(maps, cfg(min_area=10))
    assert masks.n == 2


def test_fuse_windows_never_links_masks_of_one_window():
    m = Masks.from_dense(np.stack([disk(20, 20, 2), disk(20, 23, 2)]))
    assert fuse_windows(m, np.array([0, 0]), 4.0).tolist() == [0, 1]
    assert fuse_windows(m, np.array([0, 1]), 4.0).size == 1


def test_encompassing_mask_removed():
    big = disk(30, 30, 10)
    small = disk(30, 30, 4)
    other = disk(5, 5, 3)
    m = Masks.from_dense(np.stack([big, small, other]))
    assert remove_encompassing(m, 0.75).tolist() == [1, 2]
    # End to end: a big blob in one window, a small neuron inside it in another, centres > 4 um apart.
    maps = np.zeros((2, *SHAPE))
    maps[0][disk(30, 30, 8)] = 0.9
    maps[1][disk(30, 35, 3)] = 0.9
    out = postprocess(maps, cfg(min_area=10, avg_area_um2=1000.0))
    assert out.n == 1
    assert out.areas[0] == disk(30, 35, 3).sum()


def test_mutually_covering_masks_keep_the_smaller():
    a = disk(30, 30, 6)
    b = a.copy()
    b[30, 36] = False  # nearly identical, one px smaller
    m = Masks.from_dense(np.stack([a, b]))
    assert remove_encompassing(m, 0.75).tolist() == [1]


def test_split_pieces_8_connected():
    img = np.zeros(SHAPE, bool)
    img[5:10, 5:10] = True  # 25 px
    img[10, 10] = True  # diagonal neighbour: same 8-connected piece
    img[30:33, 30:33] = True  # 9 px, separate
    out = split_pieces(Masks.from_dense(img[None]), min_area=8)
    assert sorted(out.areas.tolist()) == [9, 26]
    assert split_pieces(Masks.from_dense(img[None]), min_area=9).n == 1


def test_empty_and_bad_input():
    assert postprocess(np.zeros((2, *SHAPE)), cfg()).n == 0
    with pytest.raises(InputError):
        postprocess(np.full(SHAPE, np.nan), cfg())
    with pytest.raises(InputError):
        postprocess(np.zeros((2, 2, 3, 3)), cfg())
    with pytest.raises(InputError):
        PostprocessConfig(threshold=1.5)


def test_for_pixel_size_scales_min_area():
    c = PostprocessConfig.for_pixel_size(1.56, min_area_at_abo=80)
    assert c.min_area == pytest.approx(20.0)
    assert c.avg_area_px == pytest.approx(107.5 / 1.56**2)
