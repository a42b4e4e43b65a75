"""Spatial-relation probes: small generated maps where only one relation tells the described object apart from the
others of its class, and the grounding engine's accuracy on them per relation.

A probe is a rectangular room of random size, orientation and position with a door on one wall (the viewpoint of
left / right, see `grounding.objects.view_frame`), the target, one or two distractors of the same class placed so
that the probed relation holds for the target only, the anchor object(s) and a few unrelated objects of other
classes. Objects are made directly as `SceneObjects` (boxes, noisy class distributions, features near their class's
text embedding); nothing is rendered. The sentence is worded as the synthetic descriptions word theirs
(`data/synthetic/descriptions.py`: "the chair to the left of the table as you come in through the door.", "it is
the largest of the chairs."), with the relation cue drawn from those the query parser knows. Left / right use the
descriptions' convention: seen from the door, looking in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ov3d_ros.data.synthetic.categories import CATEGORIES, CLASS_NAMES
from ov3d_ros.grounding.engine import EngineSettings, GroundingEngine, load_engine
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.grounding.query import QueryParser
from ov3d_ros.language.vocabulary import Vocabulary

RELATIONS = ("left", "right", "front", "behind", "between", "next_to", "on", "above", "below", "largest",
             "smallest", "tallest", "shortest", "closest", "farthest")
CUES: dict[str, tuple[str, ...]] = {
    "left": ("to the left of", "on the left of", "left of"), "right": ("to the right of", "on the right of",
                                                                       "right of"),
    "front": ("in front of",), "behind": ("behind",), "between": ("between",),
    "next_to": ("next to", "beside", "near", "close to", "by", "adjacent to"),
    "on": ("on", "on top of", "sitting on", "standing on"), "above": ("above", "over"),
    "below": ("under", "below", "beneath", "underneath"), "largest": ("largest", "biggest"),
    "smallest": ("smallest", "tiniest"), "tallest": ("tallest", "highest"), "shortest": ("shortest", "lowest"),
    "closest": ("closest to", "nearest to"), "farthest": ("farthest from", "furthest from"),
}
FROM_THE_DOOR = "as you come in through the door"
# the synthetic descriptions' sentence templates (descriptions._sentence)
TEMPLATES = ("the {n} {p}.", "this is the {n} {p}.", "there is a {n} {p}.", "the {n} that is {p}.")
EXTREME_TEMPLATES = ("the {p} {n} in the room.", "it is the {p} of the {n}.", "find the {p} {n}.")

FLOOR_TARGETS = ("chair", "stool", "trash can", "plant", "box", "office chair", "armchair", "nightstand", "cabinet",
                 "backpack", "bag", "otherfurniture")
FLOOR_ANCHORS = ("table", "desk", "sofa", "bed", "bookshelf", "dresser", "coffee table", "counter", "wardrobe",
                 "refrigerator", "shelf", "toilet", "bathtub")
SUPPORTS = ("table", "desk", "counter", "dresser", "nightstand", "coffee table", "cabinet")
SMALL_ITEMS = ("mug", "book", "lamp", "box", "laptop", "bowl", "vase", "bottle", "plant", "monitor", "keyboard",
               "printer", "microwave")
WALL_ITEMS = ("picture", "clock", "mirror", "whiteboard", "tv", "window")
AGAINST_WALL = ("sofa", "bed", "desk", "dresser", "cabinet", "counter", "radiator", "bookshelf", "shelf", "table")
LEGGED = ("table", "desk", "coffee table")
UNDER_ITEMS = ("box", "bag", "backpack", "trash can", "stool", "otherfurniture")
UNRELATED = ("chair", "table", "sofa", "cabinet", "bookshelf", "plant", "trash can", "armchair", "dresser", "desk",
             "stool", "box", "refrigerator", "wardrobe", "rug", "otherfurniture", "bed", "shelf")
DOOR_SIZE = np.array([0.9, 0.05, 2.05])


@dataclass(frozen=True, eq=False)
class Probe:
    """One probe: its relation, the sentence, the map's objects (over the synthetic world's classes) and the index
    of the object the sentence describes."""

    relation: str
    query: str
    objects: SceneObjects
    target: int


@dataclass
class _Box:
    """A box in the room's frame: x to the right of someone entering through the door, y into the room."""

    label: str
    centre: np.ndarray     # (3,)
    size: np.ndarray       # (3,)
    yaw: float = 0.0

    @property
    def radius(self) -> float:
        return 0.5 * float(np.hypot(self.size[0], self.size[1]))

    @property
    def top(self) -> float:
        return float(self.centre[2] + self.size[2] / 2)

    def half(self, axis: np.ndarray) -> float:
        """Half the box's extent along a unit floor direction."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return 0.5 * (self.size[0] * abs(axis @ [c, s]) + self.size[1] * abs(axis @ [-s, c]))


class _Placement(Exception):
    """The drawn room cannot hold this probe's layout; draw another."""


class _Room:
    """A width x depth room (x in [-width/2, width/2], y in [0, depth]) with its door in the wall y = 0."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.width, self.depth = rng.uniform(5.0, 8.5, size=2)
        door_x = rng.uniform(-self.width / 4, self.width / 4)
        self.boxes = [_Box("door", np.array([door_x, DOOR_SIZE[1] / 2, DOOR_SIZE[2] / 2]), DOOR_SIZE.copy())]

    def size(self, label: str) -> np.ndarray:
        """A random size in the class's range (width, depth, height)."""
        return np.array([self.rng.uniform(lo, hi) for lo, hi in CATEGORIES[CLASS_NAMES.index(label)].size])

    def inside(self, box: _Box) -> bool:
        """Within the walls (touching them is fine) and clear of the doorway."""
        x, y = box.centre[:2]
        half_x, half_y = box.half(np.array([1.0, 0.0])) - 1e-6, box.half(np.array([0.0, 1.0])) - 1e-6
        return abs(x) + half_x <= self.width / 2 and y + half_y <= self.depth and y - half_y >= 0.6

    def clear(self, box: _Box, clearance: float) -> bool:
        """Inside and at least `clearance` (bounding circles) from every box already placed."""
        return self.inside(box) and all(
            np.linalg.norm(box.centre[:2] - other.centre[:2]) - box.radius - other.radius >= clearance
            for other in self.boxes)

    def add(self, box: _Box, clearance: float | None = None) -> int:
        """Place `box` (checked against the walls, and the others when `clearance` is given); its index."""
        if not self.inside(box) or (clearance is not None and not self.clear(box, clearance)):
            raise _Placement
        self.boxes.append(box)
        return len(self.boxes) - 1

    def floor_box(self, label: str, size: np.ndarray | None = None, yaw: float | None = None) -> _Box:
        """A box standing on the floor, not placed yet (random size and yaw unless given)."""
        size = self.size(label) if size is None else size
        yaw = float(self.rng.uniform(0, 2 * np.pi)) if yaw is None else yaw
        return _Box(label, np.array([0.0, 0.0, size[2] / 2]), size, yaw)

    def somewhere(self, box: _Box, clearance: float, accept: Callable[[_Box], bool] = lambda b: True,
                  tries: int = 60) -> int:
        """Place `box` at a random free floor position that `accept` agrees to."""
        for _ in range(tries):
            box.centre[:2] = [self.rng.uniform(-self.width / 2, self.width / 2), self.rng.uniform(0, self.depth)]
            if self.clear(box, clearance) and accept(box):
                return self.add(box)
        raise _Placement

    def axis_yaw(self) -> float:
        """A yaw along the room's axes, slightly off."""
        return float(self.rng.integers(4) * np.pi / 2 + self.rng.uniform(-0.05, 0.05))

    def wall(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """A random wall other than the door's: a point on it, its inward normal, its direction and half length."""
        which = int(self.rng.integers(3))
        if which == 0:
            return np.array([0.0, self.depth]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), self.width / 2
        side = -1.0 if which == 1 else 1.0
        return (np.array([side * self.width / 2, self.depth / 2]), np.array([-side, 0.0]), np.array([0.0, 1.0]),
                self.depth / 2)

    def against(self, label: str, wall: tuple[np.ndarray, np.ndarray, np.ndarray, float], along: float,
                bottom: float = 0.0, size: np.ndarray | None = None) -> _Box:
        """A box with its back on `wall`, `along` metres from the wall's middle, its bottom at `bottom`."""
        point, normal, direction, _ = wall
        size = self.size(label) if size is None else size
        centre = point + normal * size[1] / 2 + direction * along
        return _Box(label, np.array([*centre, bottom + size[2] / 2]), size,
                    float(np.arctan2(-normal[0], normal[1])))

    def beside(self, anchor: _Box, label: str, direction: np.ndarray, gap: float) -> _Box:
        """A floor box `gap` from `anchor` (box extents along `direction`), axis-aligned with the room."""
        box = self.floor_box(label, yaw=self.axis_yaw())
        box.centre[:2] = anchor.centre[:2] + direction * (anchor.half(direction) + box.half(direction) + gap)
        return box


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _pick(rng: np.random.Generator, pool: tuple[str, ...], *exclude: str) -> str:
    return str(rng.choice([name for name in pool if name not in exclude]))


def _side_probe(room: _Room, relation: str) -> tuple[int, list[str]]:
    """left / right / front / behind: target and distractor on opposite sides of the anchor, equally near."""
    rng = room.rng
    anchor_label = _pick(rng, FLOOR_ANCHORS)
    target_label = _pick(rng, FLOOR_TARGETS, anchor_label)
    anchor = room.floor_box(anchor_label, yaw=room.axis_yaw())
    room.somewhere(anchor, 2.0)
    axis = np.array([1.0, 0.0]) if relation in ("left", "right") else np.array([0.0, 1.0])
    sign = -1.0 if relation in ("left", "front") else 1.0
    placed = []
    for side in (sign, -sign):
        box = room.beside(anchor, target_label, side * axis, rng.uniform(0.1, 0.4))
        box.centre[:2] += axis[::-1] * rng.uniform(-0.1, 0.1)
        placed.append(room.add(box))
    return placed[0], [target_label, anchor_label]


def _between_probe(room: _Room) -> tuple[int, list[str]]:
    """between: the target on the segment between two anchors of different classes; the distractor beyond one
    of them or off to the side."""
    rng = room.rng
    first = _pick(rng, FLOOR_ANCHORS)
    second = _pick(rng, FLOOR_ANCHORS, first)
    target_label = _pick(rng, FLOOR_TARGETS, first, second)
    a, target, distractor = room.floor_box(first), room.floor_box(target_label), room.floor_box(target_label)
    room.somewhere(a, 1.0)
    b = room.floor_box(second)
    direction = _unit(rng.uniform(0, 2 * np.pi))
    length = a.radius + b.radius + 2 * target.radius + rng.uniform(0.5, 1.5)
    b.centre[:2] = a.centre[:2] + direction * length
    room.add(b, 0.2)
    low = max(0.3 * length, a.radius + target.radius + 0.1)
    high = min(0.7 * length, length - b.radius - target.radius - 0.1)
    if low > high:
        raise _Placement
    normal = np.array([-direction[1], direction[0]])
    target.centre[:2] = a.centre[:2] + direction * rng.uniform(low, high) + normal * rng.uniform(-0.1, 0.1)
    index = room.add(target)
    if rng.random() < 0.5:
        end, sign = (a, -1.0) if rng.random() < 0.5 else (b, 1.0)
        distractor.centre[:2] = end.centre[:2] + sign * direction * (end.radius + distractor.radius +
                                                                     rng.uniform(0.2, 0.6))
    else:
        distractor.centre[:2] = a.centre[:2] + direction * rng.uniform(low, high) + \
            normal * rng.choice([-1.0, 1.0]) * rng.uniform(1.2, 2.0)
    room.add(distractor, 0.1)
    return index, [target_label, first, second]


def _near_probe(room: _Room, relation: str) -> tuple[int, list[str]]:
    """next to / closest / farthest: the target and the distractor at different distances from the anchor."""
    rng = room.rng
    anchor_label = _pick(rng, FLOOR_ANCHORS)
    target_label = _pick(rng, FLOOR_TARGETS, anchor_label)
    anchor = room.floor_box(anchor_label, yaw=room.axis_yaw())
    room.somewhere(anchor, 1.0)
    if relation == "next_to":
        target_gap, distractor_gap = (0.05, 0.3), (1.5, 3.0)
    elif relation == "closest":
        gap = rng.uniform(0.3, 1.2)
        target_gap, distractor_gap = (gap, gap), (gap + 1.0, gap + 2.5)
    else:
        gap = rng.uniform(2.2, 3.5)
        target_gap, distractor_gap = (gap, gap), (0.2, gap - 1.0)
    placed = []
    for gaps, clearance in ((target_gap, None), (distractor_gap, 0.1)):   # the target may touch the anchor
        box = room.floor_box(target_label)
        for _ in range(60):
            box.centre[:2] = anchor.centre[:2] + _unit(rng.uniform(0, 2 * np.pi)) * (
                anchor.radius + box.radius + rng.uniform(*gaps))
            if room.inside(box) and (clearance is None or room.clear(box, clearance)):
                break
        placed.append(room.add(box, clearance))
    return placed[0], [target_label, anchor_label]


def _on_probe(room: _Room) -> tuple[int, list[str]]:
    """on: the target on the anchor's top; the distractor on another support or on the floor."""
    rng = room.rng
    support_label = _pick(rng, SUPPORTS)
    item_label = _pick(rng, SMALL_ITEMS, support_label)
    target = room.add(_on_top(room, room.floor_box(support_label, yaw=room.axis_yaw()), item_label))
    if rng.random() < 0.5:
        room.add(_on_top(room, room.floor_box(_pick(rng, SUPPORTS, support_label, item_label),
                                              yaw=room.axis_yaw()), item_label))
    else:
        room.somewhere(room.floor_box(item_label), 0.5)
    return target, [item_label, support_label]


def _on_top(room: _Room, support: _Box, label: str) -> _Box:
    """Place `support` somewhere; a box of class `label` standing on its top, inside its footprint."""
    room.somewhere(support, 0.8)
    item = room.floor_box(label)
    free = np.maximum(support.size[:2] / 2 - item.radius, 0.0)
    local = room.rng.uniform(-free, free)
    c, s = np.cos(support.yaw), np.sin(support.yaw)
    item.centre = np.array([*(support.centre[:2] + [c * local[0] - s * local[1], s * local[0] + c * local[1]]),
                            support.top + item.size[2] / 2])
    return item


def _above_probe(room: _Room) -> tuple[int, list[str]]:
    """above: a wall item over a piece of furniture against the wall; the distractor on a wall elsewhere."""
    rng = room.rng
    anchor_label = _pick(rng, AGAINST_WALL)
    item_label = _pick(rng, WALL_ITEMS)
    wall = room.wall()
    along = rng.uniform(-wall[3] + 1.5, wall[3] - 1.5)
    anchor = room.against(anchor_label, wall, along)
    room.add(anchor, 0.3)
    size = room.size(item_label)
    offset = rng.uniform(-1, 1) * max(anchor.size[0] - size[0], 0.0) / 2
    height = anchor.top + rng.uniform(0.15, 0.5)
    target = room.add(room.against(item_label, wall, along + offset, height, size))
    for _ in range(60):
        other = room.wall()
        shift = rng.uniform(-other[3] + 0.6, other[3] - 0.6)
        distractor = room.against(item_label, other, shift, height + rng.uniform(-0.2, 0.2))
        apart = other[1] @ wall[1] < 0.5 or abs(shift - along) > anchor.size[0] / 2 + distractor.size[0] / 2 + 0.8
        if apart and room.inside(distractor) and \
                np.linalg.norm(distractor.centre[:2] - anchor.centre[:2]) > anchor.radius + 0.5:
            room.add(distractor)
            return target, [item_label, anchor_label]
    raise _Placement


def _below_probe(room: _Room) -> tuple[int, list[str]]:
    """under: the target under a table-like anchor or under a wall item; the distractor on the floor beside."""
    rng = room.rng
    if rng.random() < 0.5:
        anchor_label = _pick(rng, LEGGED)
        item_label = _pick(rng, UNDER_ITEMS)
        anchor = room.floor_box(anchor_label, yaw=room.axis_yaw())
        room.somewhere(anchor, 1.0)
        size = room.size(item_label)
        size[2] = min(size[2], anchor.size[2] - 0.12)
        size[:2] = np.minimum(size[:2], 0.8 * anchor.size[:2])
        item = _Box(item_label, np.array([*(anchor.centre[:2] + rng.uniform(-0.1, 0.1, 2)), size[2] / 2]), size,
                    anchor.yaw)
        target = room.add(item)
        distractor = room.floor_box(item_label, size.copy())
        room.somewhere(distractor, 0.1, lambda b: np.linalg.norm(b.centre[:2] - anchor.centre[:2])
                       - b.radius - anchor.radius < 1.5)
        return target, [item_label, anchor_label]
    anchor_label = _pick(rng, WALL_ITEMS)
    item_label = _pick(rng, ("radiator", "cabinet", "box", "plant", "trash can", "dresser", "bookshelf", "shelf"))
    wall = room.wall()
    along = rng.uniform(-wall[3] + 1.5, wall[3] - 1.5)
    item = room.against(item_label, wall, along)
    target = room.add(item, 0.3)
    anchor = room.against(anchor_label, wall, along + rng.uniform(-0.1, 0.1), item.top + rng.uniform(0.15, 0.5))
    room.add(anchor)
    for _ in range(60):
        shift = along + rng.choice([-1.0, 1.0]) * (anchor.size[0] / 2 + item.size[0] / 2 + rng.uniform(0.6, 2.0))
        distractor = room.against(item_label, wall, shift, size=item.size.copy())
        if room.clear(distractor, 0.05):
            room.add(distractor)
            return target, [item_label, anchor_label]
    raise _Placement


def _extreme_probe(room: _Room, relation: str) -> tuple[int, list[str]]:
    """largest / smallest / tallest / shortest: one or two distractors, the target beyond them by 40-100 %."""
    rng = room.rng
    label = _pick(rng, FLOOR_TARGETS)
    others = [room.size(label) for _ in range(int(rng.integers(1, 3)))]
    factor = rng.uniform(1.4, 2.0)
    size = room.size(label)
    if relation in ("largest", "smallest"):
        volumes = [float(np.prod(s)) for s in others]
        wanted = max(volumes) * factor if relation == "largest" else min(volumes) / factor
        size *= (wanted / np.prod(size)) ** (1 / 3)
    else:
        heights = [float(s[2]) for s in others]
        size[2] = max(heights) * factor if relation == "tallest" else min(heights) / factor
    target = room.somewhere(room.floor_box(label, size), 0.3)
    for other in others:
        room.somewhere(room.floor_box(label, other), 0.3)
    return target, [label]


def _layout(room: _Room, relation: str) -> tuple[int, list[str]]:
    """The probe's designed objects in `room`; the target's index and the class names (target, anchors...)."""
    if relation in ("left", "right", "front", "behind"):
        return _side_probe(room, relation)
    if relation == "between":
        return _between_probe(room)
    if relation in ("next_to", "closest", "farthest"):
        return _near_probe(room, relation)
    if relation == "on":
        return _on_probe(room)
    if relation == "above":
        return _above_probe(room)
    if relation == "below":
        return _below_probe(room)
    return _extreme_probe(room, relation)


def _plural(name: str) -> str:
    return name + ("es" if name.endswith(("s", "x", "ch", "sh")) else "s")


def _sentence(relation: str, names: list[str], rng: np.random.Generator) -> str:
    """The probe's sentence for the target's and anchors' `names`."""
    cue = str(rng.choice(CUES[relation]))
    if relation in ("largest", "smallest", "tallest", "shortest"):
        template = str(rng.choice(EXTREME_TEMPLATES))
        return template.format(p=cue, n=_plural(names[0]) if "of the" in template else names[0])
    phrase = f"{cue} the {names[1]}" + (f" and the {names[2]}" if relation == "between" else "")
    if relation in ("left", "right") and rng.random() < 0.5:
        phrase += f" {FROM_THE_DOOR}"
    return str(rng.choice(TEMPLATES)).format(n=names[0], p=phrase)


def _name(label: str, rng: np.random.Generator) -> str:
    """The class's name (60 %) or one of its synonyms, as the descriptions pick."""
    names = CATEGORIES[CLASS_NAMES.index(label)].names
    return names[0] if rng.random() < 0.6 else str(rng.choice(names[1:]))


def probe_parser() -> QueryParser:
    return QueryParser(CLASS_NAMES, {c.name: c.synonyms for c in CATEGORIES})


def _worded(relation: str, labels: list[str], parser: QueryParser, rng: np.random.Generator) -> str:
    """A sentence the parser reads back as written (synonyms that collide with other names fall back to the
    class names)."""
    for attempt in range(8):
        names = [_name(label, rng) if attempt < 7 else label for label in labels]
        text = _sentence(relation, names, rng)
        parsed = parser.parse(text)
        if parsed.target_label == CLASS_NAMES.index(labels[0]) and [r.kind for r in parsed.relations] == [relation] \
                and [a.label for a in parsed.anchors] == [CLASS_NAMES.index(n) for n in labels[1:]]:
            return text
    raise ValueError(f"no sentence for {relation} with {labels} parses as written: {text!r}")


def _objects(room: _Room, vocabulary: Vocabulary, rng: np.random.Generator) -> SceneObjects:
    """The room's boxes as map objects, turned and moved at random: noisy class distributions (60-95 % on the
    true class, part of the rest on one confusable class) and features near the class's text embedding."""
    count, classes = len(room.boxes), len(vocabulary.labels)
    labels = np.array([CLASS_NAMES.index(b.label) for b in room.boxes])
    turn, shift = rng.uniform(0, 2 * np.pi), rng.uniform(-5.0, 5.0, size=2)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    centres = np.array([[*(rotation @ b.centre[:2] + shift), b.centre[2]] for b in room.boxes])
    sizes = np.array([b.size for b in room.boxes])
    yaws = np.array([(b.yaw + turn) % (2 * np.pi) for b in room.boxes])
    own = rng.uniform(0.6, 0.95, size=count)
    confused = rng.integers(classes, size=count)
    share = rng.uniform(0.3, 0.8, size=count)
    distributions = np.repeat(((1 - own) * (1 - share) / classes)[:, None], classes, axis=1)
    distributions[np.arange(count), confused] += (1 - own) * share
    distributions[np.arange(count), labels] += own
    dim = vocabulary.label_embeddings.shape[1]
    features = vocabulary.label_embeddings[labels] + 0.5 * rng.standard_normal((count, dim)) / np.sqrt(dim)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    surface = sizes[:, 0] * sizes[:, 1] + 2 * sizes[:, 2] * (sizes[:, 0] + sizes[:, 1])
    counts = np.maximum((2000 * surface).astype(np.int64), 20)
    counts[labels == CLASS_NAMES.index("door")] = 50_000
    return SceneObjects(centres, sizes, yaws, distributions, features, rng.uniform(0, 1, (count, 3)), counts, labels)


def make_probe(relation: str, vocabulary: Vocabulary, rng: np.random.Generator,
               parser: QueryParser | None = None) -> Probe:
    """One probe of `relation` (one of RELATIONS) over `vocabulary` (the synthetic world's classes, in order)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; probes exist for {', '.join(RELATIONS)}")
    if tuple(vocabulary.labels) != CLASS_NAMES:
        raise ValueError("relation probes need the synthetic world's vocabulary (label_entries())")
    for _ in range(1000):
        room = _Room(rng)
        try:
            target, labels = _layout(room, relation)
            used = {b.label for b in room.boxes}
            for _ in range(int(rng.integers(2, 5))):
                room.somewhere(room.floor_box(_pick(rng, UNRELATED, *used)), 0.4)
        except _Placement:
            continue
        text = _worded(relation, labels, parser or probe_parser(), rng)
        return Probe(relation, text, _objects(room, vocabulary, rng), target)
    raise RuntimeError(f"no room held a {relation} probe in 1000 draws")


def make_probes(vocabulary: Vocabulary, per_relation: int, seed: int,
                relations: tuple[str, ...] = RELATIONS) -> list[Probe]:
    """`per_relation` probes of each relation, the same for the same seed."""
    rng, parser = np.random.default_rng(seed), probe_parser()
    return [make_probe(relation, vocabulary, rng, parser) for relation in relations for _ in range(per_relation)]


def probe_accuracy(engine: GroundingEngine, vocabulary: Vocabulary, probes: list[Probe]) -> dict[str, float]:
    """Share of each relation's probes whose first answer is the target (an unanswered probe counts as wrong)."""
    right: dict[str, list[bool]] = {}
    for probe in probes:
        engine.set_map(probe.objects, vocabulary)
        answer = engine.ground(probe.query, 1)
        right.setdefault(probe.relation, []).append(answer.success and answer.candidates[0].instance_id ==
                                                    probe.target)
    return {relation: float(np.mean(hits)) for relation, hits in right.items()}


class _Memo:
    """A text encoder that encodes each distinct text once (the engines of one run share it)."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray]) -> None:
        self.encode = encode
        self.rows: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.rows]
        if missing:
            self.rows.update(zip(missing, self.encode(missing)))
        return np.stack([self.rows[t] for t in texts])


def run_relation_benchmark(encode: Callable[[list[str]], np.ndarray], vocabulary: Vocabulary,
                           checkpoint: str | None, per_relation: int, seed: int) -> dict[str, Any]:
    """Accuracy per relation of the coarse stage and (with `checkpoint`) the distilled grounder, each without and
    with the relation module, on `per_relation` probes of each relation. When the shipped grounder ('default')
    does not load, the reason is reported in `skipped`; any other checkpoint must load."""
    memo, probes = _Memo(encode), make_probes(vocabulary, per_relation, seed)
    methods: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for name, path in (("coarse stage", None), ("distilled grounder", checkpoint)):
        if name != "coarse stage" and not path:
            continue
        try:
            engines = [load_engine(memo, path, EngineSettings(relations=relations)) for relations in (False, True)]
        except (OSError, ValueError, ImportError, RuntimeError) as exc:
            if path != "default":
                raise
            skipped[name] = f"{type(exc).__name__}: {exc}"
            continue
        for engine in engines:
            methods[name + (" + relations" if engine.settings.relations else "")] = \
                probe_accuracy(engine, vocabulary, probes)
    return {"probes_per_relation": per_relation, "seed": seed, "relations": list(RELATIONS), "methods": methods,
            "skipped": skipped, "examples": {p.relation: p.query for p in probes[::per_relation]}}
