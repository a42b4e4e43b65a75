"""open_clip checkpoints loaded from disk, and the MaskCLIP-style dense teacher (random ViT-S-16 weights)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.language.encoders import OpenClipTextEncoder
from ov3d_ros.language.open_clip_model import import_open_clip, load_open_clip
from ov3d_ros.teachers.open_clip_dense import OpenClipDenseTeacher

MODEL = "ViT-S-16"
TEXTS = ["a sofa in a scene", "a chair in a scene"]


def make_frame(width: int, height: int, seed: int = 0) -> PosedFrame:
    camera = PinholeCamera(width, height, 500.0, 500.0, width / 2, height / 2)
    color = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return PosedFrame("scene", 0, color, camera, np.ones((height, width), np.float32), camera, np.eye(4))


@pytest.fixture(scope="module")
def random_teacher() -> OpenClipDenseTeacher:
    return OpenClipDenseTeacher(MODEL, None, allow_random=True)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple:
    """The random model's state_dict as .pt, and as .safetensors with the visual projection negated."""
    folder = tmp_path_factory.mktemp("checkpoints")
    state = load_open_clip(MODEL, None, allow_random=True).model.state_dict()
    torch.save(state, folder / "same.pt")
    negated = {key: value.clone().contiguous() for key, value in state.items()}
    negated["visual.proj"] = -negated["visual.proj"]
    save_file(negated, str(folder / "negated.safetensors"))
    return folder / "same.pt", folder / "negated.safetensors"


def test_checkpoint_round_trip_gives_identical_text_and_dense_features(random_teacher, checkpoints):
    same, negated = checkpoints
    bundle = load_open_clip(MODEL, same)
    assert bundle is load_open_clip(MODEL, str(same)) and bundle is not load_open_clip(MODEL, None, True)
    assert bundle.fingerprint.startswith(f"open_clip:{MODEL}:sha256-") and bundle.embed_dim == 384
    assert not bundle.model.training

    np.testing.assert_array_equal(OpenClipTextEncoder(MODEL, same).encode(TEXTS),
                                  OpenClipTextEncoder(MODEL, None, allow_random=True).encode(TEXTS))
    frame = make_frame(320, 240)
    expected = random_teacher.features(frame).features
    torch.testing.assert_close(OpenClipDenseTeacher(MODEL, same).features(frame).features, expected,
                               rtol=0, atol=0)
    # the weights really come from the file: a negated projection negates every feature
    torch.testing.assert_close(OpenClipDenseTeacher(MODEL, negated).features(frame).features, -expected)


def test_dense_grid_shape_norm_and_sampling(random_teacher):
    frame = make_frame(640, 480, seed=1)
    grid = random_teacher.features(frame)
    assert random_teacher.name == f"open_clip_dense:{MODEL}" and random_teacher.dim == 384
    assert grid.features.shape == (384, 15, 20) and grid.features.dtype == torch.float32
    assert grid.image_size == (640, 480)
    torch.testing.assert_close(grid.features.norm(dim=0), torch.ones(15, 20))
    rows, cols = torch.meshgrid(torch.arange(15), torch.arange(20), indexing="ij")
    # cell (i, j) centre in original pixels: 32 pixels per cell in both directions
    uv = torch.stack([(cols.flatten() + 0.5) * 32 - 0.5, (rows.flatten() + 0.5) * 32 - 0.5], dim=1)
    torch.testing.assert_close(grid.sample(uv), grid.features.reshape(384, -1).T)


def test_input_size_rounds_to_whole_patches():
    teacher = OpenClipDenseTeacher(MODEL, None, input_size=(250, 100), allow_random=True)
    assert teacher.features(make_frame(320, 240)).features.shape == (384, 6, 16)


def test_value_path_matches_a_plain_recomputation(random_teacher):
    """At the trained 224x224 size, patch k equals explicit matrix products on the last block's input."""
    open_clip = import_open_clip()
    visual = load_open_clip(MODEL, None, allow_random=True).model.visual
    frame = make_frame(224, 224, seed=2)
    grid = OpenClipDenseTeacher(MODEL, None, input_size=(224, 224), allow_random=True).features(frame)
    assert grid.features.shape == (384, 14, 14)

    mean = torch.tensor(open_clip.constants.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.constants.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    image = (torch.from_numpy(frame.color).permute(2, 0, 1)[None].float() / 255 - mean) / std
    blocks = visual.transformer.resblocks
    with torch.no_grad():
        inputs = visual.forward_intermediates(image, indices=[len(blocks) - 2], output_fmt="NLC",
                                              intermediates_only=True)["image_intermediates"][0]
    last = blocks[-1]
    width = inputs.shape[-1]

    def layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
        return (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + norm.eps) * norm.weight + norm.bias

    for k in (0, 37, 195):
        x = inputs[0, k]
        value = last.attn.in_proj_weight[2 * width:] @ layer_norm(x, last.ln_1) + last.attn.in_proj_bias[2 * width:]
        out = last.attn.out_proj.weight @ value + last.attn.out_proj.bias
        feature = layer_norm(out, visual.ln_post) @ visual.proj
        torch.testing.assert_close(grid.features[:, k // 14, k % 14], feature / feature.norm(),
                                   atol=2e-5, rtol=1e-4)


def test_positional_embedding_is_resized_only_off_the_trained_grid():
    visual = load_open_clip(MODEL, None, allow_random=True).model.visual
    assert OpenClipDenseTeacher._positional_embedding(visual, (14, 14)) is visual.positional_embedding
    resized = OpenClipDenseTeacher._positional_embedding(visual, (15, 20))
    assert resized.shape == (1 + 15 * 20, 384)
    torch.testing.assert_close(resized[0], visual.positional_embedding[0])


def test_teacher_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="open_clip needs a checkpoint path"):
        OpenClipDenseTeacher(MODEL, None)
    with pytest.raises(ValueError, match="not found"):
        OpenClipDenseTeacher(MODEL, tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-S-61'; did you mean"):
        OpenClipDenseTeacher("ViT-S-61", None, allow_random=True)
