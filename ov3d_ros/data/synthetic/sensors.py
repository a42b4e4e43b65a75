"""Sensors of the synthetic world: a handheld RGB-D camera (ScanNet / RealSense-like intrinsics, depth noise,
lighting, scanning trajectories) and a spinning LiDAR on a ground robot."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from ov3d_ros.data.synthetic.categories import MATERIALS
from ov3d_ros.data.synthetic.layout import FreeSpace, SyntheticScene, free_space
from ov3d_ros.geometry.camera import PinholeCamera

if TYPE_CHECKING:
    from ov3d_ros.data.synthetic.render import RenderedView

SCANNET_FOCAL = 577.87              # ScanNet depth focal length at 640 x 480, pixels
GRID_RESOLUTION = 0.1               # free-space grid for path planning, metres
LOOP_STEP = 0.02                    # spacing of the planned loop's samples, metres
MIN_LOOP_AREA = 3.0                 # m^2 of connected free floor wanted for a path
LOOP_WAYPOINTS = 8                  # angular sectors around the free space's centre with one waypoint each
NOD_PERIOD = 1.5                    # metres of path per up-and-down sweep of the camera
SMOOTHING = 0.4                     # Gaussian smoothing of paths and view directions, metres of path (sigma)
WALK_SPEED = 0.3                    # handheld scanning speed, m/s
ROBOT_SPEED = 0.5                   # ground robot speed, m/s
CAMERA_TURN_RATE = np.deg2rad(40.0)  # fastest turn of the handheld camera, rad/s (it slows down to turn)
ROBOT_TURN_RATE = np.deg2rad(45.0)
CAMERA_HEIGHT = (1.2, 1.7)
CAMERA_CLEARANCE = 0.35             # from furniture and walls, metres (relaxed when the room is too full)
ROBOT_CLEARANCE = 0.4
ROBOT_SENSOR_HEIGHT = (0.5, 1.0)
TABLE_HEIGHT = (0.3, 1.1)           # support tops the camera pitches down toward
LIDAR_MIN_RANGE = 0.3


@dataclass(frozen=True)
class LightingSpec:
    """Lighting of one view: ``direction`` the light travels in the world (normalised when used), ``ambient``
    share in [0, 1], ``exposure`` gain and per-channel ``tint`` (white balance)."""

    direction: tuple[float, float, float] = (0.3, 0.2, -0.93)
    ambient: float = 0.35
    exposure: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def unit_direction(self) -> np.ndarray:
        d = np.asarray(self.direction, dtype=np.float64)
        return d / np.linalg.norm(d)


def random_lighting(rng: np.random.Generator) -> LightingSpec:
    """Per-frame lighting variation: light from above at 40-85 degrees elevation, ambient 0.25-0.5, exposure
    0.75-1.25 and a white-balance tint within +-6 %."""
    elevation, azimuth = np.deg2rad(rng.uniform(40.0, 85.0)), rng.uniform(0.0, 2.0 * np.pi)
    direction = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), -np.sin(elevation))
    return LightingSpec(tuple(float(x) for x in direction), float(rng.uniform(0.25, 0.5)),
                        float(rng.uniform(0.75, 1.25)), tuple(float(x) for x in 1.0 + rng.uniform(-0.06, 0.06, 3)))


def default_camera(width: int = 640, height: int = 480) -> PinholeCamera:
    """ScanNet / RealSense-like intrinsics (fx = fy = 577.87 at 640 x 480), scaled to the image size."""
    return PinholeCamera(width, height, SCANNET_FOCAL * width / 640.0, SCANNET_FOCAL * height / 480.0,
                         (width - 1) / 2.0, (height - 1) / 2.0)


@dataclass(frozen=True)
class DepthNoise:
    """Structured-light / active-stereo depth noise (Kinect / RealSense-like).

    Axial sigma = ``sigma_base + sigma_quadratic * max(z - sigma_offset, 0)^2`` (about 1.4 mm at 1 m and 1.7 cm
    at 4 m), then quantisation to ``quantization`` metres. Depth goes missing outside [``min_range``,
    ``max_range``], with probability ``grazing_dropout`` where the incidence cosine is below ``grazing_cosine``,
    with probability ``edge_dropout`` next to depth jumps larger than ``edge_relative`` times the depth, and with
    probability ``random_dropout`` anywhere.
    """

    sigma_base: float = 0.001
    sigma_quadratic: float = 0.0012
    sigma_offset: float = 0.4
    quantization: float = 0.001
    min_range: float = 0.2
    max_range: float = 5.5
    grazing_cosine: float = 0.15
    grazing_dropout: float = 0.8
    edge_relative: float = 0.05
    edge_dropout: float = 0.5
    random_dropout: float = 0.002

    def sigma(self, depth: np.ndarray) -> np.ndarray:
        """Axial noise standard deviation (metres) at ``depth``."""
        return self.sigma_base + self.sigma_quadratic * np.maximum(np.asarray(depth) - self.sigma_offset, 0.0) ** 2


def apply_depth_noise(view: RenderedView, rng: np.random.Generator, params: DepthNoise = DepthNoise()) -> np.ndarray:
    """A noisy copy (H, W) float32 metres of ``view.depth`` with NaN for missing depth."""
    depth = view.depth.astype(np.float64)
    valid = np.isfinite(depth)
    clean = np.where(valid, depth, 0.0)
    noisy = clean + rng.normal(size=depth.shape) * params.sigma(clean)
    noisy = np.round(noisy / params.quantization) * params.quantization
    padded = np.pad(depth, 1, mode="edge")
    neighbours = np.stack((padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]))
    jump = np.nan_to_num(np.abs(neighbours - depth), nan=np.inf).max(axis=0)
    grazing = np.nan_to_num(view.incidence, nan=0.0) < params.grazing_cosine
    draws = rng.random((3, *depth.shape))
    missing = (~valid | (clean < params.min_range) | (clean > params.max_range)
               | (grazing & (draws[0] < params.grazing_dropout))
               | ((jump > params.edge_relative * clean) & (draws[1] < params.edge_dropout))
               | (draws[2] < params.random_dropout))
    return np.where(missing, np.nan, noisy).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Paths through free space


def _largest_free_region(scene: SyntheticScene, clearance: float) -> tuple[FreeSpace, np.ndarray]:
    """The free-space grid at the largest clearance (``clearance`` down to a quarter of it) whose biggest connected
    region covers MIN_LOOP_AREA (else the one at a quarter), and that region's mask."""
    for factor in (1.0, 0.75, 0.5, 0.25):
        grid = free_space(scene, GRID_RESOLUTION, clearance * factor)
        labels, count = ndimage.label(grid.mask, structure=np.ones((3, 3)))
        if count:
            region = labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])
            if region.sum() * GRID_RESOLUTION ** 2 >= MIN_LOOP_AREA:
                break
    if not count:
        raise ValueError(f"{scene.scene_id}: no free floor {clearance * factor:.2f} m away from everything")
    return grid, region


def _grid_path(region: np.ndarray, waypoints: np.ndarray) -> np.ndarray:
    """Cell indices (M, 2) of the closed shortest 8-connected path through ``waypoints`` (K, 2) in ``region``."""
    index = np.full(region.shape, -1)
    cells = np.argwhere(region)
    index[tuple(cells.T)] = np.arange(len(cells))
    rows, cols, weights = [], [], []
    for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1)):
        neighbour = cells + (di, dj)
        inside = np.all((neighbour >= 0) & (neighbour < region.shape), axis=1)
        target = np.full(len(cells), -1)
        target[inside] = index[tuple(neighbour[inside].T)]
        linked = target >= 0
        rows.append(np.flatnonzero(linked))
        cols.append(target[linked])
        weights.append(np.full(linked.sum(), np.hypot(di, dj)))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(len(cells), len(cells))).tocsr()
    sources = index[tuple(waypoints.T)]
    _, predecessors = dijkstra(graph, directed=False, indices=sources, return_predecessors=True)
    path = []
    for k, source in enumerate(sources):
        node, leg = sources[(k + 1) % len(sources)], []
        while node != source and node >= 0:
            leg.append(node)
            node = predecessors[k, node]
        path += [source] + leg[::-1][:-1]
    return cells[path]


def _resample_closed(points: np.ndarray, step: float) -> np.ndarray:
    """The closed polyline ``points`` (M, 2) resampled every ``step`` metres of arc length."""
    closed = np.vstack((points, points[:1]))
    arc = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))))
    samples = np.arange(0.0, arc[-1], step)
    return np.stack([np.interp(samples, arc, closed[:, k]) for k in range(2)], axis=1)


def _smooth_closed(values: np.ndarray, sigma_m: float) -> np.ndarray:
    """Gaussian smoothing along a closed loop sampled every LOOP_STEP (axis 0)."""
    return ndimage.gaussian_filter1d(values, sigma_m / LOOP_STEP, axis=0, mode="wrap")


def _scan_loop(scene: SyntheticScene, rng: np.random.Generator, clearance: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth closed loop (M, 2) sampled every LOOP_STEP through the largest free region, visiting one waypoint
    per angular sector around the region's centre at a random fraction of the sector's reach; and that centre."""
    grid, region = _largest_free_region(scene, clearance)
    cells = np.argwhere(region)
    xy = grid.to_xy(cells)
    centre = xy.mean(axis=0)
    offset = xy - centre
    sector = ((np.arctan2(offset[:, 1], offset[:, 0]) + np.pi) / (2 * np.pi) * LOOP_WAYPOINTS).astype(int) \
        % LOOP_WAYPOINTS
    reach = np.linalg.norm(offset, axis=1)
    waypoints = []
    for k in range(LOOP_WAYPOINTS):
        members = np.flatnonzero(sector == k)
        if len(members):
            target = rng.uniform(0.5, 0.9) * reach[members].max()
            waypoints.append(members[np.argmin(np.abs(reach[members] - target))])
    if len(set(waypoints)) < 2:   # a region of one cell: circle inside it
        angles = np.arange(0.0, 2.0 * np.pi, LOOP_STEP / 0.1)
        return xy[waypoints[0]] + 0.1 * np.stack((np.cos(angles), np.sin(angles)), axis=1), centre
    path = grid.to_xy(_grid_path(region, cells[waypoints]))
    path = path[np.any(np.diff(path, axis=0, append=path[:1]) != 0, axis=1)]   # no repeated points
    loop = _resample_closed(path, LOOP_STEP)
    return _resample_closed(_smooth_closed(loop, SMOOTHING), LOOP_STEP), centre


def _smooth_noise(rng: np.random.Generator, count: int, sigma_m: float, scale: float, dims: int = 1) -> np.ndarray:
    """Smooth periodic noise (count, dims) along a loop with standard deviation ``scale``."""
    noise = _smooth_closed(rng.normal(size=(count, dims)), sigma_m)
    return noise / max(noise.std(), 1e-12) * scale


def _timed_positions(rotations: np.ndarray, count: int, rng: np.random.Generator, rate_hz: float | None,
                     speed: float, max_turn_rate: float) -> np.ndarray:
    """Arc-length positions of ``count`` samples along a loop whose samples (every LOOP_STEP) have orientations
    ``rotations`` (M, 3, 3), walked at ``speed`` m/s but slower where the orientation turns faster than
    ``max_turn_rate`` rad/s: spread evenly in time over one loop (``rate_hz`` None) or a stream at ``rate_hz``."""
    relative = np.einsum("mji,mjk->mik", rotations, np.roll(rotations, -1, axis=0))
    turn = np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0))
    clock = np.concatenate(([0.0], np.cumsum(np.maximum(LOOP_STEP / speed, turn / max_turn_rate))))
    duration = clock[-1]
    if rate_hz is None:
        times = np.arange(count) * duration / count
    else:
        times = (rng.uniform(0.0, duration) + np.arange(count) / rate_hz) % duration
    return np.interp(times, clock, np.arange(len(clock)) * LOOP_STEP)


def _at(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Periodic linear interpolation of loop samples ``values`` (M, ...) at arc-length ``positions``."""
    grid = np.arange(len(values)) * LOOP_STEP
    flat = values.reshape(len(values), -1)
    out = np.stack([np.interp(positions, grid, flat[:, k], period=len(values) * LOOP_STEP)
                    for k in range(flat.shape[1])], axis=1)
    return out.reshape(len(positions), *values.shape[1:])


def _forward(heading: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Unit 3D directions (N, 3) of horizontal ``heading`` vectors (N, 2) tilted up by ``pitch`` (N,) radians."""
    heading = heading / np.linalg.norm(heading, axis=1, keepdims=True)
    return np.column_stack((heading * np.cos(pitch)[:, None], np.sin(pitch)))


def _upright(heading: np.ndarray) -> np.ndarray:
    """Rotations (N, 3, 3) of frames with x along the horizontal ``heading`` (N, 2), z up."""
    x = np.column_stack((heading / np.linalg.norm(heading, axis=1, keepdims=True), np.zeros(len(heading))))
    z = np.tile((0.0, 0.0, 1.0), (len(heading), 1))
    return np.stack((x, np.cross(z, x), z), axis=2)


def _look_rotation(forward: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations (N, 3, 3) of optical frames (x right, y down, z forward) looking along
    ``forward`` (N, 3) with ``roll`` (N,) radians about it."""
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    return np.stack((c * right + s * down, c * down - s * right, forward), axis=2)


def _poses(rotation: np.ndarray, translation: np.ndarray) -> list[np.ndarray]:
    poses = np.tile(np.eye(4), (len(rotation), 1, 1))
    poses[:, :3, :3], poses[:, :3, 3] = rotation, translation
    return list(poses)


def camera_trajectory(scene: SyntheticScene, frames: int, rng: np.random.Generator,
                      rate_hz: float | None = None) -> list[np.ndarray]:
    """Camera-to-world poses (4, 4) of a handheld RGB-D scan, ScanNet style.

    The camera walks a smooth loop through free space at 1.2-1.7 m, looking across the room (toward and past the
    free space's centre) with a slow side-to-side sweep, nodding up and down around a downward tilt that is
    pulled toward tables and other low support tops in view, with a little roll and hand jitter. It walks at
    WALK_SPEED and slows down where it turns faster than CAMERA_TURN_RATE. With ``rate_hz`` None the ``frames``
    poses are spread evenly in time over the whole loop (key frames covering the room); otherwise they are
    consecutive frames of a stream at ``rate_hz`` (at 15 Hz at most 2 cm and about 3 degrees apart).
    """
    loop, centre = _scan_loop(scene, rng, CAMERA_CLEARANCE)
    count, length = len(loop), len(loop) * LOOP_STEP
    arc = np.arange(count) * LOOP_STEP
    cycles = max(1, round(length / 4.0))
    sweep = rng.uniform(0.3, 0.6) * np.sin(2.0 * np.pi * cycles * arc / length + rng.uniform(0.0, 2.0 * np.pi))
    across = np.arctan2(*(centre - loop).T[::-1]) + sweep
    heading = _smooth_closed(np.stack((np.cos(across), np.sin(across)), axis=1), SMOOTHING)
    heading /= np.linalg.norm(heading, axis=1, keepdims=True)
    height = np.clip(rng.uniform(1.35, 1.55) + _smooth_noise(rng, count, 1.0, 0.08)[:, 0], *CAMERA_HEIGHT)
    # Pitch: a base downward tilt, pulled toward the tops of tables (and other low supports) in front.
    tops = np.array([(*o.box.centre[:2], max(s.bottom for s in o.surfaces)) for o in scene.objects
                     if o.surfaces and TABLE_HEIGHT[0] < max(s.bottom for s in o.surfaces) < TABLE_HEIGHT[1]
                     ]).reshape(-1, 3)
    to_top = tops[None, :, :2] - loop[:, None]
    distance = np.linalg.norm(to_top, axis=2)
    bearing = np.einsum("mtj,mj->mt", to_top, heading) / np.maximum(distance, 1e-9)
    weight = np.exp(-((1.0 - bearing) / 0.08) ** 2) * ((distance > 0.3) & (distance < 3.5))
    toward = -np.arctan2(height[:, None] - tops[None, :, 2], distance)
    nod = max(2, round(length / NOD_PERIOD))
    base = rng.uniform(-0.35, -0.2) + 0.35 * np.sin(2.0 * np.pi * nod * arc / length + rng.uniform(0.0, 2.0 * np.pi))
    pitch = _smooth_closed((base + np.sum(weight * toward, axis=1)) / (1.0 + weight.sum(axis=1)), SMOOTHING)
    roll = _smooth_noise(rng, count, 0.8, 0.03)[:, 0]
    jitter = _smooth_noise(rng, count, 0.3, 0.01, dims=2)
    positions = _timed_positions(_look_rotation(_forward(heading, pitch), roll), frames, rng, rate_hz, WALK_SPEED,
                                 CAMERA_TURN_RATE)
    rotation = _look_rotation(_forward(_at(heading, positions), _at(pitch, positions)), _at(roll, positions))
    translation = np.column_stack((_at(loop + jitter, positions), _at(height, positions)))
    return _poses(rotation, translation)


def robot_path(scene: SyntheticScene, scans: int, rng: np.random.Generator,
               rate_hz: float | None = None) -> list[np.ndarray]:
    """Sensor-to-world poses (4, 4) (x forward, y left, z up) of a LiDAR on a ground robot driving a smooth loop
    through free space at ROBOT_SPEED (slower in tight turns) with the sensor 0.5-1.0 m above the floor; spacing
    as in :func:`camera_trajectory` (``rate_hz`` None: evenly in time over the loop, else a stream)."""
    loop, _ = _scan_loop(scene, rng, ROBOT_CLEARANCE)
    tangent = _smooth_closed(np.roll(loop, -1, axis=0) - np.roll(loop, 1, axis=0), SMOOTHING)
    positions = _timed_positions(_upright(tangent), scans, rng, rate_hz, ROBOT_SPEED, ROBOT_TURN_RATE)
    translation = np.column_stack((_at(loop, positions), np.full(scans, rng.uniform(*ROBOT_SENSOR_HEIGHT))))
    return _poses(_upright(_at(tangent, positions)), translation)


# ----------------------------------------------------------------------------------------------------------------
# LiDAR


class LidarScan(NamedTuple):
    """Returns of one revolution, azimuth-major: ``xyz`` (N, 3) float32 in the sensor frame, ``intensity`` (N,)
    float32 in [0, 255], ``ring`` (N,) uint16 beam index (0 = lowest), ``labels`` (N,) int64 class indices (255 for
    the ceiling) and ``instance`` (N,) int64 ids."""

    xyz: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray
    labels: np.ndarray
    instance: np.ndarray


def lidar_scan(scene: SyntheticScene, sensor_to_world: np.ndarray, rng: np.random.Generator, beams: int = 16,
               horizontal_resolution_deg: float = 0.4, vertical_fov_deg: tuple[float, float] = (-15.0, 15.0),
               max_range: float = 30.0, range_noise: float = 0.01, dropout: float = 0.02) -> LidarScan:
    """One revolution of a spinning multi-beam LiDAR (Velodyne VLP-16 / HDL-32 like) at ``sensor_to_world``.

    Beams are evenly spread over ``vertical_fov_deg``; ranges get Gaussian noise of ``range_noise`` metres; returns
    drop out at random (``dropout``), more at grazing incidence, and below LIDAR_MIN_RANGE or beyond ``max_range``.
    Intensity grows with the material's reflectivity, the surface brightness and the incidence cosine and falls
    with range.
    """
    if beams < 1:
        raise ValueError(f"beams must be positive, got {beams}")
    sensor_to_world = np.asarray(sensor_to_world, dtype=np.float64)
    elevation = np.deg2rad(np.linspace(*vertical_fov_deg, beams))
    azimuth = np.deg2rad(np.arange(0.0, 360.0, horizontal_resolution_deg))
    az, el = np.meshgrid(azimuth, elevation, indexing="ij")
    directions = np.stack((np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), axis=-1).reshape(-1, 3)
    ring = np.tile(np.arange(beams, dtype=np.uint16), len(azimuth))
    world = directions @ sensor_to_world[:3, :3].T
    hits = scene.raycast(np.broadcast_to(sensor_to_world[:3, 3], world.shape), world)
    cosine = np.abs(np.einsum("ij,ij->i", hits.normal, world))
    draws = rng.random(len(world))
    keep = ((hits.face >= 0) & (hits.distance >= LIDAR_MIN_RANGE) & (hits.distance <= max_range)
            & (draws >= dropout + (1.0 - dropout) * 0.5 * (cosine < 0.1)))
    face, distance, cosine = hits.face[keep], hits.distance[keep], cosine[keep]
    measured = distance + rng.normal(0.0, range_noise, len(distance))
    instance = scene.face_instance[face]
    materials = np.array([MATERIALS["paint"].reflectivity] + [MATERIALS[o.material].reflectivity
                                                              for o in scene.objects])
    reflectivity = 0.6 * materials[instance] + 0.4 * scene.face_color[face].mean(axis=1) / 255.0
    intensity = 255.0 * reflectivity * (0.2 + 0.8 * cosine) / (1.0 + (distance / 20.0) ** 2)
    intensity = np.clip(intensity * (1.0 + rng.normal(0.0, 0.05, len(distance))), 0.0, 255.0)
    return LidarScan((directions[keep] * measured[:, None]).astype(np.float32), intensity.astype(np.float32),
                     ring[keep], scene.face_class[face].astype(np.int64), instance.astype(np.int64))
