"""Sparse convolution against spconv (layers, gradients, the whole student), voxelisation, kernel-map reuse,
backends, checkpoints, and the student network's contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ov3d_ros.evaluation.bench_student import (room_points, run_student_benchmark, spconv_input, spconv_twin,
                                                spconv_weight)
from ov3d_ros.models.student import Student, normalize_rows_, student_config
from ov3d_ros.sparse import (DownConv3d, SparseInstanceNorm, SparseTensor, SubmanifoldConv3d, UpConv3d, devoxelize,
                             get_backend, kernel_maps, set_backend, torchsparse_available, use_backend, voxelize)
from ov3d_ros.sparse.backends import backend_for
from ov3d_ros.sparse.tensor import pack_keys

TOLERANCE = 1e-4


@pytest.fixture
def spconv(monkeypatch: pytest.MonkeyPatch):
    """spconv.pytorch made usable on CPU for this test: its backward's CUDA stream lookup returns the null stream,
    and torch runs one thread (spconv's CPU kernels give wrong results with more)."""
    sp = pytest.importorskip("spconv.pytorch", reason="spconv (test extra) is not installed on this platform")
    monkeypatch.setattr(sp.ops, "get_current_stream", lambda: 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield sp
    torch.set_num_threads(threads)


def random_voxels(channels: int, seed: int = 0) -> SparseTensor:
    """About 700 voxels of 2 batch items in a 12^3 box that straddles 0, with random features."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(900, 3, generator=generator) * 12 - 5
    x, _ = voxelize(points, 1.0, torch.randint(0, 2, (900,), generator=generator))
    return x.replace_feature(torch.randn(len(x.coords), channels, generator=generator))


def leaf(x: SparseTensor) -> SparseTensor:
    return x.replace_feature(x.features.clone().requires_grad_())


def assert_close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max().item() < TOLERANCE


def aligned_order(coords: torch.Tensor) -> torch.Tensor:
    """Row order sorting voxels by position relative to the set's own minimum (spconv's coordinates are shifted)."""
    shifted = torch.cat((coords[:, :1], coords[:, 1:] - coords[:, 1:].min(dim=0).values), dim=1)
    return torch.argsort(pack_keys(shifted))


def copy_to_spconv(ours: torch.nn.Module, reference: torch.nn.Module) -> None:
    with torch.no_grad():
        reference.weight.copy_(spconv_weight(ours.weight))
        if ours.bias is not None:
            reference.bias.copy_(ours.bias)


def test_submanifold_conv_matches_spconv(spconv) -> None:
    x = random_voxels(5)
    ours = SubmanifoldConv3d(5, 7, bias=True)
    reference = spconv.SubMConv3d(5, 7, 3, bias=True, indice_key="subm")
    copy_to_spconv(ours, reference)
    xa, xb = leaf(x), leaf(x)
    ya, yb = ours(xa).features, reference(spconv_input(xb, 1)).features
    assert_close(ya, yb)
    grad = torch.randn_like(ya)
    (ya * grad).sum().backward()
    (yb * grad).sum().backward()
    assert_close(xa.features.grad, xb.features.grad)
    assert_close(spconv_weight(ours.weight.grad), reference.weight.grad)
    assert_close(ours.bias.grad, reference.bias.grad)


def test_down_conv_matches_spconv(spconv) -> None:
    x = random_voxels(5, seed=1)
    ours = DownConv3d(5, 6)
    reference = spconv.SparseConv3d(5, 6, 2, stride=2, bias=False, indice_key="down")
    copy_to_spconv(ours, reference)
    xa, xb = leaf(x), leaf(x)
    ya, yb = ours(xa), reference(spconv_input(xb, 1))
    assert ya.stride == 2 and len(ya.coords) < len(x.coords)
    order_a, order_b = aligned_order(ya.coords), aligned_order(yb.indices)
    assert torch.equal(ya.coords[order_a, 0].int(), yb.indices[order_b, 0])
    assert_close(ya.features[order_a], yb.features[order_b])
    grad = torch.randn_like(ya.features)
    (ya.features[order_a] * grad).sum().backward()
    (yb.features[order_b] * grad).sum().backward()
    assert_close(xa.features.grad, xb.features.grad)
    assert_close(spconv_weight(ours.weight.grad), reference.weight.grad)


def test_transposed_up_conv_matches_spconv(spconv) -> None:
    x = random_voxels(5, seed=2)
    down, up = DownConv3d(5, 6), UpConv3d(6, 4)
    reference_down = spconv.SparseConv3d(5, 6, 2, stride=2, bias=False, indice_key="down")
    reference_up = spconv.SparseInverseConv3d(6, 4, 2, bias=False, indice_key="down")
    copy_to_spconv(down, reference_down)
    copy_to_spconv(up, reference_up)
    xa, xb = leaf(x), leaf(x)
    ya = up(down(xa))
    yb = reference_up(reference_down(spconv_input(xb, 1)))
    assert ya.coords is x.coords and ya.stride == 1          # exactly the finer level's voxels, in its order
    assert_close(ya.features, yb.features)
    grad = torch.randn_like(ya.features)
    (ya.features * grad).sum().backward()
    (yb.features * grad).sum().backward()
    assert_close(xa.features.grad, xb.features.grad)
    assert_close(spconv_weight(up.weight.grad), reference_up.weight.grad)
    assert_close(spconv_weight(down.weight.grad), reference_down.weight.grad)


def test_student_matches_its_spconv_twin(spconv) -> None:
    torch.manual_seed(0)
    model = Student(student_config("tiny")).eval()
    voxels, _ = model.voxelize(room_points(1500))
    twin = spconv_twin(model, voxels)
    with torch.no_grad():
        ours = model.forward_voxels(SparseTensor(voxels.coords, voxels.features)).features
        reference = twin.forward_voxels(spconv_input(voxels, len(model.config.channels))).features
    assert_close(ours, reference)


def test_instance_norm_normalises_each_batch_item_by_its_own_statistics() -> None:
    x = random_voxels(3, seed=4)
    norm = SparseInstanceNorm(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    out = norm.eval()(x).features                                   # eval mode: the same statistics as training
    for item in (0, 1):
        rows = x.coords[:, 0] == item
        f = x.features[rows]
        expected = (f - f.mean(0)) / torch.sqrt(f.var(0, unbiased=False) + 1e-5) * norm.weight + norm.bias
        assert_close(out[rows], expected)
    alone = x.coords[:, 0] == 1                                      # an item's output ignores the other item
    assert_close(norm(SparseTensor(x.coords[alone], x.features[alone])).features, out[alone])
    batchnorm = torch.nn.BatchNorm1d(3).train()                      # one item: BatchNorm in training mode
    batchnorm.load_state_dict(norm.state_dict(), strict=False)
    assert_close(norm(SparseTensor(x.coords[alone], x.features[alone])).features, batchnorm(x.features[alone]))


def test_voxelize_means_features_per_voxel_and_devoxelize_inverts_it() -> None:
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(400, 3, generator=generator) * 2 - 1
    points = torch.cat((points, points))                    # the same positions in both batch items
    batch = torch.cat((torch.zeros(400), torch.ones(400))).long()
    features = torch.randn(800, 3, generator=generator, dtype=torch.float32)
    x, point_to_voxel = voxelize(points, 0.25, batch, features)

    grid = np.floor(points.numpy().astype(np.float64) / 0.25).astype(np.int64)
    keys = np.column_stack((batch.numpy(), grid))
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(unique), 3))
    np.add.at(sums, inverse, features.numpy())
    means = sums / np.bincount(inverse)[:, None]

    assert np.array_equal(x.coords.numpy(), unique)         # sorted by (batch, x, y, z)
    assert np.array_equal(x.coords[point_to_voxel].numpy(), keys)
    assert np.allclose(devoxelize(x, point_to_voxel).numpy(), means[inverse], atol=1e-6)
    assert len(unique) % 2 == 0 and np.array_equal(unique[: len(unique) // 2, 1:], unique[len(unique) // 2:, 1:])
    assert torch.equal(voxelize(points, 0.25, batch)[0].features, torch.ones(len(unique), 1))


def test_neighbour_search_by_grid_and_by_sorted_keys_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    coords = random_voxels(1).coords
    by_grid = kernel_maps.build_submanifold_map(coords)
    monkeypatch.setattr(kernel_maps, "_DENSE_CELLS_PER_VOXEL", 0)
    by_keys = kernel_maps.build_submanifold_map(coords)
    assert by_grid.columns == by_keys.columns and torch.equal(by_grid.table, by_keys.table)
    # spot check against the definition: row o's entry at offset d is the voxel at coords[o] + d
    offsets = kernel_maps.kernel_offsets(3)
    present = by_grid.table < len(coords)
    o, j = torch.nonzero(present, as_tuple=True)
    expected = coords[o, 1:] + offsets[torch.tensor(by_grid.columns)[j]]
    assert torch.equal(coords[by_grid.table[o, j], 1:], expected.to(coords.dtype))
    assert torch.equal(coords[by_grid.table[o, j], 0], coords[o, 0])
    shifted = coords[:, None, :].to(torch.int64) + F.pad(offsets, (1, 0))[None]       # (N, 27, 4)
    exists = torch.isin(pack_keys(shifted.reshape(-1, 4)), pack_keys(coords)).reshape(len(coords), 27)
    found = torch.zeros_like(exists)
    found[:, list(by_grid.columns)] = present
    assert torch.equal(found, exists)


def test_kernel_maps_are_built_once_per_level(monkeypatch: pytest.MonkeyPatch) -> None:
    builds: dict[str, list[int]] = {"subm": [], "down": []}

    def counting(kind: str, build):
        def wrapper(coords: torch.Tensor, *args):
            builds[kind].append(len(coords))
            return build(coords, *args)
        return wrapper

    monkeypatch.setattr(kernel_maps, "build_submanifold_map", counting("subm", kernel_maps.build_submanifold_map))
    monkeypatch.setattr(kernel_maps, "build_down_map", counting("down", kernel_maps.build_down_map))
    torch.manual_seed(0)
    model = Student(student_config("tiny"))
    voxels, _ = model.voxelize(room_points(1500))
    out = model.forward_voxels(voxels)
    out.features.sum().backward()
    levels = len(model.config.channels) + 1
    convs = sum(isinstance(m, SubmanifoldConv3d) for m in model.modules())
    assert convs > 2 * levels                                # many layers share each level's map
    assert len(builds["subm"]) == levels and len(builds["down"]) == levels - 1
    assert builds["subm"][0] == len(voxels.coords) and builds["subm"] == sorted(builds["subm"], reverse=True)
    assert sorted(voxels.cache.maps) == sorted([(2 ** i, 3, "subm") for i in range(levels)]
                                               + [(2 ** i, 2, "down") for i in range(levels - 1)])


def test_backend_selection() -> None:
    assert get_backend() == "portable"
    with pytest.raises(ValueError, match="unknown sparse backend"):
        set_backend("minkowski")
    with use_backend("auto"):
        assert get_backend() == "auto"
        expected = "torchsparse" if torch.cuda.is_available() and torchsparse_available() else "portable"
        assert backend_for(torch.zeros(1, device="cuda" if torch.cuda.is_available() else "cpu")).name == expected
        assert backend_for(torch.zeros(1)).name == "portable"
    assert get_backend() == "portable"
    if not torchsparse_available():
        with pytest.raises(ImportError):
            set_backend("torchsparse")
        assert get_backend() == "portable"


def trained_tiny_student(seed: int = 0) -> tuple[Student, torch.Tensor]:
    """A tiny student after a train-mode forward (so its batch-norm statistics are not the defaults), in eval mode,
    and points of a small room."""
    torch.manual_seed(seed)
    model = Student(student_config("tiny"))
    points = room_points(1500)
    model(points)
    return model.eval(), points


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path) -> None:
    model, points = trained_tiny_student()
    path = tmp_path / "student.pt"
    torch.save(model.state_dict(), path)
    loaded = Student(student_config("tiny"))
    loaded.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(points), model(points))


@pytest.mark.skipif(not torchsparse_available(),
                    reason="torchsparse >= 2.1 is not installed (it is built from source, for CUDA; no PyPI wheel)")
def test_torchsparse_backend_matches_portable(tmp_path) -> None:
    model, points = trained_tiny_student()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = tmp_path / "student.pt"
    torch.save(model.state_dict(), path)
    loaded = Student(student_config("tiny"))
    loaded.load_state_dict(torch.load(path, weights_only=True))
    loaded = loaded.to(device).eval()
    points = points.to(device)
    with torch.no_grad(), use_backend("portable"):
        portable = loaded(points)
    with torch.no_grad(), use_backend("torchsparse"):
        torchsparse = loaded(points)
    assert_close(torchsparse.cpu(), portable.cpu())


def test_student_gives_unit_norm_deterministic_features() -> None:
    model, points = trained_tiny_student()
    with torch.no_grad():
        first, second = model(points), model(points)
    assert first.shape == (len(points), model.config.out_dim)
    assert torch.allclose(first.norm(dim=1), torch.ones(len(points)), atol=1e-5)
    assert torch.equal(first, second)
    assert torch.unique(first, dim=0).shape[0] > 10              # not one constant vector


def test_student_takes_colour_when_configured() -> None:
    torch.manual_seed(0)
    model = Student(student_config("tiny", inputs=("colour",))).eval()
    points = room_points(500)
    colours = torch.rand(len(points), 4)
    with torch.no_grad():
        assert model(points, colours).shape == (len(points), 16)
    with pytest.raises(ValueError, match="4 per-point input features"):
        model(points)
    with pytest.raises(ValueError, match="unknown student preset"):
        student_config("huge")


def test_in_place_row_normalisation_matches_f_normalize() -> None:
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(50, 7, generator=generator, dtype=torch.float64)
    grad = torch.randn(50, 7, generator=generator, dtype=torch.float64)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = normalize_rows_(a * 1.0), F.normalize(b, dim=1)
    (ya * grad).sum().backward()
    (yb * grad).sum().backward()
    assert torch.allclose(ya, yb) and torch.allclose(a.grad, b.grad)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = Student(student_config("tiny")).train()
    points = room_points(1500)
    target = F.normalize(torch.randn(len(points), 16), dim=1)
    loss = 1 - (model(points) * target).sum(dim=1).mean()
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_tiny_student_overfits_a_toy_target() -> None:
    torch.manual_seed(0)
    model = Student(student_config("tiny")).train()
    x, y = torch.meshgrid(torch.arange(25), torch.arange(8), indexing="ij")
    points = (torch.stack((x, y, torch.zeros_like(x)), dim=-1).reshape(-1, 3).float() + 0.5) * 0.02
    voxels, _ = model.voxelize(points)
    assert len(voxels.coords) == 200
    directions = F.normalize(torch.randn(3, 16), dim=1)
    target = directions[voxels.coords[:, 1].long() * 3 // 25]       # three bands along x
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = 1 - (model.forward_voxels(voxels).features * target).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_student_benchmark_compares_ours_with_spconv_in_child_processes() -> None:
    pytest.importorskip("spconv.pytorch", reason="spconv (test extra) is not installed on this platform")
    result = run_student_benchmark(voxels=2000, preset="tiny", threads=1, repeats=1)
    assert [(row["backend"], row["threads"]) for row in result["rows"]] == [("ours", 1), ("spconv", 1)]
    assert result["max_abs_diff"] < 1e-4 and result["spconv_max_abs_diff"] == 0.0
    assert abs(result["voxels"] - 2000) < 200 and result["parameters"] > 0
    for row in result["rows"]:
        assert row["forward_backward_s"] > 0 and row["inference_s"] > 0 and row["peak_mb"] > 0
    assert result["ratio"]["inference_s"] == result["rows"][0]["inference_s"] / result["rows"][1]["inference_s"]
