"""Rendering of synthetic scenes: scan-like surface point clouds and ray-cast RGB-D views with labels.

Point colours and image colours come from the same albedo function (face base colour times the object's texture at
the surface point), so they agree up to the lighting of a view.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ov3d_ros.data.synthetic.categories import IGNORE_INDEX
from ov3d_ros.data.synthetic.layout import SyntheticScene, free_space
from ov3d_ros.data.synthetic.sensors import LightingSpec
from ov3d_ros.geometry.camera import PinholeCamera

VISIBILITY_VIEWPOINTS = 24         # scanner positions a surface point must be visible from (any one of them)
VIEWPOINT_HEIGHT = (0.5, 1.8)      # metres above the floor
VIEWPOINT_CLEARANCES = (0.3, 0.15, 0.0)  # from furniture, tried in order until free floor is found
RAY_OFFSET = 1e-3                  # visibility rays start this far off the surface along its normal
MIN_FACING_COSINE = 0.05           # surfaces seen at grazing angles flatter than this are not scanned
POINT_COLOR_NOISE = 4.0            # per-point colour noise, standard deviation in 8-bit levels
HEADLIGHT_SHARE = 0.25             # part of the direct light that comes from the viewer (a handheld's flash)
DEFAULT_LIGHT = LightingSpec()


class SurfacePoints(NamedTuple):
    """A labelled point cloud: ``xyz`` (N, 3) float32 world metres, ``rgb`` (N, 3) uint8, ``labels`` (N,) int64 class
    indices (255 for the ceiling), ``instance`` (N,) int64 instance ids (0 for the ceiling)."""

    xyz: np.ndarray
    rgb: np.ndarray
    labels: np.ndarray
    instance: np.ndarray


@dataclass(frozen=True, eq=False)
class RenderedView:
    """One ray-cast view. ``depth`` (H, W) float32 metres along the optical axis; ``color`` (H, W, 3) uint8;
    ``labels`` (H, W) uint8 class indices (255: no hit / ignore); ``instance`` (H, W) int32 (0: none); ``normals``
    (H, W, 3) float32 unit normals in the camera frame, facing the camera; ``incidence`` (H, W) float32 cosine
    between the viewing ray and the normal. Depth, normals and incidence are NaN where the ray hits nothing."""

    camera: PinholeCamera
    camera_to_world: np.ndarray
    depth: np.ndarray
    color: np.ndarray
    labels: np.ndarray
    instance: np.ndarray
    normals: np.ndarray
    incidence: np.ndarray


def surface_albedo(scene: SyntheticScene, points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) in [0, 1] of surface ``points`` (N, 3) on scene mesh ``faces`` (N,): the face's base colour
    modulated by its instance's texture."""
    frequencies, phases, amplitudes = scene.texture_table
    instance = scene.face_instance[faces]
    waves = np.einsum("nkj,nj->nk", frequencies[instance], points.astype(np.float32)) + phases[instance]
    brightness = 1.0 + np.sum(amplitudes[instance] * np.sin(waves), axis=1)
    return np.clip(scene.face_color[faces] / 255.0 * brightness[:, None], 0.0, 1.0)


def _viewpoints(scene: SyntheticScene, rng: np.random.Generator) -> np.ndarray:
    """VISIBILITY_VIEWPOINTS random scanner positions (M, 3) over the free floor."""
    for clearance in VIEWPOINT_CLEARANCES:
        cells = free_space(scene, clearance=clearance).centres()
        if len(cells):
            break
    chosen = cells[rng.integers(len(cells), size=VISIBILITY_VIEWPOINTS)]
    return np.column_stack((chosen, rng.uniform(*VIEWPOINT_HEIGHT, VISIBILITY_VIEWPOINTS)))


def _visible(scene: SyntheticScene, points: np.ndarray, normals: np.ndarray, viewpoints: np.ndarray) -> np.ndarray:
    """Which points face, and are in unobstructed line of sight of, at least one of the viewpoints."""
    visible = np.zeros(len(points), dtype=bool)
    origins = points + RAY_OFFSET * normals
    for viewpoint in viewpoints:
        pending = np.flatnonzero(~visible)
        offset = viewpoint - origins[pending]
        distance = np.linalg.norm(offset, axis=1)
        direction = offset / distance[:, None]
        facing = np.einsum("ij,ij->i", direction, normals[pending]) > MIN_FACING_COSINE
        pending, direction, distance = pending[facing], direction[facing], distance[facing]
        hits = scene.raycast(origins[pending], direction)
        visible[pending[hits.distance >= distance]] = True
    return visible


def sample_surface_points(scene: SyntheticScene, rng: np.random.Generator, spacing: float = 0.02) -> SurfacePoints:
    """About one point per ``spacing``^2 of the surfaces a scanner moving through the room would see.

    Points are sampled uniformly by area over the whole scene mesh, then kept only when they face and are in line
    of sight of one of a set of random scanner positions over the free floor: so nothing inside or under objects,
    behind furniture against walls or outside the room survives. Colours are the albedo plus per-point noise.
    """
    mesh = scene.mesh
    areas = mesh.area_faces
    count = round(areas.sum() / spacing ** 2)
    faces = rng.choice(len(areas), size=count, p=areas / areas.sum())
    root, r2 = np.sqrt(rng.random(count)), rng.random(count)
    weights = np.stack((1.0 - root, root * (1.0 - r2), root * r2), axis=1)
    points = np.einsum("nk,nkj->nj", weights, mesh.triangles[faces])
    keep = _visible(scene, points, mesh.face_normals[faces], _viewpoints(scene, rng))
    points, faces = points[keep], faces[keep]
    rgb = surface_albedo(scene, points, faces) * 255.0 + rng.normal(0.0, POINT_COLOR_NOISE, (len(points), 3))
    return SurfacePoints(points.astype(np.float32), np.clip(rgb, 0, 255).round().astype(np.uint8),
                         scene.face_class[faces].astype(np.int64), scene.face_instance[faces].astype(np.int64))


def pixel_rays(camera: PinholeCamera) -> np.ndarray:
    """Camera-frame ray directions (H*W, 3) with z = 1 through the pixel centres (integer u, v), row-major."""
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    return np.stack(((u.ravel() - camera.cx) / camera.fx, (v.ravel() - camera.cy) / camera.fy,
                     np.ones(u.size)), axis=1)


def render_view(scene: SyntheticScene, camera: PinholeCamera, camera_to_world: np.ndarray,
                light: LightingSpec = DEFAULT_LIGHT) -> RenderedView:
    """Ray-cast one pinhole view (optical frame: z forward, x right, y down) of the scene."""
    camera_to_world = np.asarray(camera_to_world, dtype=np.float64)
    rotation, origin = camera_to_world[:3, :3], camera_to_world[:3, 3]
    rays = pixel_rays(camera)
    length = np.linalg.norm(rays, axis=1)
    directions = (rays / length[:, None]) @ rotation.T
    hits = scene.raycast(np.broadcast_to(origin, directions.shape), directions)
    hit = hits.face >= 0
    shape = (camera.height, camera.width)
    depth = np.full(rays.shape[0], np.nan)
    depth[hit] = hits.distance[hit] / length[hit]
    normals = hits.normal[hit]
    cosine = np.einsum("ij,ij->i", normals, directions[hit])
    normals = np.where(cosine[:, None] > 0, -normals, normals)     # two-sided: face the camera
    incidence = np.abs(cosine)
    points = origin + directions[hit] * hits.distance[hit, None]
    albedo = surface_albedo(scene, points, hits.face[hit])
    lambert = np.clip(normals @ -light.unit_direction, 0.0, 1.0)
    direct = (1.0 - HEADLIGHT_SHARE) * lambert + HEADLIGHT_SHARE * incidence
    shade = light.exposure * (light.ambient + (1.0 - light.ambient) * direct)
    color = np.zeros((rays.shape[0], 3), dtype=np.uint8)
    color[hit] = (np.clip(albedo * shade[:, None] * np.asarray(light.tint), 0.0, 1.0) * 255.0).round()
    labels = np.full(rays.shape[0], IGNORE_INDEX, dtype=np.uint8)
    labels[hit] = scene.face_class[hits.face[hit]]
    instance = np.zeros(rays.shape[0], dtype=np.int32)
    instance[hit] = scene.face_instance[hits.face[hit]]
    camera_normals = np.full((rays.shape[0], 3), np.nan, dtype=np.float32)
    camera_normals[hit] = normals @ rotation
    cosines = np.full(rays.shape[0], np.nan, dtype=np.float32)
    cosines[hit] = incidence
    return RenderedView(camera, camera_to_world, depth.astype(np.float32).reshape(shape), color.reshape(*shape, 3),
                        labels.reshape(shape), instance.reshape(shape), camera_normals.reshape(*shape, 3),
                        cosines.reshape(shape))
