"""Procedurally furnished rooms: geometry, object meshes and a collision-free layout, deterministic given a seed.

World frame: z up, metres, floor top at z = 0, the room's bounding box spans [0, W] x [0, D]. Every object has a
local frame (width along x, depth along y with its front facing +y, base at z = 0) rotated by ``yaw`` about z.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from ov3d_ros.data.synthetic.categories import (
    CATEGORIES,
    DARK,
    IGNORE_INDEX,
    MATERIALS,
    METAL,
    ROOM_TYPES,
    Category,
    Material,
    Placement,
    RoomType,
    Shape,
    category,
    class_index,
)
from ov3d_ros.geometry.boxes import OrientedBox, rotation_z

MIN_OBJECTS, MAX_OBJECTS = 15, 40   # furnishing objects per room (door, windows, furniture and small things)
CEILING_RANGE = (2.4, 3.0)
WALL_THICKNESS_RANGE = (0.1, 0.2)
SLAB = 0.05                         # floor / ceiling slab thickness; walls reach this far below and above them
L_SHAPE_PROBABILITY = 0.35
TEXTURE_COMPONENTS = 4
TOP_CLEARANCE = 0.7                 # free height above a table-like top surface
MAIN, ACCENT, HARDWARE = 0, 1, 2    # colour roles of mesh parts
FRONT_PANEL, HANDLE = 0.018, 0.012  # door / drawer front and handle depths
DOOR_RECESS, DOOR_CASING = 0.04, 0.02  # door leaf set back from the wall face; casing depth in front of it
PLACEMENT_ATTEMPTS = 30          # poses tried per candidate
CANDIDATES_PER_PLACEMENT = 2     # sizes tried per placement

_UNIT_BOX = trimesh.creation.box()
_SPHERE = trimesh.creation.icosphere(subdivisions=2)
# Yaw jitter (radians) of free-standing and on-surface instances, by shape; others stay aligned with walls / supports.
_YAW_JITTER = {Shape.CHAIR: np.pi, Shape.OFFICE_CHAIR: np.pi, Shape.STOOL: np.pi, Shape.ROUND: np.pi,
               Shape.MUG: np.pi, Shape.PLANT: np.pi, Shape.BAG: np.pi, Shape.BACKPACK: np.pi, Shape.LAMP: np.pi,
               Shape.SOFT: 0.3, Shape.BOX: 0.4, Shape.BOOK: 0.5, Shape.APPLIANCE: 0.3, Shape.PRINTER: 0.3,
               Shape.LAPTOP: 0.3}


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _overlapping(box: OrientedBox, others: list[OrientedBox], clearance: float = 0.0) -> np.ndarray:
    """Which ``others`` intersect ``box`` (its footprint grown by ``clearance``) with positive volume (vectorised
    separating-axis test on the footprints plus the z intervals); touching boxes do not intersect."""
    if not others:
        return np.zeros(0, dtype=bool)
    eps = 1e-7
    centres = np.array([o.centre for o in others])
    halves = np.array([o.size for o in others]) / 2
    yaws = np.array([o.yaw for o in others])
    z_overlap = (np.abs(centres[:, 2] - box.centre[2]) < halves[:, 2] + box.size[2] / 2 - eps)
    a_axes = box.rotation[:2, :2].T                                       # (2, 2): rows are the box's x and y axes
    b_axes = np.stack((np.stack((np.cos(yaws), np.sin(yaws)), 1), np.stack((-np.sin(yaws), np.cos(yaws)), 1)), 1)
    a_half = box.size[:2] / 2 + clearance
    delta = centres[:, :2] - box.centre[:2]
    separated = np.zeros(len(others), dtype=bool)
    for axes in (np.broadcast_to(a_axes, b_axes.shape), b_axes):
        for k in range(2):
            axis = axes[:, k]                                             # (M, 2)
            radius_a = np.abs(axis @ a_axes.T) @ a_half
            radius_b = np.abs(np.einsum("mij,mj->mi", b_axes, axis)) * halves[:, :2]
            separated |= np.abs(np.einsum("mj,mj->m", delta, axis)) >= radius_a + radius_b.sum(1) - eps
    return z_overlap & ~separated


@dataclass(frozen=True, eq=False)
class Texture:
    """Brightness modulation ``1 + sum_k amplitudes[k] * sin(frequencies[k] . x + phases[k])`` of a surface at
    world points x; frequencies in radians per metre."""

    frequencies: np.ndarray   # (K, 3)
    phases: np.ndarray        # (K,)
    amplitudes: np.ndarray    # (K,)


def _texture(material: Material, rotation: np.ndarray, rng: np.random.Generator) -> Texture:
    """A random texture of ``material``; stripes run along an axis of the object frame ``rotation``."""
    directions = rng.normal(size=(TEXTURE_COMPONENTS, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    cycles = rng.uniform(*material.frequency, TEXTURE_COMPONENTS)
    weights = rng.uniform(0.5, 1.0, TEXTURE_COMPONENTS)
    if material.stripes:
        directions[0] = rotation[:, rng.integers(3)]
        cycles[0] *= 2.0
        weights[0] = 2.0
    return Texture(2.0 * np.pi * cycles[:, None] * directions, rng.uniform(0.0, 2.0 * np.pi, TEXTURE_COMPONENTS),
                   material.amplitude * weights / weights.sum())


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One object instance in world coordinates.

    ``box`` is the tight box of ``mesh`` in the object's yaw frame. ``support_id`` is the instance it stands on
    (0: the floor or a wall). ``surfaces`` are the free volumes above the object's support surfaces (their bottom
    faces are the surfaces), where on-surface things are put.
    """

    instance_id: int
    class_index: int
    name: str
    mesh: trimesh.Trimesh
    color: np.ndarray          # (3,) uint8 base colour
    box: OrientedBox
    support_id: int
    material: str
    texture: Texture
    surfaces: tuple[OrientedBox, ...]

    @property
    def category(self) -> Category:
        return CATEGORIES[self.class_index]

    @property
    def facing(self) -> np.ndarray:
        """Unit vector (3,) of the object's front (its local +y)."""
        return self.box.rotation[:, 1]


@dataclass(frozen=True, eq=False)
class Wall:
    """A wall's inner face from ``start`` to ``end`` (2,) (counter-clockwise around the room); ``normal`` points
    into the room."""

    start: np.ndarray
    end: np.ndarray
    instance_id: int

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.end - self.start))

    @property
    def direction(self) -> np.ndarray:
        return (self.end - self.start) / self.length

    @property
    def normal(self) -> np.ndarray:
        d = self.direction
        return np.array([-d[1], d[0]])

    @property
    def yaw(self) -> float:
        """Yaw of an object standing with its back against this wall (its +y is the wall normal)."""
        d = self.direction
        return float(np.arctan2(d[1], d[0]))


@dataclass(frozen=True, eq=False)
class Door:
    """The door: ``centre`` (3,) is the floor point in the middle of the opening on the wall's inner face, ``normal``
    (3,) points into the room (a person entering looks along it; their left is ``cross(z, normal)``)."""

    wall_index: int
    centre: np.ndarray
    normal: np.ndarray
    width: float
    height: float
    instance_id: int


@dataclass(frozen=True, eq=False)
class Room:
    """Room geometry: the counter-clockwise ``footprint`` polygon (V, 2), its decomposition into axis-aligned
    ``rectangles`` (R, 4) (xmin, ymin, xmax, ymax), the ceiling height, walls, the door and the ceiling's look."""

    footprint: np.ndarray
    rectangles: np.ndarray
    height: float
    wall_thickness: float
    walls: tuple[Wall, ...]
    door: Door
    ceiling_color: np.ndarray
    ceiling_texture: Texture

    @property
    def size(self) -> np.ndarray:
        """(W, D) of the bounding box [0, W] x [0, D]."""
        return self.footprint.max(axis=0)

    @property
    def area(self) -> float:
        r = self.rectangles
        return float(np.sum((r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])))

    def contains_xy(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Which 2D points (N, 2) lie inside the footprint, at least ``margin`` from every wall."""
        points = np.asarray(points, dtype=np.float64)
        r = self.rectangles
        inside = np.any((points[:, None, 0] >= r[:, 0]) & (points[:, None, 0] <= r[:, 2])
                        & (points[:, None, 1] >= r[:, 1]) & (points[:, None, 1] <= r[:, 3]), axis=1)
        starts = np.array([w.start for w in self.walls])
        ends = np.array([w.end for w in self.walls])
        seg = ends - starts
        t = np.clip(np.einsum("nwj,wj->nw", points[:, None] - starts, seg) / np.sum(seg * seg, 1), 0.0, 1.0)
        distance = np.linalg.norm(points[:, None] - (starts + t[..., None] * seg), axis=2).min(axis=1)
        return inside & (distance >= margin)


class RayHits(NamedTuple):
    """First hits of rays: ``distance`` along the unit direction (inf on a miss), ``face`` index into the scene
    mesh (-1 on a miss) and that face's outward normal (zeros on a miss)."""

    distance: np.ndarray
    face: np.ndarray
    normal: np.ndarray


@dataclass(frozen=True, eq=False)
class SyntheticScene:
    """A generated room: its objects (``objects[i].instance_id == i + 1``) and one combined mesh (objects then the
    ceiling) with per-face instance ids (0 for the ceiling), class indices (255 for the ceiling) and colours."""

    scene_id: str
    seed: int
    room_type: str
    room: Room
    objects: tuple[SceneObject, ...]
    mesh: trimesh.Trimesh
    face_instance: np.ndarray   # (F,) int32
    face_class: np.ndarray      # (F,) uint8
    face_color: np.ndarray      # (F, 3) uint8

    def object(self, instance_id: int) -> SceneObject:
        """The object with this instance id (1-based)."""
        return self.objects[instance_id - 1]

    @cached_property
    def intersector(self) -> RayMeshIntersector:
        """The Embree ray intersector of :attr:`mesh` (built once)."""
        return RayMeshIntersector(self.mesh)

    @cached_property
    def texture_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Textures stacked by instance id (row 0: the ceiling), float32: frequencies (I+1, K, 3), phases and
        amplitudes (I+1, K)."""
        textures = [self.room.ceiling_texture] + [o.texture for o in self.objects]
        return tuple(np.stack([getattr(t, name) for t in textures]).astype(np.float32)
                     for name in ("frequencies", "phases", "amplitudes"))

    def raycast(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        """First hits of rays (N, 3) from ``origins`` along ``directions`` (any length) against the scene mesh.

        Embree finds the face; the distance is recomputed in float64 from that face's plane, so depths are exact.
        """
        origins = np.asarray(origins, dtype=np.float64)
        directions = np.asarray(directions, dtype=np.float64)
        directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        face = self.intersector.intersects_first(origins, directions).astype(np.int64)
        hit = np.flatnonzero(face >= 0)
        distance = np.full(len(origins), np.inf)
        normal = np.zeros((len(origins), 3))
        n = self.mesh.face_normals[face[hit]]
        denominator = np.einsum("ij,ij->i", n, directions[hit])
        corner = self.mesh.vertices[self.mesh.faces[face[hit], 0]]
        distance[hit] = np.einsum("ij,ij->i", n, corner - origins[hit]) / np.where(denominator == 0.0, 1.0,
                                                                                  denominator)
        grazing = hit[np.abs(denominator) < 1e-9]   # edge-on faces: the distance to their centre along the ray
        centre = self.mesh.triangles_center[face[grazing]]
        distance[grazing] = np.einsum("ij,ij->i", centre - origins[grazing], directions[grazing])
        normal[hit] = n
        return RayHits(distance, face, normal)


@dataclass(frozen=True, eq=False)
class FreeSpace:
    """A 2D occupancy grid of the floor: ``mask[i, j]`` is True when the cell centred at
    ``origin + (i, j) * resolution`` is inside the room and clear of objects by the requested clearance."""

    origin: np.ndarray
    resolution: float
    mask: np.ndarray

    def to_xy(self, cells: np.ndarray) -> np.ndarray:
        """Centres (N, 2) of the cells with indices ``cells`` (N, 2)."""
        return self.origin + np.asarray(cells) * self.resolution

    def centres(self) -> np.ndarray:
        """Centres (N, 2) of the free cells, in row-major cell order."""
        return self.to_xy(np.argwhere(self.mask))


def free_space(scene: SyntheticScene, resolution: float = 0.1, clearance: float = 0.3,
               max_height: float = 2.0) -> FreeSpace:
    """Floor cells at least ``clearance`` from walls and from the footprint of every object that reaches below
    ``max_height`` and is taller than a rug."""
    size = scene.room.size
    counts = np.ceil(size / resolution).astype(int)
    origin = np.full(2, resolution / 2)
    i, j = np.meshgrid(np.arange(counts[0]), np.arange(counts[1]), indexing="ij")
    cells = origin + np.stack((i.ravel(), j.ravel()), axis=1) * resolution
    free = scene.room.contains_xy(cells, margin=clearance)
    for obj in scene.objects:
        if obj.category.placement is Placement.STRUCTURE or obj.box.bottom >= max_height or obj.box.size[2] < 0.05:
            continue
        local = (cells - obj.box.centre[:2]) @ obj.box.rotation[:2, :2]
        free &= ~np.all(np.abs(local) <= obj.box.size[:2] / 2 + clearance, axis=1)
    return FreeSpace(origin, resolution, free.reshape(counts))


# ----------------------------------------------------------------------------------------------------------------
# Mesh parts and shape builders (object frame: footprint centred on the origin, base at z = 0, front facing +y)


class _Part(NamedTuple):
    vertices: np.ndarray
    faces: np.ndarray
    role: int


class _Model(NamedTuple):
    parts: list[_Part]
    surfaces: list[tuple[float, float, float, float, float, float]]   # (x, y, width, depth, z, clearance)


def _box(size: tuple[float, float, float], x: float = 0.0, y: float = 0.0, z0: float = 0.0,
         role: int = MAIN) -> _Part:
    """An axis-aligned box of extents ``size`` centred at (x, y) with its bottom at ``z0``."""
    size = np.asarray(size, dtype=np.float64)
    return _Part(_UNIT_BOX.vertices * size + (x, y, z0 + size[2] / 2), _UNIT_BOX.faces, role)


def _revolved(profile: list[tuple[float, float]], x: float = 0.0, y: float = 0.0, y_scale: float = 1.0,
              role: int = MAIN, sections: int = 20) -> _Part:
    """Solid of revolution about the vertical axis through (x, y) of the (radius, z) outline ``profile`` (bottom to
    top), closed at the axis, squashed along y by ``y_scale``."""
    profile = np.asarray(profile, dtype=np.float64)
    outline = np.vstack(([0.0, profile[0, 1]], profile, [0.0, profile[-1, 1]]))
    mesh = trimesh.creation.revolve(outline, sections=sections)
    return _Part(mesh.vertices * (1.0, y_scale, 1.0) + (x, y, 0.0), mesh.faces, role)


def _blob(radii: tuple[float, float, float], centre: tuple[float, float, float], squareness: float = 1.0,
          role: int = MAIN) -> _Part:
    """An ellipsoid of semi-axes ``radii``; ``squareness`` < 1 makes it boxier (pillow, bag)."""
    v = _SPHERE.vertices
    return _Part(np.sign(v) * np.abs(v) ** squareness * radii + centre, _SPHERE.faces, role)


def _moved(part: _Part, rotation: np.ndarray, translation: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> _Part:
    return _Part(part.vertices @ rotation.T + translation, part.faces, part.role)


def _top(w: float, d: float, z: float, clearance: float = TOP_CLEARANCE) -> tuple[float, ...]:
    return (0.0, 0.0, w, d, z, clearance)


def _fronts(xs: np.ndarray, zs: np.ndarray, y: float, drawers: bool, role: int = MAIN) -> list[_Part]:
    """Door or drawer fronts with handles on the grid of cells ``xs`` x ``zs`` (edges) of a face at depth ``y``."""
    parts, gap = [], 0.004
    for i in range(len(xs) - 1):
        for j in range(len(zs) - 1):
            x0, x1, z0, z1 = xs[i] + gap, xs[i + 1] - gap, zs[j] + gap, zs[j + 1] - gap
            parts.append(_box((x1 - x0, FRONT_PANEL, z1 - z0), (x0 + x1) / 2, y + FRONT_PANEL / 2, z0, role))
            if drawers:
                size, hx, hz = (min(0.16, 0.4 * (x1 - x0)), HANDLE, 0.015), (x0 + x1) / 2, z1 - min(0.05, (z1 - z0) / 3)
            else:
                length = min(0.2, 0.3 * (z1 - z0))
                size, hx = (0.015, HANDLE, length), x1 - 0.04 if i == 0 else x0 + 0.04
                hz = float(np.clip(1.0, z0 + 0.05, z1 - 0.05 - length))
            parts.append(_box(size, hx, y + FRONT_PANEL + HANDLE / 2, hz, HARDWARE))
    return parts


def _open_box(w: float, d: float, h: float, wall: float, bottom: float, z0: float = 0.0) -> list[_Part]:
    """A bottom with four rims (bathtub, basin)."""
    return [_box((w, d, bottom), 0.0, 0.0, z0),
            *(_box((w, wall, h - bottom), 0.0, s * (d - wall) / 2, z0 + bottom) for s in (-1, 1)),
            *(_box((wall, d - 2 * wall, h - bottom), s * (w - wall) / 2, 0.0, z0 + bottom) for s in (-1, 1))]


def _build_box(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    return _Model([_box((w, d, h))], [_top(w, d, h)])


def _build_doors(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    body = d - FRONT_PANEL - HANDLE
    if w < 0.95 and h > 1.4:   # refrigerator-like: a freezer door over the main door
        xs, zs = np.array([-w / 2, w / 2]), np.array([0.0, h * rng.uniform(0.6, 0.7), h])
    else:
        xs, zs = np.linspace(-w / 2, w / 2, 2 if w < 0.6 else 3 if w < 1.4 else 4), np.array([0.0, h])
    parts = [_box((w, body, h), 0.0, -d / 2 + body / 2)] + _fronts(xs, zs, -d / 2 + body, drawers=False)
    return _Model(parts, [_top(w, d, h)])


def _build_drawers(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    body = d - FRONT_PANEL - HANDLE
    xs = np.linspace(-w / 2, w / 2, 3 if w > 1.0 else 2)
    zs = np.linspace(0.06, h - 0.03, int(np.clip(round(h / 0.22), 2, 5)) + 1)
    parts = [_box((w, body, h), 0.0, -d / 2 + body / 2)] + _fronts(xs, zs, -d / 2 + body, drawers=True)
    return _Model(parts, [_top(w, d, h)])


def _build_table(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    t, leg, inset = rng.uniform(0.03, 0.05), rng.uniform(0.04, 0.07), rng.uniform(0.02, 0.08)
    parts = [_box((w, d, t), z0=h - t)]
    parts += [_box((leg, leg, h - t), sx * (w / 2 - inset - leg / 2), sy * (d / 2 - inset - leg / 2), role=ACCENT)
              for sx in (-1, 1) for sy in (-1, 1)]
    return _Model(parts, [_top(w, d, h)])


def _build_desk(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    t, pedestal = 0.03, min(0.42, 0.35 * w)
    depth = d - 0.06 - FRONT_PANEL - HANDLE
    parts = [_box((w, d, t), z0=h - t), _box((0.03, d - 0.04, h - t), -w / 2 + 0.015),
             _box((pedestal, depth, h - t), w / 2 - pedestal / 2, -d / 2 + 0.02 + depth / 2),
             _box((w - pedestal - 0.03, 0.02, 0.35), (0.03 - pedestal) / 2, -d / 2 + 0.04, h - t - 0.35)]
    parts += _fronts(np.array([w / 2 - pedestal, w / 2]), np.linspace(0.02, h - t - 0.01, 4),
                     -d / 2 + 0.02 + depth, drawers=True)
    return _Model(parts, [_top(w, d, h)])


def _build_counter(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    top, kick = 0.04, 0.1
    base = d - 0.05 - FRONT_PANEL - HANDLE
    parts = [_box((w, d, top), z0=h - top), _box((w, base, h - top - kick), 0.0, -d / 2 + base / 2, kick, ACCENT),
             _box((w, base - 0.06, kick), 0.0, -d / 2 + (base - 0.06) / 2, 0.0, ACCENT)]
    parts += _fronts(np.linspace(-w / 2, w / 2, max(1, round(w / 0.5)) + 1), np.array([kick, h - top]),
                     -d / 2 + base, drawers=False, role=ACCENT)
    return _Model(parts, [_top(w, d, h)])


def _build_chair(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    seat, thickness, leg, back = min(0.47, 0.55 * h), 0.04, rng.uniform(0.03, 0.045), 0.03
    parts = [_box((w, d, thickness), z0=seat - thickness), _box((w, back, h - seat), 0.0, -d / 2 + back / 2, seat)]
    parts += [_box((leg, leg, seat - thickness), sx * (w - leg) / 2, sy * (d - leg) / 2, role=ACCENT)
              for sx in (-1, 1) for sy in (-1, 1)]
    return _Model(parts, [])


def _build_office_chair(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    radius, caster, seat = min(w, d) / 2, 0.05, 0.48
    spoke, phase = radius - 0.03, rng.uniform(0.0, 2.0 * np.pi)
    parts = []
    for k in range(5):
        rotation = rotation_z(phase + 2.0 * np.pi * k / 5)
        parts += [_moved(_box((spoke, 0.04, 0.03), spoke / 2, 0.0, caster, HARDWARE), rotation),
                  _moved(_box((0.05, 0.05, caster), radius - 0.025, 0.0, 0.0, HARDWARE), rotation)]
    sw, sd = 0.9 * w, 0.85 * d
    parts += [_revolved([(0.025, caster + 0.03), (0.025, seat - 0.07)], role=HARDWARE),
              _box((sw, sd, 0.07), z0=seat - 0.07),
              _box((0.8 * w, 0.05, h - seat - 0.08), 0.0, -sd / 2 + 0.025, seat + 0.08),
              _box((0.05, 0.03, 0.15), 0.0, -sd / 2 + 0.025, seat - 0.05, HARDWARE)]
    return _Model(parts, [])


def _build_stool(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    radius, seat, leg = min(w, d) / 2, 0.04, 0.03
    spread = 0.6 * radius
    parts = [_revolved([(radius, h - seat), (radius, h)])]
    parts += [_box((leg, leg, h - seat), sx * spread, sy * spread, role=ACCENT) for sx in (-1, 1) for sy in (-1, 1)]
    parts += [_box((2 * spread, 0.02, 0.02), 0.0, s * spread, 0.25 * h, ACCENT) for s in (-1, 1)]
    parts += [_box((0.02, 2 * spread, 0.02), s * spread, 0.0, 0.3 * h, ACCENT) for s in (-1, 1)]
    return _Model(parts, [])


def _build_sofa(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    arm, back, seat = np.clip(0.1 * w, 0.12, 0.2), np.clip(0.22 * d, 0.15, 0.25), 0.42
    inner_w, inner_d, arm_h = w - 2 * arm, d - back, min(0.62, h - 0.08)
    parts = [_box((inner_w, inner_d, seat - 0.12), 0.0, back / 2),
             _box((inner_w - 0.02, inner_d - 0.02, 0.12), 0.0, back / 2 - 0.01, seat - 0.12),
             _box((w, back, h), 0.0, -d / 2 + back / 2)]
    parts += [_box((arm, inner_d, arm_h), s * (w - arm) / 2, back / 2) for s in (-1, 1)]
    return _Model(parts, [(0.0, back / 2 - 0.01, inner_w - 0.02, inner_d - 0.02, seat, h - seat)])


def _build_bed(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    frame, mattress, head = 0.28, rng.uniform(0.18, 0.25), 0.06
    parts = [_box((w, d - head, frame), 0.0, head / 2, role=ACCENT),
             _box((w - 0.04, d - head - 0.04, mattress), 0.0, head / 2, frame),
             _box((w, head, h), 0.0, -d / 2 + head / 2, role=ACCENT)]
    pillow_zone = 0.7   # pillows go on the head end of the mattress
    return _Model(parts, [(0.0, -d / 2 + head + 0.02 + pillow_zone / 2, w - 0.06, pillow_zone, frame + mattress, 0.35)])


def _build_shelving(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    t, back = 0.02, 0.01 if cat.shape is Shape.BOOKSHELF else 0.0
    compartments = max(2, int(h // 0.32))
    levels = np.linspace(0.06, h - t, compartments + 1)
    spacing = levels[1] - levels[0]
    parts = [_box((t, d, h), s * (w - t) / 2) for s in (-1, 1)]
    parts += [_box((w - 2 * t, d - back, t), 0.0, back / 2, z) for z in levels]
    if back:
        parts += [_box((w - 2 * t, back, h), 0.0, -d / 2 + back / 2), _box((w - 2 * t, d - back, 0.06), 0.0, back / 2)]
    surfaces = [(0.0, back / 2, w - 2 * t, d - back, z + t, spacing - t - 0.02) for z in levels[:-1]]
    return _Model(parts, surfaces + [_top(w, d, h)])


def _build_tub(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    return _Model(_open_box(w, d, h, 0.07, 0.06), [])


def _build_sink(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    basin = 0.16
    parts = [_revolved([(0.1, 0.0), (0.07, 0.3 * (h - basin)), (0.08, h - basin)], 0.0, -d / 2 + 0.15)]
    parts += _open_box(w, d, basin, 0.035, 0.03, h - basin)
    parts += [_box((0.03, 0.03, 0.12), 0.0, -d / 2 + 0.0175, h, HARDWARE),
              _box((0.03, 0.09, 0.025), 0.0, -d / 2 + 0.08, h + 0.095, HARDWARE)]
    return _Model(parts, [])


def _build_toilet(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    tank, seat = 0.18, 0.4
    bowl = d - tank
    y, squash = -d / 2 + tank + bowl / 2, bowl / w
    parts = [_revolved([(0.3 * w, 0.0), (0.35 * w, 0.15), (0.5 * w, seat - 0.03)], 0.0, y, squash),
             _revolved([(0.49 * w, seat - 0.03), (0.49 * w, seat)], 0.0, y, squash),
             _box((0.5 * w, tank, seat - 0.05), 0.0, -d / 2 + tank / 2),
             _box((0.95 * w, tank, h - seat + 0.05), 0.0, -d / 2 + tank / 2, seat - 0.05)]
    return _Model(parts, [])


def _build_stove(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    parts = [_box((w, d - 0.02, h - 0.02), 0.0, -0.01), _box((w, d - 0.02, 0.02), 0.0, -0.01, h - 0.02, ACCENT),
             _box((w - 0.1, 0.02, 0.45), 0.0, d / 2 - 0.01, 0.15, ACCENT)]
    parts += [_revolved([(0.07, h), (0.07, h + 0.012)], sx * w / 4, -0.01 + sy * d / 5, role=HARDWARE)
              for sx in (-1, 1) for sy in (-1, 1)]
    return _Model(parts, [])


def _build_radiator(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    foot, bar = 0.1, 0.03
    parts = [_box((0.04, d, foot), s * (w / 2 - 0.1), role=ACCENT) for s in (-1, 1)]
    parts += [_box((w, 0.4 * d, bar), 0.0, 0.0, z) for z in (foot, h - bar)]
    parts += [_box((0.03, d, h - foot - 2 * bar), x, 0.0, foot + bar)
              for x in np.linspace(-w / 2 + 0.015, w / 2 - 0.015, max(4, int(w / 0.06)))]
    return _Model(parts, [])


def _build_curtain(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    thickness, waves = 0.015, max(2, round(w / 0.2))
    x = np.linspace(-w / 2, w / 2, 6 * waves + 1)
    y = (d - thickness) / 2 * np.sin(2.0 * np.pi * waves * (x + w / 2) / w + rng.uniform(0.0, 2.0 * np.pi))
    parts = [_moved(_box((np.hypot(x1 - x0, y1 - y0) + 0.01, thickness, h)), rotation_z(np.arctan2(y1 - y0, x1 - x0)),
                    ((x0 + x1) / 2, (y0 + y1) / 2, 0.0))
             for x0, x1, y0, y1 in zip(x[:-1], x[1:], y[:-1], y[1:])]
    return _Model(parts, [])


def _build_door(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    """Leaf set back by DOOR_RECESS behind the wall face (y = 0), casing in front of it, handle on the room side."""
    w, d, h = size
    casing = 0.07
    parts = [_box((w, d, h), 0.0, -DOOR_RECESS - d / 2),
             *(_box((casing, DOOR_CASING, h + casing), s * (w + casing) / 2, DOOR_CASING / 2, 0.0, ACCENT)
               for s in (-1, 1)),
             _box((w, DOOR_CASING, casing), 0.0, DOOR_CASING / 2, h, ACCENT),
             _box((0.12, 0.05, 0.025), w / 2 - 0.1, -DOOR_RECESS + 0.025, 1.0, HARDWARE)]
    return _Model(parts, [])


def _build_window(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    bar, sill = 0.06, 0.03
    inner_w, inner_h = w - 2 * bar, h - sill - 2 * bar
    parts = [_box((w + 0.08, d + 0.03, sill), 0.0, 0.015, 0.0, ACCENT),
             *(_box((bar, d, h - sill), s * (w - bar) / 2, 0.0, sill, ACCENT) for s in (-1, 1)),
             *(_box((inner_w, d, bar), 0.0, 0.0, z, ACCENT) for z in (sill, h - bar)),
             _box((inner_w, 0.01, inner_h), 0.0, -d / 2 + 0.02, sill + bar)]
    if w > 1.0:
        parts.append(_box((0.04, 0.6 * d, inner_h), 0.0, -0.2 * d, sill + bar, ACCENT))
    return _Model(parts, [])


def _build_frame(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    bar = float(np.clip(0.06 * min(w, h), 0.015, 0.05))
    parts = [*(_box((bar, d, h), s * (w - bar) / 2, role=ACCENT) for s in (-1, 1)),
             *(_box((w - 2 * bar, d, bar), 0.0, 0.0, z, ACCENT) for z in (0.0, h - bar)),
             _box((w - 2 * bar, d / 2, h - 2 * bar), 0.0, -d / 4, bar)]
    return _Model(parts, [])


def _build_board(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    tray, rim = 0.02, 0.02
    parts = [_box((w - 2 * rim, d, h - tray - 2 * rim), 0.0, 0.0, tray + rim),
             *(_box((rim, d + 0.005, h - tray), s * (w - rim) / 2, 0.0025, tray, ACCENT) for s in (-1, 1)),
             *(_box((w - 2 * rim, d + 0.005, rim), 0.0, 0.0025, z, ACCENT) for z in (tray, h - rim)),
             _box((0.5 * w, d + 0.06, tray), 0.0, 0.03, 0.0, ACCENT)]
    return _Model(parts, [])


def _build_screen(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    return _Model([_box((w, d, h), role=ACCENT), _box((w - 0.04, 0.004, h - 0.04), 0.0, d / 2 + 0.002, 0.02)], [])


def _build_monitor(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    stand, panel, y = 0.3 * h, 0.035, -d / 2 + 0.06
    parts = [_box((0.35 * w, d, 0.015), role=ACCENT),
             _box((0.05, 0.03, stand + 0.05), 0.0, y - panel / 2 - 0.015, 0.015, ACCENT),
             _box((w, panel, h - stand), 0.0, y, stand, ACCENT),
             _box((w - 0.02, 0.003, h - stand - 0.02), 0.0, y + panel / 2 + 0.0015, stand + 0.01)]
    return _Model(parts, [])


def _build_laptop(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, _ = size   # the height follows from the lid's opening angle
    base = 0.018
    opened = _rot_x(rng.uniform(1.75, 2.0))   # lid opened 100-115 degrees about the hinge at the back edge
    hinge = (0.0, -d / 2, base)
    parts = [_box((w, d, base), role=ACCENT), _box((0.85 * w, 0.45 * d, 0.002), 0.0, -0.05 * d, base, HARDWARE),
             _moved(_box((w, d, 0.007), 0.0, d / 2), opened, hinge),
             _moved(_box((0.9 * w, 0.85 * d, 0.002), 0.0, d / 2, -0.002, HARDWARE), opened, hinge)]
    return _Model(parts, [])


def _build_lamp(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    r = min(w, d) / 2
    parts = [_revolved([(0.4 * r, 0.0), (0.4 * r, 0.02)], role=ACCENT),
             _revolved([(0.012, 0.02), (0.012, 0.62 * h)], role=ACCENT),
             _revolved([(r, 0.6 * h), (0.6 * r, h)])]
    return _Model(parts, [])


def _build_round(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    return _Model([_revolved([(r * w / 2, z * h) for r, z in cat.profile], y_scale=d / w)], [])


def _build_mug(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    r = min(d, w - 0.025) / 2
    parts = [_revolved([(r, 0.0), (r, h)]),
             *(_box((0.022, 0.012, 0.012), r + 0.008, 0.0, z) for z in (0.2 * h, 0.7 * h)),
             _box((0.012, 0.012, 0.5 * h + 0.012), r + 0.016, 0.0, 0.2 * h)]
    return _Model(parts, [])


def _build_plant(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    pot_r, pot_h = min(w, d) / 2 * rng.uniform(0.45, 0.65), h * rng.uniform(0.25, 0.35)
    parts = [_revolved([(0.75 * pot_r, 0.0), (pot_r, pot_h)], role=ACCENT)]
    blobs = rng.integers(3, 6)
    tops = []
    for k in range(blobs):
        r = min(w, d) / 2 * rng.uniform(0.3, 0.45)
        rz = r * rng.uniform(0.8, 1.3)
        z = h - rz if k == 0 else rng.uniform(pot_h + 0.5 * rz, h - rz)
        parts.append(_blob((r, r, rz), (rng.uniform(-1, 1) * (w / 2 - r), rng.uniform(-1, 1) * (d / 2 - r), z)))
        tops.append(z)
    parts.append(_revolved([(0.012, pot_h - 0.02), (0.012, max(tops))]))
    return _Model(parts, [])


def _build_soft(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    return _Model([_blob((w / 2, d / 2, h / 2), (0.0, 0.0, h / 2), 0.5)], [])


def _build_bag(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    body = h - 0.1
    parts = [_blob((w / 2, d / 2, body / 2), (0.0, 0.0, body / 2), 0.6),
             *(_box((0.02, 0.015, 0.12), s * w / 4, 0.0, body - 0.02, ACCENT) for s in (-1, 1)),
             _box((w / 2 + 0.02, 0.015, 0.02), 0.0, 0.0, h - 0.02, ACCENT)]
    return _Model(parts, [])


def _build_backpack(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    parts = [_blob((w / 2, 0.35 * d, h / 2), (0.0, -0.15 * d, h / 2), 0.7),
             _blob((0.35 * w, 0.15 * d, 0.22 * h), (0.0, 0.15 * d, 0.3 * h), 0.7, ACCENT)]
    return _Model(parts, [])


def _build_disc(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    r, facing = min(w, h) / 2, _rot_x(-np.pi / 2)   # the revolution axis becomes +y
    parts = [_moved(_revolved([(r, 0.0), (r, d)], role=ACCENT), facing),
             _moved(_revolved([(0.9 * r, d), (0.9 * r, d + 0.003)]), facing)]
    parts += [_moved(_box((0.008, 0.003, length * r), 0.0, d + 0.0045, role=HARDWARE),
                     _rot_y(rng.uniform(0.0, 2.0 * np.pi))) for length in (0.55, 0.8)]
    return _Model(parts, [])


def _build_appliance(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    parts = [_box((w, d - 0.01, h), 0.0, -0.005),
             _box((0.62 * w, 0.01, 0.75 * h), -w / 2 + 0.03 + 0.31 * w, d / 2 - 0.005, 0.125 * h, HARDWARE),
             _box((0.22 * w, 0.01, 0.75 * h), w / 2 - 0.03 - 0.11 * w, d / 2 - 0.005, 0.125 * h, ACCENT)]
    return _Model(parts, [])


def _build_printer(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    parts = [_box((w, d, h)), _box((0.8 * w, 0.45 * d, 0.012), 0.0, -0.2 * d, h, HARDWARE),
             _box((0.6 * w, 0.14, 0.012), 0.0, d / 2 + 0.07, 0.45 * h, ACCENT)]
    return _Model(parts, [])


def _build_book(size: np.ndarray, rng: np.random.Generator, cat: Category) -> _Model:
    w, d, h = size
    cover = 0.003
    parts = [_box((w, d, cover)), _box((w, d, cover), z0=h - cover), _box((cover, d, h - 2 * cover), (cover - w) / 2,
                                                                          0.0, cover),
             _box((w - cover - 0.004, d - 0.008, h - 2 * cover), (cover - 0.004) / 2, 0.0, cover, ACCENT)]
    return _Model(parts, [])


_Builder = Callable[[np.ndarray, np.random.Generator, Category], _Model]
_BUILDERS: dict[Shape, _Builder] = {
    Shape.BOX: _build_box, Shape.DOORS: _build_doors, Shape.DRAWERS: _build_drawers, Shape.TABLE: _build_table,
    Shape.DESK: _build_desk, Shape.COUNTER: _build_counter, Shape.CHAIR: _build_chair,
    Shape.OFFICE_CHAIR: _build_office_chair, Shape.STOOL: _build_stool, Shape.SOFA: _build_sofa,
    Shape.BED: _build_bed, Shape.SHELF: _build_shelving, Shape.BOOKSHELF: _build_shelving, Shape.TUB: _build_tub,
    Shape.SINK: _build_sink, Shape.TOILET: _build_toilet, Shape.STOVE: _build_stove, Shape.RADIATOR: _build_radiator,
    Shape.CURTAIN: _build_curtain, Shape.DOOR: _build_door, Shape.WINDOW: _build_window, Shape.FRAME: _build_frame,
    Shape.BOARD: _build_board, Shape.SCREEN: _build_screen, Shape.MONITOR: _build_monitor,
    Shape.LAPTOP: _build_laptop, Shape.LAMP: _build_lamp, Shape.ROUND: _build_round, Shape.MUG: _build_mug,
    Shape.PLANT: _build_plant, Shape.SOFT: _build_soft, Shape.BAG: _build_bag, Shape.BACKPACK: _build_backpack,
    Shape.DISC: _build_disc, Shape.APPLIANCE: _build_appliance, Shape.PRINTER: _build_printer,
    Shape.BOOK: _build_book,
}


class _Candidate(NamedTuple):
    """A built object in its own frame (footprint centred on the origin, base at z = 0), not yet placed."""

    category: Category
    parts: list[_Part]
    size: np.ndarray
    surfaces: list[tuple[float, float, float, float, float, float]]


def _candidate(cat: Category, rng: np.random.Generator, size: np.ndarray | None = None) -> _Candidate:
    """Build an instance of ``cat`` with ``size`` (drawn from the category's ranges when None), re-centred so that
    its tight local bounds are centred in x, y and start at z = 0."""
    if size is None:
        size = np.array([rng.uniform(*r) for r in cat.size])
    model = _BUILDERS[cat.shape](size, rng, cat)
    vertices = np.vstack([p.vertices for p in model.parts])
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    shift = np.array([-(low[0] + high[0]) / 2, -(low[1] + high[1]) / 2, -low[2]])
    parts = [p._replace(vertices=p.vertices + shift) for p in model.parts]
    surfaces = [(x + shift[0], y + shift[1], w, d, z + shift[2], c) for x, y, w, d, z, c in model.surfaces]
    return _Candidate(cat, parts, high - low, surfaces)


# ----------------------------------------------------------------------------------------------------------------
# Room shell and layout


def _room_outline(rng: np.random.Generator, side: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Footprint polygon (CCW), its rectangles and the bounding-box part outside it (the L's notch; (0, 4) if none)."""
    width, depth = rng.uniform(*side, size=2)
    if min(width, depth) >= 4.0 and rng.random() < L_SHAPE_PROBABILITY:
        nw, nd = width * rng.uniform(0.3, 0.45), depth * rng.uniform(0.3, 0.45)
        polygon = np.array([[0, 0], [width, 0], [width, depth - nd], [width - nw, depth - nd], [width - nw, depth],
                            [0, depth]], dtype=np.float64)
        rectangles = np.array([[0, 0, width, depth - nd], [0, depth - nd, width - nw, depth]])
        notch = np.array([[width - nw, depth - nd, width, depth]])
    else:
        polygon = np.array([[0, 0], [width, 0], [width, depth], [0, depth]], dtype=np.float64)
        rectangles, notch = np.array([[0, 0, width, depth]]), np.zeros((0, 4))
    # A random quarter turn puts the notch at any corner; rotating keeps the polygon counter-clockwise.
    rotation = rotation_z(rng.integers(4) * np.pi / 2)[:2, :2]
    polygon = polygon @ rotation.T
    offset = polygon.min(axis=0)
    polygon = np.round(polygon - offset, 9)

    def turn(rects: np.ndarray) -> np.ndarray:
        corners = np.stack((rects[:, :2], rects[:, 2:]), axis=1) @ rotation.T - offset
        return np.round(np.concatenate((corners.min(axis=1), corners.max(axis=1)), axis=1), 9)

    return polygon, turn(rectangles), turn(notch)


def _slabs(rectangles: np.ndarray, z0: float) -> list[_Part]:
    """Boxes SLAB thick from ``z0`` over the footprint rectangles (floor or ceiling)."""
    return [_box((x1 - x0, y1 - y0, SLAB), (x0 + x1) / 2, (y0 + y1) / 2, z0) for x0, y0, x1, y1 in rectangles]


class _Layout:
    """Mutable state while furnishing one room: the objects so far and keep-out volumes."""

    def __init__(self, rng: np.random.Generator, room_type: RoomType) -> None:
        self.rng = rng
        self.room_type = room_type
        self.footprint, self.rectangles, notch = _room_outline(rng, room_type.side)
        self.size = self.footprint.max(axis=0)
        self.height = rng.uniform(*CEILING_RANGE)
        self.thickness = rng.uniform(*WALL_THICKNESS_RANGE)
        self.objects: list[SceneObject] = []
        self.blocked = [OrientedBox(np.array([(x0 + x1) / 2, (y0 + y1) / 2, self.height / 2]),
                                    np.array([x1 - x0, y1 - y0, self.height + 2.0]), 0.0) for x0, y0, x1, y1 in notch]
        self.wall_slot: dict[int, tuple[int, float]] = {}   # instance id -> (wall index, position along the wall)
        segments = list(zip(self.footprint, np.roll(self.footprint, -1, axis=0)))
        self.walls = tuple(Wall(start, end, i + 1) for i, (start, end) in enumerate(segments))
        self.paint = self._color(category("wall"))

    # -- objects ---------------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Furnishing objects so far (all but walls and floor)."""
        return sum(o.category.placement is not Placement.STRUCTURE for o in self.objects)

    def _color(self, cat: Category) -> np.ndarray:
        base = np.asarray(cat.palette[self.rng.integers(len(cat.palette))], dtype=np.float64)
        return np.clip(base * self.rng.uniform(0.9, 1.1), 0, 255)

    def _add(self, cat: Category, parts: list[_Part], origin: np.ndarray, yaw: float, support_id: int,
             surfaces: Sequence[tuple[float, ...]] = (), color: np.ndarray | None = None) -> SceneObject:
        """Create the next object from ``parts`` in its frame placed at ``origin`` (3,) with ``yaw`` (base colour
        from the category's palette unless ``color`` is given)."""
        rotation = rotation_z(yaw)
        local = np.vstack([p.vertices for p in parts])
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
        faces = np.vstack([p.faces + o for p, o in zip(parts, offsets)])
        roles = np.concatenate([np.full(len(p.faces), p.role) for p in parts])
        base = self._color(cat) if color is None else color
        accent = (np.asarray(cat.accents[self.rng.integers(len(cat.accents))], dtype=np.float64)
                  if cat.accents else 0.65 * base)
        hardware = np.asarray((METAL + DARK)[self.rng.integers(len(METAL + DARK))], dtype=np.float64)
        face_colors = np.stack((base, accent, hardware)).round().astype(np.uint8)[roles]
        mesh = trimesh.Trimesh(local @ rotation.T + origin, faces, face_colors=face_colors, process=False)
        low, high = local.min(axis=0), local.max(axis=0)
        box = OrientedBox(rotation @ ((low + high) / 2) + origin, high - low, float(yaw))
        material = cat.materials[self.rng.integers(len(cat.materials))]
        obj = SceneObject(
            instance_id=len(self.objects) + 1, class_index=class_index(cat.name), name=cat.name, mesh=mesh,
            color=base.round().astype(np.uint8), box=box, support_id=support_id, material=material,
            texture=_texture(MATERIALS[material], rotation, self.rng),
            surfaces=tuple(OrientedBox(rotation @ (x, y, z + c / 2) + origin, np.array([w, d, c]), float(yaw))
                           for x, y, w, d, z, c in surfaces))
        self.objects.append(obj)
        return obj

    def _fits(self, box: OrientedBox, ignore: int = 0, clearance: float = 0.0) -> bool:
        """Inside the room, under the ceiling and clear of every furnishing object but ``ignore``."""
        corners = box.corners_xy()
        if (np.any(corners < -1e-6) or np.any(corners > self.size + 1e-6) or box.bottom < -1e-9
                or box.top > self.height - 0.02):
            return False
        others = [o.box for o in self.objects
                  if o.category.placement is not Placement.STRUCTURE and o.instance_id != ignore] + self.blocked
        return not _overlapping(box, others, clearance).any()

    def _commit(self, cand: _Candidate, xy: np.ndarray, z: float, yaw: float, support_id: int = 0,
                clearance: float = 0.0) -> SceneObject | None:
        """Place ``cand`` with its footprint centre at ``xy`` and base at ``z`` if it fits and the room is not
        full."""
        if self.count >= MAX_OBJECTS:
            return None
        origin = np.array([xy[0], xy[1], z])
        box = OrientedBox(origin + (0.0, 0.0, cand.size[2] / 2), cand.size, float(yaw))
        if not self._fits(box, ignore=support_id, clearance=clearance):
            return None
        return self._add(cand.category, cand.parts, origin, yaw, support_id, cand.surfaces)

    # -- placement strategies ------------------------------------------------------------------------------

    def _at_wall(self, cand: _Candidate, wall_index: int | None = None, along: float | None = None,
                 z: float | None = None) -> SceneObject | None:
        """Back against a wall (random wall, position along it and height unless given), facing into the room;
        floor-standing things keep a random gap of up to 3 cm to the wall."""
        cat = cand.category
        mounted = cat.placement is Placement.WALL_MOUNTED
        lengths = np.array([w.length for w in self.walls])
        for _ in range(PLACEMENT_ATTEMPTS if along is None else 1):
            index = self.rng.choice(len(self.walls), p=lengths / lengths.sum()) if wall_index is None else wall_index
            wall = self.walls[index]
            if wall.length < cand.size[0]:
                continue
            a = self.rng.uniform(cand.size[0] / 2, wall.length - cand.size[0] / 2) if along is None else along
            gap = 0.0 if mounted else self.rng.uniform(0.0, 0.03)
            base = (self.rng.uniform(*cat.mount_height) if mounted else 0.0) if z is None else z
            xy = wall.start + wall.direction * a + wall.normal * (gap + cand.size[1] / 2)
            obj = self._commit(cand, xy, base, wall.yaw)
            if obj is not None:
                self.wall_slot[obj.instance_id] = (index, a)
                return obj
        return None

    def _free(self, cand: _Candidate) -> SceneObject | None:
        """On the free floor: tables, armchairs and rugs anywhere (0.25 m from other objects), smaller things near a
        wall (within 0.4 m of it, 0.1 m from other objects) so that the middle of the room stays walkable."""
        shape = cand.category.shape
        middle = shape in (Shape.TABLE, Shape.SOFA) or cand.size[2] < 0.05
        lengths = np.array([w.length for w in self.walls])
        for _ in range(PLACEMENT_ATTEMPTS):
            if middle:
                xy = self.rng.uniform(0.0, 1.0, 2) * self.size
            else:
                wall = self.walls[self.rng.choice(len(self.walls), p=lengths / lengths.sum())]
                reach = np.hypot(*cand.size[:2]) / 2
                xy = (wall.start + wall.direction * self.rng.uniform(0.0, wall.length)
                      + wall.normal * (reach + self.rng.uniform(0.0, 0.4)))
            if shape is Shape.SOFA:   # armchairs face the middle of the room
                centre = self.size / 2
                yaw = np.arctan2(*(centre - xy)[::-1]) - np.pi / 2 + self.rng.uniform(-0.3, 0.3)
            else:
                yaw = self.rng.integers(4) * np.pi / 2 + self.rng.uniform(-1, 1) * _YAW_JITTER.get(shape, 0.0)
            obj = self._commit(cand, xy, 0.0, yaw, clearance=0.25 if middle else 0.1)
            if obj is not None:
                return obj
        return None

    def _on(self, cand: _Candidate, supports: list[SceneObject], at: tuple[float, float] | None = None
            ) -> SceneObject | None:
        """On a support surface of one of ``supports`` (random surface and position, or ``at`` in the frame of the
        first surface), base exactly on the surface."""
        surfaces = [(obj, s) for obj in supports for s in obj.surfaces
                    if s.size[2] >= cand.size[2] and min(s.size[:2]) >= min(cand.size[:2])]
        if not surfaces:
            return None
        areas = np.array([s.size[0] * s.size[1] for _, s in surfaces])
        jitter = _YAW_JITTER.get(cand.category.shape, 0.0)
        for _ in range(PLACEMENT_ATTEMPTS if at is None else 1):
            support, surface = surfaces[self.rng.choice(len(surfaces), p=areas / areas.sum())] if at is None \
                else surfaces[0]
            local = self.rng.uniform(-0.5, 0.5, 2) * surface.size[:2] if at is None else np.asarray(at)
            yaw = surface.yaw + (self.rng.uniform(-1, 1) * jitter if at is None else 0.0)
            xy = surface.centre[:2] + surface.rotation[:2, :2] @ local
            footprint = (OrientedBox(np.array([*xy, 0.0]), cand.size, yaw).corners_xy() - surface.centre[:2]) \
                @ surface.rotation[:2, :2]
            if np.any(np.abs(footprint) > surface.size[:2] / 2 - 0.005):
                continue
            obj = self._commit(cand, xy, surface.bottom, yaw, support.instance_id)
            if obj is not None:
                return obj
        return None

    def place(self, name: str) -> SceneObject | None:
        """Place one instance of category ``name`` where its placement kind says, then its companions."""
        cat = category(name)
        obj = None
        for _ in range(CANDIDATES_PER_PLACEMENT):   # a fresh size each time: a smaller one may fit
            cand = _candidate(cat, self.rng)
            if cat.placement in (Placement.FLOOR_AGAINST_WALL, Placement.WALL_MOUNTED):
                obj = self._at_wall(cand)
            elif cat.placement is Placement.FLOOR_FREE:
                obj = self._free(cand)
            else:
                obj = self._on(cand, [o for o in self.objects if o.name in cat.supports])
            if obj is not None:
                break
        companions = _COMPANIONS.get(name)
        if obj is not None and companions is not None:
            companions(self, obj)
        return obj

    # -- companions ----------------------------------------------------------------------------------------

    def _facing(self, anchor: SceneObject, name: str, distance: float, lateral: float = 0.0,
                turn: float = 0.0, size: np.ndarray | None = None, z: float = 0.0) -> SceneObject | None:
        """An instance of ``name`` in front of ``anchor`` (``distance`` from its front to the instance's back along
        the anchor's facing, ``lateral`` along its x), turned by ``turn`` relative to the anchor."""
        cand = _candidate(category(name), self.rng, size)
        rotation = anchor.box.rotation[:2, :2]
        local = np.array([lateral, anchor.box.size[1] / 2 + distance + cand.size[1] / 2])
        return self._commit(cand, anchor.box.centre[:2] + rotation @ local, z, anchor.box.yaw + turn)

    def _seats_around(self, table: SceneObject) -> None:
        """Chairs at the sides of a table, facing it."""
        w, d = table.box.size[:2]
        per_side = max(1, int(w // 0.6))
        slots = [(s, x) for s in (0, 2) for x in (np.arange(per_side) - (per_side - 1) / 2) * (w / per_side)]
        if d >= 0.75:
            slots += [(1, 0.0), (3, 0.0)]
        count = self.rng.integers(min(2, len(slots)), len(slots) + 1)
        for index in self.rng.permutation(len(slots))[:count]:
            side, along = slots[index]
            # side k: the chair stands beyond the table's edge in the direction k * 90 degrees from its front.
            cand = _candidate(category("chair"), self.rng)
            reach = (d if side % 2 == 0 else w) / 2 + self.rng.uniform(0.03, 0.2) + cand.size[1] / 2
            outward = rotation_z(side * np.pi / 2)[:2, :2] @ np.array([0.0, 1.0])
            local = outward * reach + np.array([-outward[1], outward[0]]) * along
            yaw = table.box.yaw + side * np.pi / 2 + np.pi + self.rng.uniform(-0.12, 0.12)
            self._commit(cand, table.box.centre[:2] + table.box.rotation[:2, :2] @ local, 0.0, yaw)

    def _bed_companions(self, bed: SceneObject) -> None:
        wall_index, along = self.wall_slot[bed.instance_id]
        for side in (-1, 1):
            if self.rng.random() < 0.75:
                cand = _candidate(category("nightstand"), self.rng)
                a = along + side * (bed.box.size[0] / 2 + self.rng.uniform(0.02, 0.1) + cand.size[0] / 2)
                stand = self._at_wall(cand, wall_index, a)
                if stand is not None and self.rng.random() < 0.6:
                    self._on(_candidate(category("lamp"), self.rng), [stand])
        for _ in range(self.rng.integers(1, 4)):
            self._on(_candidate(category("pillow"), self.rng), [bed])

    def _desk_companions(self, desk: SceneObject) -> None:
        office = self.room_type.name == "office"
        self._facing(desk, "office chair" if office else "chair", self.rng.uniform(0.05, 0.3), turn=np.pi)
        surface = desk.surfaces[0]
        if self.rng.random() < (0.9 if office else 0.3):
            monitor = _candidate(category("monitor"), self.rng)
            back = -surface.size[1] / 2 + monitor.size[1] / 2 + 0.04
            if self._on(monitor, [desk], at=(0.0, back)) is not None:
                keyboard = _candidate(category("keyboard"), self.rng)
                front = back + monitor.size[1] / 2 + 0.08 + keyboard.size[1] / 2
                self._on(keyboard, [desk], at=(0.0, front))
        elif self.rng.random() < 0.4:
            self._on(_candidate(category("laptop"), self.rng), [desk])

    def _sofa_companions(self, sofa: SceneObject) -> None:
        if self.rng.random() < 0.8:
            self._facing(sofa, "coffee table", self.rng.uniform(0.35, 0.5))
        for _ in range(self.rng.integers(0, 3)):
            self._on(_candidate(category("pillow"), self.rng), [sofa])

    def _window_companions(self, window: SceneObject) -> None:
        if self.room_type.name == "bathroom" or self.rng.random() > 0.5:
            return
        wall_index, along = self.wall_slot[window.instance_id]
        cat = category("curtain")
        bottom = self.rng.uniform(*cat.mount_height)
        height = min(window.box.top + 0.15, self.height - 0.05) - bottom
        for side in (-1, 1):
            size = np.array([self.rng.uniform(*cat.size[0]), self.rng.uniform(*cat.size[1]), height])
            cand = _candidate(cat, self.rng, size)
            self._at_wall(cand, wall_index, along + side * (window.box.size[0] + cand.size[0]) / 2 + side * 0.01,
                          bottom)

    def _tub_companions(self, tub: SceneObject) -> None:
        if self.rng.random() < 0.8:
            cat = category("shower curtain")
            size = np.array([tub.box.size[0] * self.rng.uniform(0.3, 0.5), self.rng.uniform(*cat.size[1]),
                             self.rng.uniform(*cat.size[2])])
            side = self.rng.choice([-1.0, 1.0])
            self._facing(tub, cat.name, 0.01, lateral=side * (tub.box.size[0] - size[0]) / 2, size=size,
                         z=self.rng.uniform(*cat.mount_height))

    def _sink_companions(self, sink: SceneObject) -> None:
        if self.room_type.name == "bathroom" and self.rng.random() < 0.7:
            wall_index, along = self.wall_slot[sink.instance_id]
            self._at_wall(_candidate(category("mirror"), self.rng), wall_index, along,
                          z=sink.box.top + self.rng.uniform(0.15, 0.35))

    # -- shell ---------------------------------------------------------------------------------------------

    def build_shell(self) -> Door:
        """Walls (with the door opening), floor, the door and the keep-out zone of its swing; returns the door."""
        cat = category("door")
        size = np.array([self.rng.uniform(*r) for r in cat.size])
        usable = [i for i, w in enumerate(self.walls) if w.length >= size[0] + 0.8]
        wall_index = usable[self.rng.integers(len(usable))]
        door_wall = self.walls[wall_index]
        along = self.rng.uniform(size[0] / 2 + 0.3, door_wall.length - size[0] / 2 - 0.3)
        for i, wall in enumerate(self.walls):
            # A wall reaches past a convex corner by its thickness, so the corner is closed from outside.
            outgoing = self.walls[(i + 1) % len(self.walls)].direction
            convex_end = wall.direction[0] * outgoing[1] - wall.direction[1] * outgoing[0] > 0
            end = wall.length + (self.thickness if convex_end else 0.0)
            spans = [(0.0, end, -SLAB, self.height + SLAB)]
            if i == wall_index:
                a0, a1 = along - size[0] / 2, along + size[0] / 2
                spans = [(0.0, a0, -SLAB, self.height + SLAB), (a1, end, -SLAB, self.height + SLAB),
                         (a0, a1, -SLAB, 0.0), (a0, a1, size[2], self.height + SLAB)]
            parts = [_box((s1 - s0, self.thickness, z1 - z0), (s0 + s1) / 2, -self.thickness / 2, z0)
                     for s0, s1, z0, z1 in spans]
            self._add(category("wall"), parts, np.array([*wall.start, 0.0]), wall.yaw, 0, color=self.paint)
        self._add(category("floor"), _slabs(self.rectangles, -SLAB), np.zeros(3), 0.0, 0)
        cand = _candidate(cat, self.rng, size)
        # The casing's front stands DOOR_CASING in front of the wall face; the leaf sits inside the wall.
        xy = door_wall.start + door_wall.direction * along + door_wall.normal * (DOOR_CASING - cand.size[1] / 2)
        door = self._add(cat, cand.parts, np.array([*xy, 0.0]), door_wall.yaw, 0)
        swing = OrientedBox(np.array([*(door_wall.start + door_wall.direction * along + door_wall.normal * 0.5),
                                      (size[2] + 0.15) / 2]), np.array([size[0] + 0.4, 1.0, size[2] + 0.05]),
                            door_wall.yaw)
        self.blocked.append(swing)
        centre = np.array([*(door_wall.start + door_wall.direction * along), 0.0])
        return Door(wall_index, centre, np.array([*door_wall.normal, 0.0]), float(size[0]), float(size[2]),
                    door.instance_id)

    def furnish(self) -> None:
        """Anchors (with companions), windows, extras and small things until the target count."""
        rng, room_type = self.rng, self.room_type
        for name, low, high in room_type.anchors:
            for _ in range(rng.integers(low, high + 1)):
                self.place(name)
        for _ in range(rng.integers(0, 2 if room_type.name == "bathroom" else 4)):
            self.place("window")
        area = float(np.sum((self.rectangles[:, 2] - self.rectangles[:, 0])
                            * (self.rectangles[:, 3] - self.rectangles[:, 1])))
        target = int(np.clip(rng.uniform(0.8, 1.2) * (8 + 1.3 * area), MIN_OBJECTS, MAX_OBJECTS))
        passes = ((room_type.extras, max(self.count, int(0.7 * target)), 60), (room_type.small, target, 200),
                  (room_type.small + room_type.extras, MIN_OBJECTS, 400))
        for pool, goal, attempts in passes:
            for _ in range(attempts):
                if self.count >= goal:
                    break
                # Category weight, damped by the instances already there so that rooms stay varied.
                present = [o.name for o in self.objects]
                weights = np.array([category(n).weight / (1 + present.count(n)) ** 2 for n in pool])
                self.place(pool[rng.choice(len(pool), p=weights / weights.sum())])


_COMPANIONS: dict[str, Callable[[_Layout, SceneObject], None]] = {
    "bed": _Layout._bed_companions, "desk": _Layout._desk_companions, "table": _Layout._seats_around,
    "sofa": _Layout._sofa_companions, "window": _Layout._window_companions, "bathtub": _Layout._tub_companions,
    "sink": _Layout._sink_companions,
}


def generate_scene(seed: int, room_type: str | None = None) -> SyntheticScene:
    """A furnished room, identical for equal ``seed`` and ``room_type`` (random room type when None)."""
    rng = np.random.default_rng(seed)
    names = sorted(ROOM_TYPES)
    kind = ROOM_TYPES[room_type if room_type is not None else names[rng.integers(len(names))]]
    layout = _Layout(rng, kind)
    door = layout.build_shell()
    layout.furnish()
    ceiling_parts = _slabs(layout.rectangles, layout.height)
    room = Room(layout.footprint, layout.rectangles, float(layout.height), float(layout.thickness), layout.walls,
                door, np.array([245, 245, 242], dtype=np.uint8), _texture(MATERIALS["paint"], np.eye(3), rng))
    objects = tuple(layout.objects)
    meshes = [(o.mesh.vertices, o.mesh.faces) for o in objects]
    meshes += [(p.vertices, p.faces) for p in ceiling_parts]
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])
    vertices = np.vstack([v for v, _ in meshes])
    faces = np.vstack([f + o for (_, f), o in zip(meshes, offsets)])
    ceiling_faces = sum(len(p.faces) for p in ceiling_parts)
    face_instance = np.concatenate([np.full(len(o.mesh.faces), o.instance_id, dtype=np.int32) for o in objects]
                                   + [np.zeros(ceiling_faces, dtype=np.int32)])
    face_class = np.concatenate([np.full(len(o.mesh.faces), o.class_index, dtype=np.uint8) for o in objects]
                                + [np.full(ceiling_faces, IGNORE_INDEX, dtype=np.uint8)])
    face_color = np.concatenate([o.mesh.visual.face_colors[:, :3] for o in objects]
                                + [np.broadcast_to(room.ceiling_color, (ceiling_faces, 3))]).astype(np.uint8)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return SyntheticScene(f"synthetic_{seed:06d}", seed, kind.name, room, objects, mesh, face_instance, face_class,
                          face_color)
