"""Incremental fusion of per-window masks into neurons, for streaming STNeuroNet.

Batch post-processing (:func:`stnn.postprocess.finalize`) links masks of
*different* windows whose centres of mass are closer than the fusion radius,
takes the connected groups of that graph, keeps per group the member whose
area is closest to the group's mean area (ties: the earliest), then removes
encompassing masks and splits masks into pieces. :class:`IncrementalFusion`
does the same one window at a time:

* a new window's mask joins every existing group that has a member closer
  than the radius; a mask linked to several groups merges them (the smallest
  id survives); a mask linked to none starts a new group. Same-window masks
  are never linked directly, as in batch. The groups are therefore the
  connected components batch fusion would find on all windows seen so far;
* each group keeps its exact member count and area sum (so its mean area is
  exact), and at most ``max_members`` member masks. While no group has more
  members than that, the keeper and so the final masks are identical to
  :func:`~stnn.postprocess.finalize` on the same windows (a test checks it).
  Beyond it, the member whose area is farthest from the group's mean is
  forgotten (it is the least likely keeper, and its centre is within the
  radius of the others), so memory is bounded by the number of groups, which
  the field of view bounds, never by the number of windows;
* after each window the current neurons are: keepers in batch order (window,
  then label), encompassing masks removed, pieces split
  (:func:`~stnn.postprocess.remove_encompassing`,
  :func:`~stnn.postprocess.split_pieces`). Comparing them with the previous
  window's gives the updates: ``new``, ``grown``, ``shrunk``, ``merged``
  (groups joined; ``merged_ids`` are gone) and ``removed`` (a keeper that now
  encompasses another neuron, or whose pieces all fell below the minimum area).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from datasets.masks import Masks

from .postprocess import remove_encompassing, split_pieces

__all__ = ["Update", "IncrementalFusion"]

logger = logging.getLogger(__name__)


@dataclass
class Update:
    """One change to the set of neurons, emitted after a window.

    Attributes
    ----------
    kind : str
        ``new``, ``grown``, ``shrunk``, ``merged`` or ``removed``.
    neuron_id : int
        Stable id of the neuron (a fusion group).
    window : int
        Index of the network window that caused it.
    t_s : float
        Seconds into the recording of the window's last frame.
    wall_time : float
        ``time.time()`` when the update was made.
    area : int
        Pixels of the neuron's mask now (0 for ``removed``).
    centroid : tuple of float
        (row, col) of the mask now (NaN for ``removed``).
    merged_ids : tuple of int
        For ``merged``: the ids absorbed into ``neuron_id`` (they are gone).
    mask : Masks or None
        The neuron's mask now (one or more pieces over the frame); None for
        ``removed``.
    """

    kind: str
    neuron_id: int
    window: int
    t_s: float
    wall_time: float
    area: int = 0
    centroid: tuple[float, float] = (float("nan"), float("nan"))
    merged_ids: tuple[int, ...] = ()
    mask: Masks | None = None


@dataclass
class _Member:
    key: tuple[int, int]  # (window, index in the window): the batch order
    row: sp.csr_matrix  # 1 x (H*W)
    area: int
    centroid: np.ndarray


@dataclass
class _Group:
    id: int
    members: list[_Member] = field(default_factory=list)
    count: int = 0
    area_sum: float = 0.0

    def add(self, m: _Member) -> None:
        self.members.append(m)
        self.count += 1
        self.area_sum += m.area

    def absorb(self, other: _Group) -> None:
        self.members.extend(other.members)
        self.count += other.count
        self.area_sum += other.area_sum

    def keeper(self) -> _Member:
        """The member whose area is closest to the group's mean area (ties: earliest)."""
        mean = self.area_sum / self.count
        return min(self.members, key=lambda m: (abs(m.area - mean), m.key))

    def bound(self, max_members: int) -> int:
        """Forget the members farthest from the mean area beyond ``max_members``; returns how many."""
        extra = len(self.members) - max_members
        if extra <= 0:
            return 0
        mean = self.area_sum / self.count
        keep = self.keeper()
        order = sorted((m for m in self.members if m is not keep), key=lambda m: (-abs(m.area - mean), m.key))
        drop = {id(m) for m in order[:extra]}
        self.members = [m for m in self.members if id(m) not in drop]
        return extra


class IncrementalFusion:
    """Fuse masks window by window (see the module docstring).

    Parameters
    ----------
    shape : (int, int)
        Frame of the masks.
    merge_px : float
        Fusion radius in px (strict ``<``).
    encompass_ratio : float
        ``theta_p`` of :func:`~stnn.postprocess.remove_encompassing`.
    min_area : float
        Pieces need more than this many px (the caller filters each window's
        masks by the same area before :meth:`add_window`).
    max_members : int
        Member masks kept per group (memory bound).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        merge_px: float,
        encompass_ratio: float,
        min_area: float,
        max_members: int = 32,
    ) -> None:
        if max_members < 1:
            raise ValueError(f"max_members must be >= 1, got {max_members}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.merge_px = float(merge_px)
        self.encompass_ratio = float(encompass_ratio)
        self.min_area = float(min_area)
        self.max_members = int(max_members)
        self.groups: dict[int, _Group] = {}
        self.forgotten = 0
        self._next_id = 0
        self._visible: dict[int, Masks] = {}
        self._masks = Masks.empty(self.shape)

    @property
    def masks(self) -> Masks:
        """The current neurons (as batch post-processing would give them)."""
        return self._masks

    @property
    def neuron_ids(self) -> list[int]:
        """Ids of the current neurons, in the order of their pieces in :attr:`masks`."""
        return list(self._visible)

    def add_window(self, masks: Masks, window: int, t_s: float, wall_time: float) -> list[Update]:
        """Fuse one window's masks (already area-filtered) and return the updates it causes."""
        if masks.shape != self.shape:
            raise ValueError(f"window masks are {masks.shape}, the stream's frame is {self.shape}")
        new = [
            _Member((int(window), k), masks.matrix[k], int(a), c)
            for k, (a, c) in enumerate(zip(masks.areas, masks.centroids))
        ]
        merged, survivor = self._link(new)
        return self._refresh(window, t_s, wall_time, merged, survivor)

    # -- linking ------------------------------------------------------------------------

    def _link(self, new: list[_Member]) -> tuple[dict[int, set[int]], dict[int, int]]:
        """Add ``new`` to groups; returns ({survivor: absorbed ids}, {absorbed id: survivor})."""
        old = [(g.id, m) for g in self.groups.values() for m in g.members]
        links: list[set[int]] = [set() for _ in new]
        if old and new and self.merge_px > 0:
            cent = np.array([m.centroid for _, m in old])
            tree = cKDTree(cent)
            for i, m in enumerate(new):
                for j in tree.query_ball_point(m.centroid, r=self.merge_px):
                    # Strict '<' as fuse_windows (the tree's ball is closed).
                    if np.linalg.norm(cent[j] - m.centroid) < self.merge_px:
                        links[i].add(old[j][0])
        merged: dict[int, set[int]] = {}
        alias: dict[int, int] = {}

        def find(gid: int) -> int:
            while gid in alias:
                gid = alias[gid]
            return gid

        for m, gids in zip(new, links):
            roots = sorted({find(g) for g in gids})
            if not roots:
                g = _Group(self._next_id)
                self._next_id += 1
                self.groups[g.id] = g
                g.add(m)
                continue
            keep = self.groups[roots[0]]
            for gid in roots[1:]:
                keep.absorb(self.groups.pop(gid))
                alias[gid] = keep.id
                merged.setdefault(keep.id, set()).update({gid} | merged.pop(gid, set()))
            keep.add(m)
        for g in self.groups.values():
            g.members.sort(key=lambda m: m.key)
            self.forgotten += g.bound(self.max_members)
        return merged, {gid: find(gid) for gid in alias}

    # -- current neurons and updates ----------------------------------------------------

    def _current(self) -> dict[int, Masks]:
        """{group id: pieces} of the current neurons, in batch order."""
        ids = sorted(self.groups, key=lambda gid: self.groups[gid].keeper().key)
        if not ids:
            return {}
        fused = Masks(sp.vstack([self.groups[gid].keeper().row for gid in ids], format="csr"), self.shape)
        visible: dict[int, Masks] = {}
        for i in remove_encompassing(fused, self.encompass_ratio):
            pieces = split_pieces(fused.subset([i]), self.min_area)
            if pieces.n:
                visible[ids[int(i)]] = pieces
        return visible

    def _refresh(
        self, window: int, t_s: float, wall: float, merged: dict[int, set[int]], survivor: dict[int, int]
    ) -> list[Update]:
        visible = self._current()
        updates: list[Update] = []

        def emit(kind: str, gid: int, mask: Masks | None = None, absorbed: tuple[int, ...] = ()) -> None:
            if mask is None:
                updates.append(Update(kind, gid, window, t_s, wall, merged_ids=absorbed))
                return
            r, c = np.nonzero(mask.union())
            centre = (float(r.mean()), float(c.mean()))
            updates.append(Update(kind, gid, window, t_s, wall, int(r.size), centre, absorbed, mask))

        for gid in self._visible:
            if gid in survivor:  # absorbed: reported by the survivor's 'merged' unless it is not visible
                if survivor[gid] not in visible:
                    emit("removed", gid)
            elif gid not in visible:
                emit("removed", gid)
        for gid, mask in visible.items():
            before = self._visible.get(gid)
            if gid in merged:
                emit("merged", gid, mask, tuple(sorted(merged[gid])))
            elif before is None:
                emit("new", gid, mask)
            elif before != mask:
                emit("grown" if mask.areas.sum() >= before.areas.sum() else "shrunk", gid, mask)
        self._visible = visible
        parts = [m.matrix for m in visible.values()]
        self._masks = Masks(sp.vstack(parts, format="csr"), self.shape) if parts else Masks.empty(self.shape)
        return updates
