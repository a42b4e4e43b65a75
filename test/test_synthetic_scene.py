"""Synthetic world: categories, room layouts, surface sampling, RGB-D rendering, depth noise, LiDAR, trajectories."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ov3d_ros.data.synthetic.categories import (
    CATEGORIES,
    CLASS_NAMES,
    IGNORE_INDEX,
    MATERIALS,
    ROOM_TYPES,
    Placement,
    Shape,
)
from ov3d_ros.data.synthetic.layout import (
    SceneObject,
    SyntheticScene,
    generate_scene,
)
from ov3d_ros.data.synthetic.render import (
    RenderedView,
    render_view,
    sample_surface_points,
)
from ov3d_ros.data.synthetic.sensors import (
    DepthNoise,
    apply_depth_noise,
    camera_trajectory,
    default_camera,
    lidar_scan,
    random_lighting,
    robot_path,
)
from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.geometry.camera import PinholeCamera

SCANNET20 = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
             "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub",
             "otherfurniture")
SMALL = default_camera(160, 120)


@pytest.fixture(scope="module")
def scenes() -> list[SyntheticScene]:
    """One scene of every room type."""
    return [generate_scene(seed, room) for seed, room in enumerate(sorted(ROOM_TYPES))]


@pytest.fixture(scope="module")
def clouds(scenes):
    return [sample_surface_points(scene, np.random.default_rng(0), spacing=0.04) for scene in scenes]


def furnishing(scene: SyntheticScene) -> list[SceneObject]:
    return [o for o in scene.objects if o.category.placement is not Placement.STRUCTURE]


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world pose (optical frame) at ``eye`` looking at ``target`` with no roll."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack((right, np.cross(forward, right), forward))
    pose[:3, 3] = eye
    return pose


def footprints_overlap(a: OrientedBox, b: OrientedBox, shrink: float) -> bool:
    """Separating-axis test of two yawed boxes, each shrunk by ``shrink`` on every side."""
    def corners(box: OrientedBox) -> np.ndarray:
        c, s = np.cos(box.yaw), np.sin(box.yaw)
        half = box.size[:2] / 2 - shrink
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        return box.centre[:2] + local @ np.array([[c, s], [-s, c]])

    if min(a.top, b.top) - max(a.bottom, b.bottom) <= 2 * shrink:
        return False
    ca, cb = corners(a), corners(b)
    for poly in (ca, cb):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = ca @ axis, cb @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def test_categories_are_scannet_style_data():
    assert len(CATEGORIES) >= 40
    assert CLASS_NAMES == tuple(c.name for c in CATEGORIES) and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert CLASS_NAMES[:20] == SCANNET20
    assert len(CLASS_NAMES) < IGNORE_INDEX
    for name in ("lamp", "pillow", "box", "bag", "book", "monitor", "keyboard", "plant", "mug", "bottle", "towel",
                 "dresser", "nightstand", "tv", "whiteboard", "trash can", "shelf", "mirror", "laptop", "backpack",
                 "clock", "rug", "radiator"):
        assert name in CLASS_NAMES
    known = set(CLASS_NAMES)
    for c in CATEGORIES:
        assert 2 <= len(c.synonyms) <= 4 and c.name not in c.synonyms, c.name
        assert all(0 < low <= high for low, high in c.size), c.name
        assert c.palette and c.materials and set(c.materials) <= set(MATERIALS), c.name
        assert set(c.confused_with) <= known and set(c.supports) <= known, c.name
        assert (c.placement in (Placement.ON_SURFACE, Placement.ON_BED)) == bool(c.supports), c.name
    assert "settee" in CATEGORIES[CLASS_NAMES.index("sofa")].synonyms
    assert "desk" in CATEGORIES[CLASS_NAMES.index("table")].confused_with
    assert {c.split for c in CATEGORIES} == {"head", "common", "tail"}
    assert set(ROOM_TYPES) == {"bedroom", "office", "living room", "kitchen", "bathroom"}
    for room in ROOM_TYPES.values():
        assert {n for n, _, _ in room.anchors} | set(room.extras) | set(room.small) <= known


def test_same_seed_same_scene_and_cloud_different_seed_differs():
    a, b, c = generate_scene(11), generate_scene(11), generate_scene(12)
    assert a.scene_id == b.scene_id and a.room_type == b.room_type
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    np.testing.assert_array_equal(a.mesh.faces, b.mesh.faces)
    np.testing.assert_array_equal(a.face_class, b.face_class)
    np.testing.assert_array_equal(a.face_color, b.face_color)
    for oa, ob in zip(a.objects, b.objects, strict=True):
        assert oa.name == ob.name and oa.support_id == ob.support_id
        np.testing.assert_array_equal(oa.box.centre, ob.box.centre)
        np.testing.assert_array_equal(oa.box.size, ob.box.size)
    pa = sample_surface_points(a, np.random.default_rng(3), spacing=0.05)
    pb = sample_surface_points(b, np.random.default_rng(3), spacing=0.05)
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y)
    ta, tb = camera_trajectory(a, 10, np.random.default_rng(4)), camera_trajectory(b, 10, np.random.default_rng(4))
    np.testing.assert_array_equal(np.array(ta), np.array(tb))
    assert a.mesh.vertices.shape != c.mesh.vertices.shape or not np.array_equal(a.mesh.vertices, c.mesh.vertices)
    assert [o.name for o in a.objects] != [o.name for o in c.objects]


def test_rooms_have_structure_door_windows_and_15_to_40_objects(scenes):
    for scene in scenes:
        room = scene.room
        assert 3.0 <= room.size.min() and room.size.max() <= 8.0 + 1e-9 and 2.4 <= room.height <= 3.0
        assert len(room.walls) in (4, 6)
        names = [o.name for o in scene.objects]
        assert names.count("floor") == 1 and names.count("wall") == len(room.walls) and names.count("door") == 1
        assert scene.object(room.door.instance_id).name == "door"
        assert names.count("window") <= 3
        objects = furnishing(scene)
        assert 15 <= len(objects) <= 40, scene.scene_id
        counts = np.bincount([o.class_index for o in objects])
        assert counts.max() >= 2, f"{scene.scene_id}: no class with several instances"
        assert [o.instance_id for o in scene.objects] == list(range(1, len(scene.objects) + 1))
        assert len(scene.face_instance) == len(scene.face_class) == len(scene.mesh.faces)
        assert (scene.face_class[scene.face_instance == 0] == IGNORE_INDEX).all()   # the ceiling
        for obj in objects:
            if obj.category.placement is not Placement.IN_WALL:
                corners = np.vstack([obj.box.corners_xy(), obj.box.centre[None, :2]])
                inside = room.contains_xy(corners + 0.01 * np.sign(obj.box.centre[:2] - corners))
                assert inside.all(), f"{scene.scene_id}: {obj.name} {obj.instance_id} sticks out of the room"
            assert obj.box.top <= room.height + 1e-9


def test_object_boxes_contain_their_sampled_points(scenes, clouds):
    for scene, cloud in zip(scenes, clouds):
        for obj in scene.objects:
            points = cloud.xyz[cloud.instance == obj.instance_id]
            if len(points):
                inside = obj.box.contains(points, tolerance=0.01).mean()
                assert inside >= 0.99, f"{scene.scene_id}: {obj.name} {obj.instance_id}: {inside:.3f}"
        assert (cloud.labels[cloud.instance == 0] == IGNORE_INDEX).all()
        labelled = cloud.instance > 0
        np.testing.assert_array_equal(
            cloud.labels[labelled], [scene.object(i).class_index for i in cloud.instance[labelled]])


def test_cloud_looks_like_a_scan(scenes):
    scene = scenes[0]
    cloud = sample_surface_points(scene, np.random.default_rng(1))   # the 2 cm default
    assert cloud.xyz.dtype == np.float32 and cloud.rgb.dtype == np.uint8
    assert cloud.labels.dtype == np.int64 and cloud.instance.dtype == np.int64
    # Nothing outside the room (bar the door recess) or below the floor: outer wall faces and slab undersides are
    # never seen.
    xy = cloud.xyz[:, :2].astype(np.float64)
    r = scene.room.rectangles
    inside = np.any((xy[:, None, 0] > r[:, 0] - 1e-3) & (xy[:, None, 0] < r[:, 2] + 1e-3)
                    & (xy[:, None, 1] > r[:, 1] - 1e-3) & (xy[:, None, 1] < r[:, 3] + 1e-3), axis=1)
    door = scene.room.door
    recess = (cloud.xyz[~inside] - door.centre) @ door.normal
    assert np.isin(cloud.instance[~inside], (door.instance_id, door.wall_index + 1)).all()
    assert (recess > -scene.room.wall_thickness - 1e-3).all()
    assert cloud.xyz[:, 2].min() > -1e-3 and cloud.xyz[:, 2].max() < scene.room.height + 1e-3
    # Nothing under objects standing solidly on the floor.
    floor = cloud.xyz[cloud.labels == CLASS_NAMES.index("floor")]
    solid = (Shape.DOORS, Shape.DRAWERS, Shape.BED, Shape.SOFA, Shape.STOVE, Shape.TUB)
    for obj in furnishing(scene):
        if obj.category.shape in solid:
            shrunk = OrientedBox(obj.box.centre, obj.box.size - (0.1, 0.1, 0.0), obj.box.yaw)
            assert not shrunk.contains(floor).any(), obj.name
    # About one point per 4 cm^2 of visible surface: the floor's visible share is dense.
    floor_area = scene.room.area
    assert 0.3 * floor_area / 0.02 ** 2 < len(floor) < 1.05 * floor_area / 0.02 ** 2
    # Per-object texture and per-point noise: colours vary within one wall.
    wall = cloud.rgb[cloud.instance == scene.room.walls[0].instance_id].astype(float)
    assert 2.0 < wall.std(axis=0).mean() < 40.0


def test_rendered_labels_agree_with_projected_scene_points(scenes, clouds):
    checked = 0
    for scene, cloud in list(zip(scenes, clouds))[:3]:
        rng = np.random.default_rng(5)
        for pose in camera_trajectory(scene, 3, rng):
            view = render_view(scene, SMALL, pose, random_lighting(rng))
            world_to_camera = np.linalg.inv(pose)
            camera_points = cloud.xyz.astype(np.float64) @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
            uv, z = SMALL.project(camera_points)
            pixel = np.round(uv)
            on_image = (z > 0) & np.all((pixel >= 0) & (pixel < (SMALL.width, SMALL.height)), axis=1)
            u, v = pixel[on_image].astype(int).T
            rendered = view.depth[v, u]
            seen = np.abs(rendered - z[on_image]) < 0.02
            agree = view.labels[v, u][seen] == cloud.labels[on_image][seen]
            assert seen.sum() > 200 and agree.mean() >= 0.98, (scene.scene_id, seen.sum(), agree.mean())
            checked += seen.sum()
    assert checked > 5000


def test_view_of_a_wall_has_exact_depth_and_consistent_images(scenes):
    scene = scenes[1]
    room = scene.room
    wall = max((w for i, w in enumerate(room.walls) if i != room.door.wall_index), key=lambda w: w.length)
    height = room.height - 0.2                      # above all furniture
    distance = 0.5
    middle = np.array([*(wall.start + wall.end) / 2, height])
    normal = np.array([*wall.normal, 0.0])
    view = render_view(scene, SMALL, look_at(middle + distance * normal, middle))
    on_wall = view.instance == wall.instance_id
    assert on_wall.sum() > 0.3 * on_wall.size
    np.testing.assert_allclose(view.depth[on_wall], distance, atol=1e-5)
    np.testing.assert_allclose(view.normals[on_wall], np.tile((0.0, 0.0, -1.0), (on_wall.sum(), 1)), atol=1e-6)
    rays = np.stack(np.meshgrid(np.arange(SMALL.width) - SMALL.cx, np.arange(SMALL.height) - SMALL.cy), -1)
    expected_cosine = 1.0 / np.sqrt(1.0 + (rays[..., 0] / SMALL.fx) ** 2 + (rays[..., 1] / SMALL.fy) ** 2)
    np.testing.assert_allclose(view.incidence[on_wall], expected_cosine[on_wall], atol=1e-5)
    assert view.depth.dtype == np.float32 and view.color.dtype == np.uint8 and view.color.shape == (120, 160, 3)
    assert view.labels.dtype == np.uint8 and view.instance.dtype == np.int32
    assert (view.labels[on_wall] == CLASS_NAMES.index("wall")).all()
    hit = np.isfinite(view.depth)
    assert hit.all()                                # the room is closed
    assert ((view.labels == IGNORE_INDEX) == (view.instance == 0)).all()
    # Back-projecting the depth image gives points on the wall plane.
    points, pixels = SMALL.backproject(view.depth)
    world = points @ view.camera_to_world[:3, :3].T + view.camera_to_world[:3, 3]
    wall_points = on_wall[pixels[:, 1], pixels[:, 0]]
    np.testing.assert_allclose((world[wall_points] - middle) @ normal, 0.0, atol=1e-4)


def test_depth_noise_grows_with_depth_and_drops_pixels():
    camera = PinholeCamera(100, 100, 80.0, 80.0, 49.5, 49.5)

    def flat(depth: float, incidence: float = 1.0) -> RenderedView:
        full = np.full((100, 100), depth, dtype=np.float32)
        return RenderedView(camera, np.eye(4), full, np.zeros((100, 100, 3), np.uint8), np.zeros((100, 100), np.uint8),
                            np.ones((100, 100), np.int32), np.zeros((100, 100, 3), np.float32),
                            np.full((100, 100), incidence, dtype=np.float32))

    rng, params = np.random.default_rng(0), DepthNoise()
    errors = {}
    for depth in (1.0, 2.5, 4.0):
        noisy = apply_depth_noise(flat(depth), rng, params)
        assert noisy.dtype == np.float32 and 0.99 < np.isfinite(noisy).mean() < 1.0   # random dropout only
        valid = noisy[np.isfinite(noisy)].astype(np.float64)
        np.testing.assert_allclose(valid * 1000.0, np.round(valid * 1000.0), atol=1e-3)   # 1 mm quantisation
        errors[depth] = (valid - depth).std()
    assert 0.001 < errors[1.0] < 0.003 and 0.01 < errors[4.0] < 0.02
    assert errors[1.0] < errors[2.5] < errors[4.0]
    assert np.isnan(apply_depth_noise(flat(6.0), rng, params)).all()                    # beyond max range
    grazing = np.isnan(apply_depth_noise(flat(2.0, incidence=0.05), rng, params)).mean()
    assert 0.7 < grazing < 0.9
    step = flat(1.0)
    step.depth[:, 50:] = 3.0
    dropped = np.isnan(apply_depth_noise(step, rng, params))
    assert 0.3 < dropped[:, 49:51].mean() < 0.7 and dropped[:, 10:40].mean() < 0.01


def test_camera_trajectory_is_smooth_high_and_covers_the_room(scenes, clouds):
    camera = default_camera()
    assert (camera.width, camera.height, camera.fx, camera.fy) == (640, 480, pytest.approx(577.87),
                                                                   pytest.approx(577.87))
    assert default_camera(320, 240).fx == pytest.approx(577.87 / 2)
    for scene, cloud in zip(scenes, clouds):
        stream = np.array(camera_trajectory(scene, 90, np.random.default_rng(1), rate_hz=15.0))
        steps = np.linalg.norm(np.diff(stream[:, :3, 3], axis=0), axis=1)
        turns = (Rotation.from_matrix(stream[1:, :3, :3]) * Rotation.from_matrix(stream[:-1, :3, :3]).inv()).magnitude()
        assert steps.max() < 0.05 and np.degrees(turns).max() < 5.0, scene.scene_id
        keys = np.array(camera_trajectory(scene, 30, np.random.default_rng(2)))
        for poses in (stream, keys):
            np.testing.assert_allclose(np.linalg.det(poses[:, :3, :3]), 1.0, atol=1e-9)
            assert (poses[:, 2, 3] >= 1.2 - 1e-9).all() and (poses[:, 2, 3] <= 1.7 + 1e-9).all()
            assert scene.room.contains_xy(poses[:, :2, 3], margin=0.1).all()
            assert (poses[:, 2, 2] < 0.0).mean() > 0.9          # mostly looking slightly down
        # Key frames of one loop see most of the scanned surfaces below the ceiling.
        seen = np.zeros(len(cloud.xyz), dtype=bool)
        tiny = default_camera(80, 60)
        for pose in keys:
            view = render_view(scene, tiny, pose)
            inverse = np.linalg.inv(pose)
            uv, z = tiny.project(cloud.xyz.astype(np.float64) @ inverse[:3, :3].T + inverse[:3, 3])
            pixel = np.round(uv)
            on_image = np.flatnonzero((z > 0) & np.all((pixel >= 0) & (pixel < (80, 60)), axis=1))
            u, v = pixel[on_image].astype(int).T
            seen[on_image[np.abs(view.depth[v, u] - z[on_image]) < 0.05]] = True
        coverage = seen[cloud.labels != IGNORE_INDEX].mean()
        assert coverage > 0.5, (scene.scene_id, coverage)


def test_lidar_returns_lie_on_surfaces(scenes):
    scene = scenes[3]
    poses = robot_path(scene, 20, np.random.default_rng(0), rate_hz=10.0)
    steps = np.linalg.norm(np.diff(np.array(poses)[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 0.06
    for pose in poses:
        assert 0.5 <= pose[2, 3] <= 1.0 and np.allclose(pose[:3, 2], (0.0, 0.0, 1.0))
        assert scene.room.contains_xy(pose[None, :2, 3], margin=0.2).all()
    rng = np.random.default_rng(1)
    for beams, pose in ((16, poses[0]), (32, poses[-1])):
        scan = lidar_scan(scene, pose, rng, beams=beams)
        assert scan.xyz.dtype == np.float32 and scan.ring.dtype == np.uint16
        assert set(np.unique(scan.ring)) == set(range(beams))
        assert 0.9 * beams * 900 < len(scan.xyz) <= beams * 900
        assert ((scan.intensity >= 0) & (scan.intensity <= 255)).all()
        ranges = np.linalg.norm(scan.xyz.astype(np.float64), axis=1)
        world = (scan.xyz / ranges[:, None]) @ pose[:3, :3].T
        hits = scene.raycast(np.broadcast_to(pose[:3, 3], world.shape), world)
        assert (np.abs(hits.distance - ranges) < 0.05).mean() > 0.995
        assert (scene.face_class[hits.face] == scan.labels).mean() > 0.99
        elevation = np.degrees(np.arcsin(scan.xyz[:, 2] / ranges))
        np.testing.assert_allclose(elevation, np.linspace(-15, 15, beams)[scan.ring], atol=0.1)


def test_small_objects_rest_on_their_supports(scenes):
    supported = 0
    for scene in scenes:
        for obj in scene.objects:
            if obj.support_id == 0:
                continue
            support = scene.object(obj.support_id)
            assert obj.category.placement in (Placement.ON_SURFACE, Placement.ON_BED), obj.name
            assert support.name in obj.category.supports
            assert obj.mesh.vertices[:, 2].min() == pytest.approx(obj.box.bottom, abs=1e-9)
            assert min(abs(s.bottom - obj.box.bottom) for s in support.surfaces) < 1e-9
            # A ray down through the object's centre, from 5 cm above its base, meets the support 5 cm below.
            origin = np.array([[*obj.box.centre[:2], obj.box.bottom + 0.05]])
            found = support.mesh.ray.intersects_location(origin, np.array([[0.0, 0.0, -1.0]]))[0]
            assert len(found) and abs(origin[0, 2] - found[:, 2].max() - 0.05) < 0.01, (obj.name, support.name)
            supported += 1
    assert supported >= 10
