import numpy as np
import pytest

from datasets.errors import InputError
from datasets.masks import Masks
from tests.conftest import disk_masks


def test_dense_roundtrip_and_properties():
    stack = np.zeros((2, 6, 7), bool)
    stack[0, 1:3, 1:4] = True  # 6 px, centre (1.5, 2)
    stack[1, 4, 5] = True
    m = Masks.from_dense(stack)
    assert m.n == len(m) == 2 and m.shape == (6, 7)
    np.testing.assert_array_equal(m.areas, [6, 1])
    np.testing.assert_allclose(m.centroids, [[1.5, 2.0], [4.0, 5.0]])
    np.testing.assert_array_equal(m.to_dense(), stack)
    r, c = m.coordinates(1)
    assert (r.tolist(), c.tolist()) == ([4], [5])


def test_from_dense_accepts_float_01_and_rejects_other_values():
    assert Masks.from_dense(np.ones((1, 3, 3))).areas.tolist() == [9]
    with pytest.raises(InputError, match="binary"):
        Masks.from_dense(np.full((1, 3, 3), 0.5))
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        Masks.from_dense(np.zeros((1, 1, 3, 3)))


def test_label_image_roundtrip_skips_gaps():
    labels = np.zeros((5, 5), int)
    labels[0, 0] = 3
    labels[4, 4] = 7
    m = Masks.from_label_image(labels)
    assert m.n == 2
    np.testing.assert_array_equal(m.to_label_image(), np.where(labels == 3, 1, np.where(labels == 7, 2, 0)))
    with pytest.raises(InputError, match="negative"):
        Masks.from_label_image(-labels)


def test_from_coordinates_rejects_pixels_outside_the_frame():
    m = Masks.from_coordinates([([0, 1], [2, 2]), ([], [])], (3, 3))
    assert m.areas.tolist() == [2, 0]
    with pytest.raises(InputError, match="outside the 3x3 frame"):
        Masks.from_coordinates([([0, 3], [0, 0])], (3, 3))


def test_transpose_crop_subset_union():
    m = disk_masks([(3, 5), (8, 2)], 2, (12, 10))
    t = m.transpose()
    assert t.shape == (10, 12)
    np.testing.assert_array_equal(t.to_dense(), m.to_dense().transpose(0, 2, 1))
    assert t.transpose() == m
    c = m.crop(slice(2, 10), slice(1, 9))
    np.testing.assert_array_equal(c.to_dense(), m.to_dense()[:, 2:10, 1:9])
    assert m.subset([1]).centroids.tolist() == [[8.0, 2.0]]
    np.testing.assert_array_equal(m.union(), m.to_dense().any(axis=0))


def test_iou_and_overlaps():
    a = disk_masks([(5, 5)], 3, (20, 20))
    b = disk_masks([(5, 5), (5, 6), (15, 15)], 3, (20, 20))
    iou = a.iou(b)
    assert iou.shape == (1, 3)
    assert iou[0, 0] == 1.0 and 0 < iou[0, 1] < 1 and iou[0, 2] == 0
    i, j, inter = a.overlaps(b)
    assert j.tolist() == [0, 1] and inter[0] == a.areas[0]
    with pytest.raises(InputError, match="frame"):
        a.iou(disk_masks([(5, 5)], 3, (20, 21)))


def test_save_load_exact(tmp_path):
    m = disk_masks([(3, 3), (4, 4)], 2, (9, 11))
    p = m.save(tmp_path / "m.npz")
    assert Masks.load(p) == m
    e = Masks.empty((4, 5))
    assert Masks.load(e.save(tmp_path / "e.npz")) == e
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="not a masks file"):
        Masks.load(tmp_path / "other.npz")
