"""Explicit spatial relations: how well each object of a map satisfies a query's relations, from box geometry.

`relation_scores` gives every object a score in [0, 1] (1: satisfies every relation of the query; the product of
the per-relation scores). Which objects are of the target class is not its concern (the engine's class terms are),
except where a relation compares the target with the others of its class (superlatives, closest / farthest): there
the caller's per-object target weights say who the others are.

Conventions (i is the scored object, j an anchor, both boxes rotated about z):
- View frame: `door_view`: the viewer stands in the map's door and looks along its normal into the room, as the
  synthetic descriptions' "as you come in through the door" does (descriptions.py derives right from the door's
  normal the same way). `lateral` = (c_i - c_j) . right, `depth` = (c_i - c_j) . forward.
- left / right: i's centre at least about SIDE_MARGIN_M / 2 to the viewer's left (lateral < 0) / right (lateral > 0)
  of j's, and i near j (surface gap under about 2 x NEXT_TO_GAP_M, as the descriptions' side phrases require).
- in front of / behind: the same along the view direction: in front of j is between the viewer and j (depth < 0),
  behind is beyond it (depth > 0). Viewer-centred, since a box's yaw does not tell which way an object faces.
- next to (near, beside, by, ...): the distance between the box surfaces (see `relation_geometry`) under about
  NEXT_TO_GAP_M.
- on: the footprints overlap (one centre inside the other's footprint) and i's bottom lies above the lowest 30 %
  of j (a mattress or a shelf board sits below a box's top) and at most ON_TOLERANCE_M above j's top.
- above: the footprints overlap and i's bottom is at or above j's top. under / below: the footprints overlap and
  i's top is below j's top (under a table, a window, a lamp).
- between a and b: i's centre projects inside the segment between an a and a b (away from its ends) and lies
  close to it, relative to i's size. "between the chairs" (one anchor class) takes pairs of that class.
- closest to / farthest from an anchor: the chance that no other object of the target class is closer to (farther
  from) that anchor, by surface distance plus CENTRE_SHARE of the centre distance (which orders the objects that
  touch or stand on the anchor); without an anchor, the distance from the viewer.
- largest / smallest (volume), tallest / shortest (height): the chance that no other object of the target class
  is larger (smaller, ...), on log sizes.

Anchors are soft: an object's weight as the anchor of a mention comes from its probability of the mention's class
(relative to the likeliest anchor, sharpened by ANCHOR_SHARPNESS), never the scored object itself. A relation holds
as well as it does for its best weighted anchor; when no object looks much like the anchor class (probability
below ANCHOR_SURE), the relation counts for correspondingly less. `apply_relations` turns the scores into factors
on a ranker's scores that reorder the target class's objects and never lift another class's.
Every threshold is a logistic step, so scores are smooth in the geometry and rank near misses above far ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ov3d_ros.grounding.objects import SceneObjects, ViewFrame, view_frame
from ov3d_ros.grounding.query import ParsedQuery, Relation

NEXT_TO_GAP_M = 0.5       # the synthetic descriptions' thresholds (data/synthetic/descriptions.py)
SIDE_MARGIN_M = 0.25
SIZE_MARGIN = 1.25
ANCHOR_SURE = 0.5          # an object this likely of the anchor class makes the anchor surely present
ANCHOR_SHARPNESS = 4.0     # anchors count by (their class probability / the best anchor's) ** this
PEER_SURE = 0.5            # an object with this share of the best target weight is surely the target's peer
MAX_ANCHORS = 6            # anchors per mention for the three-way (between) and ranking (closest) relations
STEP_M = 0.05              # width of the logistic steps on heights and footprints, metres
FOOTPRINT_SLACK_M = 0.1    # footprints "overlap" up to this far outside each other
ON_TOLERANCE_M = 0.15      # "on": i's bottom at most this far above j's top
DISTANCE_STEP_M = 0.1      # width of the ranking steps on distances (closest / farthest)
CENTRE_SHARE = 0.3         # closest / farthest: surface distance plus this share of the centre distance
SIZE_STEP = np.log(SIZE_MARGIN) / 4   # width of the ranking steps on log sizes (superlatives)
DOOR_THINNESS = 0.5        # a door box whose footprint is at most this much as deep as wide shows its normal
RELATION_FLOOR = 1e-4      # the smallest factor a relation multiplies an object's score by in `apply_relations`

EXTREME_KINDS = ("largest", "smallest", "tallest", "shortest")
PAIR_KINDS = ("left", "right", "front", "behind", "next_to", "on", "above", "below")
RANK_KINDS = ("closest", "farthest")


@dataclass(frozen=True, eq=False)
class RelationGeometry:
    """Pairwise geometry of a map's objects, once per map; [i, j] is object i relative to object j (metres)."""

    lateral: np.ndarray        # (P, P) (c_i - c_j) . right of the view frame
    depth: np.ndarray          # (P, P) (c_i - c_j) . forward
    gap: np.ndarray            # (P, P) distance between the box surfaces (negative: they overlap)
    overlap: np.ndarray        # (P, P) symmetric: how far one centre lies inside the other's footprint
    bottoms: np.ndarray        # (P,)
    tops: np.ndarray           # (P,)
    centres: np.ndarray        # (P, 2) footprint centres
    radii: np.ndarray          # (P,) footprint bounding-circle radii
    log_volumes: np.ndarray    # (P,)
    log_heights: np.ndarray    # (P,)
    viewer_distance: np.ndarray  # (P,) from the viewer to each footprint's bounding circle

    def __len__(self) -> int:
        return len(self.bottoms)


def door_view(objects: SceneObjects, door_label: int | None) -> ViewFrame:
    """The viewer of `view_frame` (in the largest door), looking along the door's normal into the room: the door
    box's thin floor axis, turned towards the objects. The descriptions' "as you come in through the door" looks
    that way; the line from the door to the objects' centroid can be tens of degrees off it. Falls back to
    `view_frame` without a door or when the door's footprint is not clearly thinner one way than the other."""
    view = view_frame(objects, door_label)
    doors = np.flatnonzero(objects.labels == door_label) if door_label is not None else np.zeros(0, np.int64)
    if not len(doors):
        return view
    door = doors[np.argmax(objects.counts[doors])]
    width, depth = objects.sizes[door, :2]
    if min(width, depth) > DOOR_THINNESS * max(width, depth):
        return view
    yaw = objects.yaws[door] + (np.pi / 2 if width > depth else 0.0)
    normal = np.array([np.cos(yaw), np.sin(yaw)])
    return ViewFrame(view.origin, normal if normal @ view.forward >= 0 else -normal)


def relation_geometry(objects: SceneObjects, view: ViewFrame) -> RelationGeometry:
    """The pairwise geometry of `objects` seen from `view`. The footprint gap of two boxes is the larger of the
    distances from each to the other's bounding rectangle in its own frame (exact for boxes turned alike, at most
    a few centimetres short otherwise; negative, the overlap, when they overlap); the vertical gap joins it as
    the sides of a right angle."""
    centres = objects.centres[:, :2].astype(np.float64)
    sizes = np.maximum(objects.sizes.astype(np.float64), 1e-3)
    cos, sin = np.cos(objects.yaws), np.sin(objects.yaws)
    half_x, half_y = sizes[:, 0] / 2, sizes[:, 1] / 2
    offset = centres[:, None, :] - centres[None, :, :]                 # [i, j] = c_i - c_j
    dx, dy = offset[..., 0], offset[..., 1]
    on_x = np.abs(dx * cos[None, :] + dy * sin[None, :])               # |c_i - c_j| along j's own axes
    on_y = np.abs(-dx * sin[None, :] + dy * cos[None, :])
    turn = objects.yaws[None, :] - objects.yaws[:, None]
    same, cross = np.abs(np.cos(turn)), np.abs(np.sin(turn))           # |u_i . u_j|, |u_i . v_j|
    reach_x = half_x[:, None] * same + half_y[:, None] * cross         # i's half extent along j's axes
    reach_y = half_x[:, None] * cross + half_y[:, None] * same
    gap_x, gap_y = on_x - half_x[None, :] - reach_x, on_y - half_y[None, :] - reach_y   # along j's axes
    from_j = np.where((gap_x > 0) | (gap_y > 0), np.hypot(np.maximum(gap_x, 0), np.maximum(gap_y, 0)),
                      np.maximum(gap_x, gap_y))                        # j to i's bounding box in j's frame
    flat = np.maximum(from_j, from_j.T)                                # and i to j's in i's
    inside = np.minimum(half_x[None, :] - on_x, half_y[None, :] - on_y)   # [i, j]: c_i inside j's footprint
    bottoms = objects.centres[:, 2] - sizes[:, 2] / 2
    tops = objects.centres[:, 2] + sizes[:, 2] / 2
    vertical = np.maximum(bottoms[:, None] - tops[None, :], bottoms[None, :] - tops[:, None])
    apart = np.hypot(np.maximum(flat, 0.0), np.maximum(vertical, 0.0))
    gap = np.where((flat > 0) | (vertical > 0), apart, np.maximum(flat, vertical))
    radii = 0.5 * np.hypot(sizes[:, 0], sizes[:, 1])
    return RelationGeometry(lateral=offset @ view.right, depth=offset @ view.forward, gap=gap,
                            overlap=np.maximum(inside, inside.T), bottoms=bottoms, tops=tops, centres=centres,
                            radii=radii, log_volumes=np.log(sizes).sum(axis=1), log_heights=np.log(sizes[:, 2]),
                            viewer_distance=np.linalg.norm(centres - view.origin, axis=1) - radii)


def _step(x: np.ndarray, width: float) -> np.ndarray:
    """Logistic step: 0.5 at x = 0, about 0.98 at x = 4 x width."""
    return expit(np.asarray(x) / width)


def pair_kernel(kind: str, geometry: RelationGeometry) -> np.ndarray:
    """(P, P) how well object i stands in relation `kind` (one of PAIR_KINDS) to object j, in [0, 1]."""
    g = geometry
    near = _step(2 * NEXT_TO_GAP_M - g.gap, 0.15)
    if kind in ("left", "right", "front", "behind"):
        offset = g.lateral if kind in ("left", "right") else g.depth
        sign = -1.0 if kind in ("left", "front") else 1.0
        return _step(sign * offset - SIDE_MARGIN_M / 2, 0.05) * near
    if kind == "next_to":
        return _step(NEXT_TO_GAP_M - g.gap, 0.1)
    footprint = _step(g.overlap + FOOTPRINT_SLACK_M, STEP_M)
    bottom, top = g.bottoms[:, None], g.tops[None, :]
    if kind == "on":
        floor_j = g.bottoms[None, :] + 0.3 * (g.tops - g.bottoms)[None, :]
        return footprint * _step(bottom - floor_j, STEP_M) * _step(top + ON_TOLERANCE_M - bottom, STEP_M)
    if kind == "above":
        return footprint * _step(bottom - top + STEP_M, STEP_M)
    if kind == "below":
        return footprint * _step(top - g.tops[:, None] - STEP_M, STEP_M)
    raise ValueError(f"not a pairwise relation: {kind!r}")


def anchor_weights(objects: SceneObjects, label: int) -> np.ndarray:
    """(P,) each object's weight as an anchor of class `label`: its probability of that class."""
    return objects.distributions[:, label].astype(np.float64)


def _presence(weights: np.ndarray) -> tuple[float, np.ndarray]:
    """How surely the anchor class is in the map, and the anchors' weights: relative to the best anchor, to the
    power ANCHOR_SHARPNESS (an object half as likely of the class as the best one counts 1/16)."""
    best = float(weights.max()) if len(weights) else 0.0
    if best <= 0.0:
        return 0.0, np.zeros_like(weights)
    return min(best / ANCHOR_SURE, 1.0), (weights / best) ** ANCHOR_SHARPNESS


def _anchored(kernel: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(P,) the relation held to the best weighted anchor (never the object itself), softened by presence."""
    presence, relative = _presence(weights)
    weighted = kernel * relative[None, :]
    np.fill_diagonal(weighted, 0.0)
    return 1.0 - presence + presence * weighted.max(axis=1)


def _strongest(weights: np.ndarray) -> np.ndarray:
    """Indices of the MAX_ANCHORS heaviest anchors (ties: lower index first)."""
    return np.lexsort((np.arange(len(weights)), -weights))[:MAX_ANCHORS]


def _between(geometry: RelationGeometry, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(P,) how well each object lies between an anchor of `first` weights and one of `second` weights."""
    count = len(geometry)
    presence_a, relative_a = _presence(first)
    presence_b, relative_b = _presence(second)
    best = np.zeros(count)
    x = geometry.centres
    for j in _strongest(first):
        for k in _strongest(second):
            segment = geometry.centres[k] - geometry.centres[j]
            length2 = float(segment @ segment)
            if j == k or length2 < 1e-4:
                continue
            t = (x - geometry.centres[j]) @ segment / length2
            off = np.abs((x - geometry.centres[j]) @ np.array([segment[1], -segment[0]])) / np.sqrt(length2)
            reach = np.maximum(0.4, geometry.radii)
            score = _step(t - 0.15, 0.04) * _step(0.85 - t, 0.04) * _step(reach - off, 0.1)
            score[[j, k]] = 0.0
            best = np.maximum(best, relative_a[j] * relative_b[k] * score)
    presence = presence_a * presence_b
    return 1.0 - presence + presence * best


def _rank(values: np.ndarray, peers: np.ndarray, width: float, exclude: int | None = None) -> np.ndarray:
    """(P,) the chance that no peer (weights (P,), the object itself excluded) has a larger value."""
    beaten = peers[None, :] * _step(values[None, :] - values[:, None], width)
    np.fill_diagonal(beaten, 0.0)
    if exclude is not None:
        beaten[:, exclude] = 0.0
    return np.prod(1.0 - beaten, axis=1)


def _closest(geometry: RelationGeometry, peers: np.ndarray, weights: np.ndarray | None, farthest: bool) -> np.ndarray:
    """(P,) closest to (farthest from) the best weighted anchor among the peers; the viewer without an anchor."""
    sign = 1.0 if farthest else -1.0
    if weights is None:
        return _rank(sign * geometry.viewer_distance, peers, DISTANCE_STEP_M)
    presence, relative = _presence(weights)
    best = np.zeros(len(geometry))
    for j in _strongest(weights):
        distance = geometry.gap[:, j] + CENTRE_SHARE * np.linalg.norm(geometry.centres - geometry.centres[j], axis=1)
        score = _rank(sign * distance, peers, DISTANCE_STEP_M, exclude=int(j))
        score[j] = 0.0
        best = np.maximum(best, relative[j] * score)
    return 1.0 - presence + presence * best


def _extreme(kind: str, geometry: RelationGeometry, peers: np.ndarray) -> np.ndarray:
    """(P,) the chance that no peer is larger (smaller, taller, shorter)."""
    values = geometry.log_volumes if kind in ("largest", "smallest") else geometry.log_heights
    return _rank(values if kind in ("largest", "tallest") else -values, peers, SIZE_STEP)


def relation_score(relation: Relation, objects: SceneObjects, geometry: RelationGeometry,
                   peers: np.ndarray) -> np.ndarray:
    """(P,) how well each object satisfies one relation; `peers` (P,) in [0, 1]: how much each object is of the
    target class (the others a superlative or closest / farthest compares with)."""
    weights = [anchor_weights(objects, a.label) for a in relation.anchors]
    if relation.kind in EXTREME_KINDS:
        return _extreme(relation.kind, geometry, peers)
    if relation.kind in RANK_KINDS:
        return _closest(geometry, peers, weights[0] if weights else None, relation.kind == "farthest")
    if relation.kind not in PAIR_KINDS and relation.kind != "between":
        raise ValueError(f"unknown relation kind {relation.kind!r}")
    if not weights:                        # the parser keeps these only with an anchor
        return np.ones(len(objects))
    if relation.kind == "between":
        return _between(geometry, weights[0], weights[-1])
    return _anchored(pair_kernel(relation.kind, geometry), weights[0])


def _relative(weights: np.ndarray) -> np.ndarray:
    """Non-negative weights scaled to a maximum of 1."""
    weights = np.clip(np.asarray(weights, np.float64), 0.0, None)
    best = float(weights.max()) if len(weights) else 0.0
    return weights / best if best > 0 else weights


def relation_scores(query: ParsedQuery, objects: SceneObjects, geometry: RelationGeometry,
                    target_weights: np.ndarray) -> np.ndarray:
    """(P,) in [0, 1]: the product over the query's relations of each object's score. `target_weights` (P,) is how
    much each object is of the target class (e.g. the coarse stage's class similarity): an object with at least
    PEER_SURE of the largest counts fully among the target's peers, one with less in proportion."""
    peers = np.minimum(_relative(target_weights) / PEER_SURE, 1.0)
    scores = np.ones(len(objects))
    for relation in query.relations:
        scores = scores * relation_score(relation, objects, geometry, peers)
    return np.clip(scores, 0.0, 1.0)


def apply_relations(scores: np.ndarray, relations: np.ndarray, target_weights: np.ndarray) -> np.ndarray:
    """(P,) `scores` times a factor from the relation scores that can reorder the target class's objects but
    never lifts another class. An object with under PEER_SURE of the largest target weight is of another class:
    its factor is the lowest relation score in the map, so it can only fall behind the target's class. Above
    that, an object's factor moves linearly to its own relation score, reached at the largest target weight.
    Factors are floored at RELATION_FLOOR."""
    share = np.clip((_relative(target_weights) - PEER_SURE) / (1.0 - PEER_SURE), 0.0, 1.0)
    gated = share * relations + (1.0 - share) * float(relations.min())
    return scores * (RELATION_FLOOR + (1.0 - RELATION_FLOOR) * gated)
