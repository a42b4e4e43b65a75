"""Shared fixtures. Every test run gets its own ROS_DOMAIN_ID so parallel runs on one machine never cross."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Set before any test imports rclpy; child processes inherit it through os.environ.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
# Nodes keep snapshots under $XDG_STATE_HOME: never the user's own during tests.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="ov3d-test-state-")
atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      os.path.join(os.path.dirname(__file__), "..", "config", "fastdds.xml"))

TINY_TEXT_DIM = 16


@pytest.fixture
def ros_context():
    """A fresh rclpy context for in-process node tests, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Two small rooms (split "train") with a simulated teacher in a random 16-d class space, fused and written;
    the dataset and that vocabulary (for the trainers' tests)."""
    import numpy as np
    import torch

    from ov3d_ros.config import MultiViewFusionConfig, SynthConfig
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.data.openscene import write_fused
    from ov3d_ros.data.synthetic.categories import CLASS_NAMES
    from ov3d_ros.data.synthetic.world import synthesize
    from ov3d_ros.language.vocabulary import Vocabulary
    from ov3d_ros.teachers.multiview import fuse_scene
    from ov3d_ros.teachers.simulated import CalibratedNoiseModel, SimulatedTeacher

    root = tmp_path_factory.mktemp("ggsd")
    config = SynthConfig(frames=6, width=160, height=120, point_spacing_m=0.04, descriptions_per_object=0,
                         bag=False)
    synthesize(root, "train", [21, 22], config, teacher=None, fusion=MultiViewFusionConfig(), progress=False)
    embeddings = torch.nn.functional.normalize(torch.randn(len(CLASS_NAMES), TINY_TEXT_DIM,
                                                           generator=torch.Generator().manual_seed(0)), dim=1)
    teacher = SimulatedTeacher(CalibratedNoiseModel(embeddings.numpy(), noise=0.5, seed=1))
    dataset = Dataset(root)
    for scene in dataset.scenes("train"):
        fused = fuse_scene(dataset.scene_cloud(scene).coords, dataset.frames(scene), teacher, MultiViewFusionConfig())
        write_fused(dataset.fused_path("simulated", scene), fused)
    vocabulary = Vocabulary(tuple(CLASS_NAMES), {}, embeddings.numpy(), embeddings.numpy(),
                            np.arange(len(CLASS_NAMES)), "random-16d")
    return dataset, vocabulary
