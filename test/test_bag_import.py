"""`ov3d import`: a synthetic room's bag (raw or compressed images) becomes a dataset scene whose cloud lies on the
room's own (Chamfer within 2 cm), whose frames `ov3d fuse` reads, with scene-level labels for 3DSS-VLG."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy.spatial import cKDTree

from ov3d_ros.cli import main
from ov3d_ros.config import MultiViewFusionConfig, SynthConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import DataError, read_fused
from ov3d_ros.data.scene_labels import dataset_scene_labels
from ov3d_ros.data.synthetic.world import synthesize

SCENE = "synthetic_000031"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A small room rendered twice into bags: raw images and compressed images."""
    roots = {}
    for compressed in (False, True):
        root = tmp_path_factory.mktemp("compressed" if compressed else "raw")
        config = SynthConfig(frames=8, width=160, height=120, point_spacing_m=0.03, descriptions_per_object=0,
                             compressed_images=compressed)
        synthesize(root, "val", [31], config, teacher=None, fusion=MultiViewFusionConfig(), progress=False)
        roots[compressed] = root
    return roots


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


@pytest.mark.parametrize("compressed", [False, True])
def test_an_imported_bag_is_a_scene_on_the_rooms_surfaces(recorded, tmp_path, compressed, capsys):
    source = recorded[compressed]
    config = tmp_path / "perception.yaml"
    transports = {"color_transport": "compressed", "depth_transport": "compressedDepth"} if compressed else {}
    config.write_text(yaml.safe_dump({"fusion_node": {"ros__parameters": transports}}))
    out = tmp_path / "mine"
    assert main(["import", str(source / "bags" / SCENE), "--out", str(out), "--labels", "wall, floor, couch",
                 "--config", str(config)]) == 0
    assert f"{SCENE} (train): 8 posed frames" in capsys.readouterr().out
    imported, room = Dataset(out), Dataset(source).scene_cloud(SCENE)
    assert imported.scenes("train") == [SCENE]
    cloud = imported.scene_cloud(SCENE)
    assert cloud.num_points > 1000 and chamfer(cloud.coords, room.coords) < 0.02
    assert len(list(imported.frames(SCENE))) == 8
    labels = dataset_scene_labels(imported, [SCENE], str(out / "scene_labels.yaml"))[SCENE]
    assert {imported.classes[i] for i in np.flatnonzero(labels)} == {"wall", "floor", "sofa"}   # couch: a synonym


def test_fuse_runs_on_an_imported_scene(recorded, tmp_path):
    out = tmp_path / "mine"
    assert main(["import", str(recorded[False] / "bags" / SCENE), "--out", str(out), "--split", "val"]) == 0
    maps = tmp_path / "maps" / SCENE
    maps.mkdir(parents=True)
    dataset = Dataset(out)
    for frame in dataset.frames(SCENE):
        np.save(maps / f"{frame.index}.npy", np.ones((6, 8, 16), np.float32))
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"teacher": {"kind": "precomputed", "precomputed_dir": str(tmp_path / "maps"),
                                                    "precomputed_layout": "hwc"}}))
    assert main(["fuse", "--data", str(out), "--config", str(pipeline)]) == 0
    fused = read_fused(out / "fused" / "precomputed" / f"{SCENE}_0.pt")
    assert fused.mask_full.float().mean() > 0.8 and fused.feat.shape[1] == 16


def test_re_importing_moves_the_scene_and_bad_input_is_one_error(recorded, tmp_path, capsys):
    bag = str(recorded[False] / "bags" / SCENE)
    out = tmp_path / "mine"
    assert main(["import", bag, "--out", str(out), "--stride", "2"]) == 0
    assert main(["import", bag, "--out", str(out), "--split", "val"]) == 0
    dataset = Dataset(out)
    assert dataset.scenes("val") == [SCENE] and dataset.scenes("train") == []
    assert len(list(dataset.frames(SCENE))) == 8 and not (out / "3d" / "train" / f"{SCENE}.pth").exists()
    capsys.readouterr()
    assert main(["import", bag, "--out", str(out), "--labels", "wal"]) == 1
    assert "did you mean 'wall'" in capsys.readouterr().err
    empty = tmp_path / "perception.yaml"
    empty.write_text(yaml.safe_dump({"fusion_node": {"ros__parameters": {"color_topic": "/nothing"}}}))
    assert main(["import", bag, "--out", str(out), "--config", str(empty)]) == 1
    assert "no topic /nothing" in capsys.readouterr().err
    with pytest.raises(DataError, match="plain file-name"):
        from ov3d_ros.config import FusionNodeConfig
        from ov3d_ros.data.bag_import import import_bag
        import_bag(bag, out, FusionNodeConfig(), ["wall"], scene="../x")
