import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.metrics import match, neurofinder_combined
from datasets.errors import InputError
from datasets.masks import Masks
from tests.conftest import disk_masks

SHAPE = (12, 12)


@st.composite
def mask_sets(draw, max_n=5):
    """Small sets of rectangles on a 12x12 frame: overlaps, containment, duplicates and empties all occur."""
    n = draw(st.integers(0, max_n))
    stack = np.zeros((n, *SHAPE), bool)
    for k in range(n):
        r0 = draw(st.integers(0, 10))
        c0 = draw(st.integers(0, 10))
        h = draw(st.integers(0, 5))  # 0: an empty mask
        w = draw(st.integers(1, 5))
        stack[k, r0 : r0 + h, c0 : c0 + w] = True
    return Masks.from_dense(stack)


def brute_force(gt: Masks, pred: Masks, thr: float, rule: str):
    """Largest set of admissible disjoint pairs; ties broken by the smallest summed distance."""
    a, b = gt.to_dense(), pred.to_dense()
    cost = {}
    for i in range(gt.n):
        for j in range(pred.n):
            inter = np.logical_and(a[i], b[j]).sum()
            if inter == 0:
                continue
            union = np.logical_or(a[i], b[j]).sum()
            iou = inter / union
            if rule == "stnn" and (inter == a[i].sum() or inter == b[j].sum()):
                cost[i, j] = 0.0
            elif iou >= thr:
                cost[i, j] = 1 - iou
    best = (0, 0.0)
    pairs = list(cost)
    for k in range(min(gt.n, pred.n), 0, -1):
        found = None
        for combo in itertools.combinations(pairs, k):
            gi = [p[0] for p in combo]
            pj = [p[1] for p in combo]
            if len(set(gi)) == k and len(set(pj)) == k:
                total = sum(cost[p] for p in combo)
                found = total if found is None else min(found, total)
        if found is not None:
            best = (k, found)
            break
    return best


@settings(max_examples=150, deadline=None)
@given(gt=mask_sets(), pred=mask_sets(), rule=st.sampled_from(["stnn", "suns"]), thr=st.sampled_from([0.3, 0.5, 0.7]))
def test_hungarian_equals_brute_force(gt, pred, rule, thr):
    s = match(gt, pred, iou=thr, rule=rule)
    tp, total = brute_force(gt, pred, thr, rule)
    assert s.tp == tp
    costs = (
        np.where(
            [
                rule == "stnn" and (gt.areas[i] == inter or pred.areas[j] == inter)
                for i, j, inter in zip(
                    s.gt_index,
                    s.pred_index,
                    [
                        np.logical_and(gt.to_dense()[i], pred.to_dense()[j]).sum()
                        for i, j in zip(s.gt_index, s.pred_index)
                    ],
                )
            ],
            0.0,
            1 - s.pair_iou,
        )
        if s.tp
        else np.zeros(0)
    )
    assert costs.sum() == pytest.approx(total, abs=1e-9)
    assert s.fp == pred.n - tp and s.fn == gt.n - tp
    assert len(set(s.gt_index)) == s.tp == len(set(s.pred_index))


@settings(max_examples=100, deadline=None)
@given(gt=mask_sets(), pred=mask_sets(), rule=st.sampled_from(["stnn", "suns"]))
def test_swapping_gt_and_prediction_swaps_recall_and_precision(gt, pred, rule):
    a, b = match(gt, pred, rule=rule), match(pred, gt, rule=rule)
    assert a.tp == b.tp
    assert a.recall == pytest.approx(b.precision) and a.precision == pytest.approx(b.recall)
    assert a.f1 == pytest.approx(b.f1)
    for v in (a.recall, a.precision, a.f1):
        assert 0.0 <= v <= 1.0 and not np.isnan(v)


@settings(max_examples=50, deadline=None)
@given(m=mask_sets())
def test_identical_sets_match_every_nonempty_mask(m):
    s = match(m, m, rule="suns")
    assert s.tp == int((m.areas > 0).sum())


def test_empty_sets_give_zero_not_nan():
    e = Masks.empty(SHAPE)
    one = disk_masks([(5, 5)], 2, SHAPE)
    for gt, pred in ((e, e), (e, one), (one, e)):
        s = match(gt, pred)
        assert (s.tp, s.recall, s.precision, s.f1) == (0, 0.0, 0.0, 0.0)
    c = neurofinder_combined(e, one)
    assert (c.combined, c.inclusion, c.exclusion) == (0.0, 0.0, 1.0)


def test_containment_rule_and_threshold():
    big = disk_masks([(10, 10)], 6, (24, 24))
    small = disk_masks([(10, 10)], 2, (24, 24))  # inside big, IoU ~ 0.12
    assert match(big, small, rule="suns").tp == 0
    s = match(big, small, rule="stnn")
    assert s.tp == 1 and s.pair_iou[0] < 0.5
    assert s.options.rule == "stnn" and s.options.iou == 0.5


def test_iou_exactly_at_threshold_matches():
    a = np.zeros((1, 4, 4), bool)
    b = np.zeros((1, 4, 4), bool)
    a[0, 0, :2] = True
    b[0, 0, :1] = True
    b[0, 1, :1] = True  # intersection 1, union 3 -> 1/3
    a2 = np.zeros((1, 4, 4), bool)
    a2[0, 0, :2] = True
    b2 = np.zeros((1, 4, 4), bool)
    b2[0, 0, :1] = True  # contained; IoU 0.5 exactly
    assert match(Masks.from_dense(a2), Masks.from_dense(b2), rule="suns").tp == 1
    assert match(Masks.from_dense(a), Masks.from_dense(b), rule="suns").tp == 0


def test_centroid_gate():
    gt = disk_masks([(10, 10)], 5, (30, 30))
    pred = disk_masks([(10, 12)], 5, (30, 30))  # IoU ~0.6, centres 2 px apart
    assert match(gt, pred, rule="suns").tp == 1
    assert match(gt, pred, rule="suns", centroid_gate=1.5).tp == 0
    assert match(gt, pred, rule="suns", centroid_gate=2.5).tp == 1


def test_hungarian_prefers_more_matches_over_lower_cost():
    # GT 0 overlaps pred 0 best, but giving pred 0 to GT 1 lets both GT match.
    gt = Masks.from_coordinates([(np.r_[0, 0, 0, 0], np.r_[0, 1, 2, 3]), (np.r_[0, 0], np.r_[0, 1])], (2, 8))
    pred = Masks.from_coordinates([(np.r_[0, 0, 0], np.r_[0, 1, 2]), (np.r_[0, 0, 0, 0], np.r_[1, 2, 3, 4])], (2, 8))
    s = match(gt, pred, rule="suns")
    assert s.tp == 2


def test_options_are_validated():
    m = disk_masks([(5, 5)], 2, SHAPE)
    with pytest.raises(InputError, match="IoU threshold"):
        match(m, m, iou=0)
    with pytest.raises(InputError, match="rule"):
        match(m, m, rule="other")
    with pytest.raises(InputError, match="frame"):
        match(m, disk_masks([(5, 5)], 2, (12, 13)))


def test_neurofinder_combined_greedy_in_gt_order():
    gt = disk_masks([(10, 10), (10, 14)], 2, (30, 30))
    # One detection between the two GT centres: the first GT takes it.
    pred = disk_masks([(10, 12)], 2, (30, 30))
    c = neurofinder_combined(gt, pred, threshold_px=5)
    assert (c.recall, c.precision) == (0.5, 1.0)
    assert c.combined == pytest.approx(2 / 3)
    inter = np.logical_and(gt.to_dense()[0], pred.to_dense()[0]).sum()
    assert c.inclusion == pytest.approx(inter / gt.areas[0])
    assert c.exclusion == pytest.approx(inter / pred.areas[0])
    # Strictly closer than the threshold: a distance of exactly 2 px does not count at 2 px.
    assert neurofinder_combined(gt, pred, threshold_px=2).combined == 0.0
