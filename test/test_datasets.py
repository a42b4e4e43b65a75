"""Dataset readers and writers: OpenScene scene and fused files, ScanNet export folders, dataset.yaml, teachers."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ov3d_ros.data.dataset import Dataset, DatasetInfo, frequency_groups
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import (
    DataError,
    FusedFeatures,
    SceneCloud,
    atomic_path,
    fused_paths,
    load_torch_file,
    read_fused,
    read_scene_pth,
    write_fused,
    write_scene_pth,
)
from ov3d_ros.data.scannet_export import ScanNetExportScene, write_frame
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.teachers.precomputed import PrecomputedTeacher

RNG = np.random.default_rng(0)
COLOR_CAMERA = PinholeCamera(64, 48, 60.0, 61.0, 31.5, 23.25)
DEPTH_CAMERA = PinholeCamera(32, 24, 30.0, 30.5, 15.5, 11.5)


def random_cloud(n: int = 500, scene: str = "scene0000_00") -> SceneCloud:
    labels = RNG.integers(0, 5, n)
    labels[:20] = 255
    return SceneCloud(scene, RNG.normal(size=(n, 3)).astype(np.float32), RNG.integers(0, 256, (n, 3), dtype=np.uint8),
                      labels, RNG.integers(0, 9, n))


def assert_clouds_equal(a: SceneCloud, b: SceneCloud) -> None:
    assert a.scene == b.scene
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.colors, b.colors)
    for name in ("labels", "instance_labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- OpenScene scene files
def test_scene_pth_round_trip_in_openscene_layout(tmp_path):
    cloud = random_cloud()
    path = tmp_path / "3d" / "train" / "scene0000_00.pth"
    write_scene_pth(path, cloud)
    assert_clouds_equal(read_scene_pth(path), cloud)
    coords, colors, labels, instances = load_torch_file(path)  # what OpenScene's loader sees: numpy arrays
    assert isinstance(colors, np.ndarray) and colors.dtype == np.float32
    assert -1.0 <= colors.min() and colors.max() <= 1.0
    assert list(path.parent.iterdir()) == [path]  # nothing left of the atomic write


def test_scene_pth_variants_openscene_writes(tmp_path):
    coords = RNG.normal(size=(10, 3))
    colors = RNG.uniform(-1, 1, (10, 3))
    torch.save((coords, colors), tmp_path / "no_labels.pth")
    assert read_scene_pth(tmp_path / "no_labels.pth").labels is None
    # OpenScene's test scenes: labels = np.ones(N) * 255 (floats); -100 also means "ignore" to its loader
    torch.save((coords.astype(np.float32), colors, np.r_[np.ones(8) * 255, -100.0, 3.0]), tmp_path / "float.pth")
    cloud = read_scene_pth(tmp_path / "float.pth", scene="s")
    assert cloud.scene == "s" and cloud.labels.dtype == np.int64
    assert cloud.labels.tolist() == [255] * 9 + [3]
    torch.save((torch.from_numpy(coords), torch.from_numpy(colors), torch.zeros(10, dtype=torch.long)),
               tmp_path / "tensors.pth")
    assert read_scene_pth(tmp_path / "tensors.pth").labels.tolist() == [0] * 10


def test_scene_pth_written_with_numpy_1_loads(tmp_path):
    """Files pickled under numpy 1 name numpy.core.multiarray; rewrite ours that way and read it back."""
    cloud = random_cloud(50)
    ours, legacy = tmp_path / "ours.pth", tmp_path / "legacy.pth"
    write_scene_pth(ours, cloud)
    with zipfile.ZipFile(ours) as source, zipfile.ZipFile(legacy, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            target.writestr(info, data)
    assert_clouds_equal(read_scene_pth(legacy, cloud.scene), cloud)


def test_scene_pth_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_scene_pth(tmp_path / "missing.pth")
    torch.save({"coords": torch.zeros(3, 3)}, tmp_path / "dict.pth")
    with pytest.raises(DataError, match="dict.pth: expected a tuple"):
        read_scene_pth(tmp_path / "dict.pth")
    torch.save((np.zeros((4, 3)), np.zeros((5, 3))), tmp_path / "short.pth")
    with pytest.raises(DataError, match=r"short.pth: .*colors must be \(4, 3\)"):
        read_scene_pth(tmp_path / "short.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.pth: cannot load"):
        read_scene_pth(tmp_path / "junk.pth")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


# --------------------------------------------------------------------------- fused features
def test_fused_round_trip_and_dense(tmp_path):
    mask = torch.from_numpy(RNG.random(40) < 0.6)
    counts = torch.where(mask, torch.randint(1, 5, (40,), dtype=torch.int32), 0)
    fused = FusedFeatures(torch.randn(int(mask.sum()), 8).half(), mask, counts)
    write_fused(tmp_path / "s_0.pt", fused)
    back = read_fused(tmp_path / "s_0.pt")
    assert torch.equal(back.feat, fused.feat) and torch.equal(back.mask_full, mask)
    assert torch.equal(back.view_counts, counts)
    dense = back.dense(40)
    assert dense.dtype == torch.float32 and dense.shape == (40, 8)
    assert (dense[~mask] == 0).all() and torch.equal(dense[mask], fused.feat.float())
    with pytest.raises(DataError, match="cover 40 points, not 41"):
        back.dense(41)


def test_fused_file_written_by_openscene(tmp_path):
    mask = torch.tensor([True, False, True, True])
    torch.save({"feat": torch.randn(3, 768).half(), "mask_full": mask}, tmp_path / "scene_0.pt")
    fused = read_fused(tmp_path / "scene_0.pt")
    assert fused.dim == 768 and fused.num_points == 4 and fused.view_counts is None
    torch.save({"feat": np.ones((2, 4), np.float16), "mask_full": np.array([0, 1, 1], np.uint8)},
               tmp_path / "numpy_0.pt")
    assert read_fused(tmp_path / "numpy_0.pt").mask_full.tolist() == [False, True, True]


def test_fused_errors(tmp_path):
    torch.save({"feat": torch.zeros(2, 4).half(), "mask_full": torch.ones(3, dtype=torch.bool)}, tmp_path / "a_0.pt")
    with pytest.raises(DataError, match="a_0.pt: feat has 2 rows but mask_full marks 3 points"):
        read_fused(tmp_path / "a_0.pt")
    torch.save({"features": torch.zeros(2, 4)}, tmp_path / "b_0.pt")
    with pytest.raises(DataError, match="b_0.pt: expected a dict with 'feat' and 'mask_full'"):
        read_fused(tmp_path / "b_0.pt")
    with pytest.raises(DataError, match="mask_full must be booleans"):
        FusedFeatures(torch.zeros(1, 2), torch.tensor([0, 2]))


def test_fused_paths_are_ordered_by_k(tmp_path):
    for name in ("s_1.pt", "s_0.pt", "s_10.pt", "s_2.pt", "s_x.pt", "s_0.pt.bak", "other_0.pt", "s_0_1.pt"):
        (tmp_path / name).touch()
    assert [p.name for p in fused_paths(tmp_path, "s")] == ["s_0.pt", "s_1.pt", "s_2.pt", "s_10.pt"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fused_paths(tmp_path / "nowhere", "s")


# --------------------------------------------------------------------------- ScanNet export folders
def make_frame(index: int, scene: str = "scene0000_00") -> PosedFrame:
    millimetres = RNG.integers(0, 65536, (DEPTH_CAMERA.height, DEPTH_CAMERA.width))
    millimetres[0, :5] = [0, 1, 65535, 1000, 65534]
    depth = np.where(millimetres == 0, np.nan, millimetres / 1000.0).astype(np.float32)
    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(RNG.normal(size=(3, 3)))[0]
    pose[:3, 3] = RNG.normal(size=3)
    color = RNG.integers(0, 256, (COLOR_CAMERA.height, COLOR_CAMERA.width, 3), dtype=np.uint8)
    labels = RNG.integers(0, 41, depth.shape)
    labels[0, 0] = 255
    instances = RNG.integers(0, 70000, depth.shape) % 65536
    return PosedFrame(scene, index, color, COLOR_CAMERA, depth, DEPTH_CAMERA, pose, labels, instances)


def test_frame_folder_round_trip(tmp_path):
    folder = tmp_path / "scene0000_00"
    written = {i: make_frame(i) for i in (10, 2, 0)}
    for frame in written.values():
        write_frame(folder, frame)
    scene = ScanNetExportScene(folder)
    assert scene.indices == [0, 2, 10] and len(scene) == 3  # numeric order, not "0", "10", "2"
    assert scene.color_camera == COLOR_CAMERA and scene.depth_camera == DEPTH_CAMERA
    frames = list(scene.frames())
    assert [f.index for f in frames] == [0, 2, 10] and scene.skipped_poses == 0
    for frame in frames:
        original = written[frame.index]
        np.testing.assert_array_equal(frame.color, original.color)  # PNG is lossless
        np.testing.assert_array_equal(frame.depth_m, original.depth_m)  # 16-bit millimetres, 0 -> NaN
        np.testing.assert_array_equal(frame.camera_to_world, original.camera_to_world)
        np.testing.assert_array_equal(frame.labels, original.labels)
        np.testing.assert_array_equal(frame.instances, original.instances)
        assert frame.depth_m.dtype == np.float32 and frame.scene == "scene0000_00"
    assert [f.index for f in scene.frames(stride=2)] == [0, 10]
    assert not list(folder.rglob("*.partial"))


def test_depth_png_is_exact_16_bit(tmp_path):
    frame = make_frame(0)
    write_frame(tmp_path, frame)
    with Image.open(tmp_path / "depth" / "0.png") as image:
        assert image.mode == "I;16"
        stored = np.asarray(image)
    expected = np.nan_to_num(frame.depth_m * 1000.0).round().astype(np.uint16)
    np.testing.assert_array_equal(stored, expected)
    assert stored[0, :5].tolist() == [0, 1, 65535, 1000, 65534]


def test_invalid_pose_is_skipped_and_counted(tmp_path):
    for i in range(3):
        write_frame(tmp_path, make_frame(i))
    (tmp_path / "pose" / "1.txt").write_text("\n".join(["-inf -inf -inf -inf"] * 4) + "\n")
    scene = ScanNetExportScene(tmp_path, scene="s")
    assert [f.index for f in scene.frames()] == [0, 2] and scene.skipped_poses == 1


def test_intrinsics_3x3_and_jpeg(tmp_path):
    write_frame(tmp_path, make_frame(0), color_format="jpg")
    K = COLOR_CAMERA.K  # noqa: N806
    np.savetxt(tmp_path / "intrinsic" / "intrinsic_color.txt", K)
    scene = ScanNetExportScene(tmp_path)
    assert scene.color_camera == COLOR_CAMERA
    frame = next(scene.frames())
    assert frame.color.shape == (48, 64, 3) and frame.color.dtype == np.uint8


def test_frame_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="color"):
        ScanNetExportScene(tmp_path)
    write_frame(tmp_path, make_frame(0))
    write_frame(tmp_path, make_frame(1))
    (tmp_path / "depth" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match="depth/1.png"):
        list(ScanNetExportScene(tmp_path).frames())
    np.savetxt(tmp_path / "intrinsic" / "intrinsic_depth.txt", np.eye(2))
    with pytest.raises(DataError, match="intrinsic_depth.txt: expected a 4x4 or 3x3 matrix, got 2x2"):
        ScanNetExportScene(tmp_path)
    np.savetxt(tmp_path / "intrinsic" / "intrinsic_depth.txt", [[500, 0, 320], [0, 500, 240], [0, 0, 1]])
    with pytest.raises(DataError, match="do not fit the 32x24 images"):
        ScanNetExportScene(tmp_path)
    (tmp_path / "color" / "0.jpg").touch()
    with pytest.raises(DataError, match="two colour images for frame 0"):
        ScanNetExportScene(tmp_path)
    other = make_frame(2)
    write_frame(tmp_path / "b", other)
    with pytest.raises(DataError, match="other intrinsics"):
        write_frame(tmp_path / "b", PosedFrame("s", 3, other.color, COLOR_CAMERA.scaled(1, 1.0 + 1e-3),
                                               other.depth_m, DEPTH_CAMERA, other.camera_to_world))


# --------------------------------------------------------------------------- dataset.yaml and Dataset
GOOD = {"classes": ["wall", "floor", "chair", "table"], "ignore_label": 255,
        "splits": {"train": ["a", "b"], "val": ["c"]}}


def write_yaml(root: Path, doc: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text(yaml.safe_dump(doc))
    return root


@pytest.mark.parametrize("change, message", [
    ({"classes": None}, "'classes' is missing"),
    ({"classes": "wall"}, "classes must be a list of non-empty strings"),
    ({"classes": []}, "classes must not be empty"),
    ({"classes": ["wall", "wall"]}, "classes lists wall more than once"),
    ({"ignore_label": 2}, "ignore_label must be an integer outside 0..3, got 2"),
    ({"ignore_label": "255"}, "ignore_label must be an integer"),
    ({"splits": ["a"]}, "splits must be a mapping"),
    ({"splits": {}}, "splits must name at least one split"),
    ({"splits": {"train": ["a"], "val": ["a"]}}, "scene a is in both split train and val"),
    ({"groups": {"head": ["wall"], "common": ["sofa"], "tail": []}}, "name\\(s\\) sofa that are not classes"),
    ({"groups": {"head": ["wall"], "tail": []}}, "must have exactly the keys head, common, tail"),
    ({"groups": {"head": ["wall"], "common": ["wall"], "tail": []}}, "put wall into more than one group"),
    ({"split": {}}, "unknown key\\(s\\) split"),
])
def test_dataset_yaml_validation(tmp_path, change, message):
    doc = {**GOOD, **change}
    doc = {key: value for key, value in doc.items() if value is not None}
    write_yaml(tmp_path, doc)
    with pytest.raises(DataError, match=message):
        DatasetInfo.load(tmp_path)


def test_dataset_yaml_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.yaml"):
        Dataset(tmp_path)


def test_frequency_groups():
    names = [f"c{i}" for i in range(7)]
    groups = frequency_groups(np.array([100, 5, 50, 0, 20, 7, 300]), names)
    assert groups == {"head": ["c0", "c2", "c6"], "common": ["c4", "c5"], "tail": ["c1", "c3"]}
    assert frequency_groups(np.zeros(3), names[:3]) == {"head": ["c0"], "common": ["c1"], "tail": ["c2"]}
    with pytest.raises(ValueError, match="counts must be 7"):
        frequency_groups(np.zeros(6), names)


def test_dataset_access_and_computed_groups(tmp_path):
    root = write_yaml(tmp_path, GOOD)
    labels = {"a": [0] * 50 + [1] * 30 + [255] * 5, "b": [0] * 10 + [2] * 3, "c": [3] * 90}
    for scene, values in labels.items():
        split = "val" if scene == "c" else "train"
        n = len(values)
        write_scene_pth(root / "3d" / split / f"{scene}.pth",
                        SceneCloud(scene, np.zeros((n, 3), np.float32), np.zeros((n, 3), np.uint8), np.array(values)))
    write_frame(root / "2d" / "a", make_frame(0, "a"))
    dataset = Dataset(root)
    assert dataset.scenes("train") == ["a", "b"] and dataset.all_scenes() == ["a", "b", "c"]
    assert dataset.scene_cloud("c").num_points == 90
    assert [f.scene for f in dataset.frames("a")] == ["a"]
    assert dataset.fused_path("lseg", "a") == root / "fused" / "lseg" / "a_0.pt"
    assert dataset.class_counts("train").tolist() == [60, 30, 3, 0]
    # table (3) is only in val: the train split decides, so it is a tail class
    assert dataset.groups() == {"head": ["wall", "floor"], "common": ["chair"], "tail": ["table"]}
    with pytest.raises(DataError, match="unknown split 'test'"):
        dataset.scenes("test")
    with pytest.raises(DataError, match="scene 'z' is in no split"):
        dataset.scene_cloud("z")
    write_yaml(root, {**GOOD, "groups": {"head": ["table"], "common": [], "tail": ["wall"]}})
    assert Dataset(root).groups() == {"head": ["table"], "common": [], "tail": ["wall"]}


# --------------------------------------------------------------------------- precomputed teacher
def test_precomputed_teacher_npy_hwc_and_pt_chw(tmp_path):
    hwc = RNG.normal(size=(6, 8, 5)).astype(np.float32)
    (tmp_path / "npy" / "s").mkdir(parents=True)
    np.save(tmp_path / "npy" / "s" / "0.npy", hwc)
    teacher = PrecomputedTeacher(tmp_path / "npy", layout="hwc")
    assert teacher.dim == 5
    grid = teacher.features(make_frame(0, "s"))
    assert grid.image_size == (64, 48) and grid.features.dtype == torch.float32
    np.testing.assert_array_equal(grid.features.numpy(), hwc.transpose(2, 0, 1))

    chw = torch.randn(7, 3, 4, dtype=torch.float16)
    (tmp_path / "pt" / "s").mkdir(parents=True)
    torch.save(chw, tmp_path / "pt" / "s" / "4.pt")
    torch.save(torch.randn(6, 3, 4), tmp_path / "pt" / "s" / "5.pt")
    teacher = PrecomputedTeacher(tmp_path / "pt", dim=7)
    assert torch.equal(teacher.features(make_frame(4, "s")).features, chw.float())
    with pytest.raises(DataError, match="5.pt: 6 feature channels, expected 7"):
        teacher.features(make_frame(5, "s"))
    with pytest.raises(FileNotFoundError, match="no feature file for frame s/9"):
        teacher.features(make_frame(9, "s"))


def test_precomputed_teacher_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PrecomputedTeacher(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no feature files"):
        PrecomputedTeacher(tmp_path)
    (tmp_path / "s").mkdir()
    np.save(tmp_path / "s" / "0.npy", np.zeros((4, 4)))
    with pytest.raises(DataError, match="0.npy: expected a 3-D chw feature map"):
        PrecomputedTeacher(tmp_path)
    with pytest.raises(ValueError, match="layout"):
        PrecomputedTeacher(tmp_path, layout="whc")
