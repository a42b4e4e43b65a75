"""Referring descriptions of the synthetic rooms' objects, in ScanRefer's JSON field names.

Each description names its target by class or synonym, with attributes (colour, size) and spatial relations to
other objects: on, next to, between, left / right of (seen from the room's door), closest to, largest / smallest.
A description of an object whose class occurs more than once in the room ("multiple") is kept only when it picks
out that object among the others of its class, as ScanRefer's annotators were asked to write; "unique" targets
need no such check.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ov3d_ros.data.synthetic.categories import CATEGORIES, Placement
from ov3d_ros.data.synthetic.layout import SceneObject, SyntheticScene

COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 236), "black": (30, 30, 32), "grey": (128, 128, 128), "light grey": (195, 195, 195),
    "dark grey": (70, 70, 74), "red": (195, 45, 40), "blue": (45, 95, 195), "green": (55, 130, 60),
    "yellow": (235, 200, 45), "orange": (225, 120, 35), "purple": (135, 65, 155), "pink": (215, 150, 170),
    "brown": (125, 85, 50), "beige": (215, 195, 160), "tan": (185, 145, 105),
}
NEXT_TO_GAP_M = 0.5        # surfaces at most this far apart are "next to" each other
SIDE_MARGIN_M = 0.25       # left / right needs at least this lateral offset
SIZE_MARGIN = 1.25         # "largest" needs 25 % more volume than the runner-up


@dataclass(frozen=True)
class Description:
    """One referring expression; the first six fields are ScanRefer's."""

    scene_id: str
    object_id: int
    object_name: str
    ann_id: int
    description: str
    token: list[str]
    eval_type: str               # "unique" or "multiple"
    relation: str                # attribute, on, next_to, between, side, closest, extreme
    anchor_ids: list[int]

    def to_json(self) -> dict:
        return asdict(self)


def colour_name(rgb: np.ndarray) -> str:
    """The nearest basic colour name of an RGB triple."""
    names = list(COLOUR_NAMES)
    table = np.array([COLOUR_NAMES[n] for n in names], dtype=np.float64)
    return names[int(np.argmin(((table - np.asarray(rgb, dtype=np.float64)) ** 2).sum(1)))]


def tokenize(text: str) -> list[str]:
    """Lower-case word and punctuation tokens, as ScanRefer's `token` field."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


class _Room:
    """Geometry the relations need: object centres, footprints, the door's view direction."""

    def __init__(self, scene: SyntheticScene, present: set[int] | None) -> None:
        self.objects = [o for o in scene.objects if CATEGORIES[o.class_index].placement != Placement.STRUCTURE
                        and (present is None or o.instance_id in present)]
        self.by_id = {o.instance_id: o for o in scene.objects}
        door = scene.room.door
        forward = np.asarray(door.normal[:2], dtype=np.float64)
        self.forward = forward / np.linalg.norm(forward)
        self.right = np.array([self.forward[1], -self.forward[0]])   # forward x up, seen from the door

    def same_class(self, obj: SceneObject) -> list[SceneObject]:
        return [o for o in self.objects if o.class_index == obj.class_index]

    @staticmethod
    def gap(a: SceneObject, b: SceneObject) -> float:
        """Distance between the two boxes' footprints, approximated by their bounding circles."""
        distance = np.linalg.norm(a.box.centre[:2] - b.box.centre[:2])
        return float(distance - _radius(a) - _radius(b))

    def side(self, target: SceneObject, anchor: SceneObject) -> str | None:
        offset = float((target.box.centre[:2] - anchor.box.centre[:2]) @ self.right)
        if abs(offset) < SIDE_MARGIN_M:
            return None
        return "right" if offset > 0 else "left"


def _radius(obj: SceneObject) -> float:
    return 0.5 * float(np.hypot(obj.box.size[0], obj.box.size[1]))


def _volume(obj: SceneObject) -> float:
    return float(np.prod(obj.box.size))


def _between(target: SceneObject, a: SceneObject, b: SceneObject) -> bool:
    p, q, x = a.box.centre[:2], b.box.centre[:2], target.box.centre[:2]
    segment = q - p
    length2 = float(segment @ segment)
    if length2 < 1e-6:
        return False
    t = float((x - p) @ segment) / length2
    off = float(np.linalg.norm(p + t * segment - x))
    return 0.2 < t < 0.8 and off < max(0.4, _radius(target))


class _Writer:
    """Builds candidate phrases for one target; `unique_among` keeps those that single it out."""

    def __init__(self, room: _Room, rng: np.random.Generator) -> None:
        self.room = room
        self.rng = rng

    def name(self, obj: SceneObject) -> str:
        names = CATEGORIES[obj.class_index].names
        return names[0] if self.rng.random() < 0.6 else str(self.rng.choice(names[1:]))

    def candidates(self, target: SceneObject) -> list[tuple[str, str, list[int], Callable[[SceneObject], bool]]]:
        """(relation, phrase after the target's name, anchor ids, predicate that must hold only for the target)."""
        room, out = self.room, []
        colour = colour_name(target.color)
        out.append(("attribute", f"{colour}", [], lambda o, c=colour: colour_name(o.color) == c))
        support = room.by_id.get(target.support_id)
        if support is not None and support in room.objects:
            out.append(("on", f"on the {self.name(support)}", [support.instance_id],
                        lambda o, s=support.instance_id: o.support_id == s))
        others = [o for o in room.objects if o.instance_id != target.instance_id and o.class_index != target.class_index]
        near = sorted(others, key=lambda o: room.gap(target, o))
        if near and room.gap(target, near[0]) < NEXT_TO_GAP_M:
            anchor = near[0]
            out.append(("next_to", f"next to the {self.name(anchor)}", [anchor.instance_id],
                        lambda o, a=anchor: room.gap(o, a) < NEXT_TO_GAP_M))
            side = room.side(target, anchor)
            if side is not None:
                out.append(("side", f"to the {side} of the {self.name(anchor)} as you come in through the door",
                            [anchor.instance_id], lambda o, a=anchor, s=side: room.side(o, a) == s
                            and room.gap(o, a) < 2 * NEXT_TO_GAP_M))
        for i, a in enumerate(near[:4]):
            for b in near[i + 1:5]:
                if a.class_index != b.class_index and _between(target, a, b):
                    out.append(("between", f"between the {self.name(a)} and the {self.name(b)}",
                                [a.instance_id, b.instance_id], lambda o, a=a, b=b: _between(o, a, b)))
        peers = room.same_class(target)
        if len(peers) > 1:
            if near:
                anchor = near[0]
                closest = min(peers, key=lambda o: room.gap(o, anchor))
                if closest is target:
                    out.append(("closest", f"closest to the {self.name(anchor)}", [anchor.instance_id],
                                lambda o, t=target: o is t))
            volumes = sorted((_volume(o), o.instance_id) for o in peers)
            if volumes[-1][1] == target.instance_id and volumes[-1][0] > SIZE_MARGIN * volumes[-2][0]:
                out.append(("extreme", "largest", [], lambda o, t=target: o is t))
            if volumes[0][1] == target.instance_id and volumes[1][0] > SIZE_MARGIN * volumes[0][0]:
                out.append(("extreme", "smallest", [], lambda o, t=target: o is t))
        return out


def _sentence(relation: str, phrase: str, name: str, rng: np.random.Generator) -> str:
    if relation == "attribute":
        templates = ("the {p} {n}.", "a {p} {n} in the room.", "this is the {p} {n}.")
    elif relation == "extreme":
        templates = ("the {p} {n} in the room.", "it is the {p} of the {n}s.", "find the {p} {n}.")
    else:
        templates = ("the {n} {p}.", "this is the {n} {p}.", "there is a {n} {p}.", "the {n} that is {p}.")
    return str(rng.choice(templates)).format(p=phrase, n=name)


def describe_scene(scene: SyntheticScene, rng: np.random.Generator, per_object: int = 3,
                   present: set[int] | None = None) -> list[Description]:
    """Up to `per_object` descriptions for every non-structure object, discriminative for "multiple" targets.

    With `present`, only those instances (the ones a scan observed) are targets, anchors or same-class peers.
    """
    room = _Room(scene, present)
    writer = _Writer(room, rng)
    descriptions: list[Description] = []
    for target in room.objects:
        peers = room.same_class(target)
        eval_type = "unique" if len(peers) == 1 else "multiple"
        usable = [c for c in writer.candidates(target)
                  if eval_type == "unique" or [o for o in peers if c[3](o)] == [target]]
        order = rng.permutation(len(usable))[:per_object]
        for ann_id, k in enumerate(order):
            relation, phrase, anchors, _ = usable[int(k)]
            text = _sentence(relation, phrase, writer.name(target), rng)
            descriptions.append(Description(scene.scene_id, target.instance_id, target.name, ann_id, text,
                                            tokenize(text), eval_type, relation, anchors))
    return descriptions
