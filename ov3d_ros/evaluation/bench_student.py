"""Benchmark: the student network on our portable sparse backend against the same network on spconv (CPU).

The scene: points on the floor and walls of bench_fusion's room and on its boxes, with 0.2-voxel Gaussian noise,
the room scaled so that at 2 cm about `voxels` voxels are occupied (dense surfaces, like a fused RGB-D scan).

The spconv network is `spconv_twin`: a copy of the student whose sparse convolutions are spconv layers (SubMConv3d
with one indice key per level, SparseConv3d, SparseInverseConv3d reusing the down conv's pairs) holding the same
weights; normalisation, ReLU, concatenation and the 1x1 convs are the same torch code in both (spconv's own 1x1 path
misreads its weight layout). spconv's CPU wheel computes wrong results with more than one thread, so the outputs
are compared at 1 thread only; at more threads its times are speed-only.

Per backend and thread count, a fresh "spawn" process builds the scene and the model (seeded, so identical in
every process), warms up, then times `repeats` forward+backward passes (train mode, a cosine loss against fixed
random targets) and `repeats` inference passes (eval mode, inference_mode); the best of each is reported. Every
pass starts from a new input tensor, so kernel maps (spconv: indice pairs) are built inside the timed region.
Peak memory: bench_fusion's method (peak RSS of the child over the timed passes, see `peak_memory_method`).
"""
from __future__ import annotations

import copy
import math
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

from ov3d_ros.evaluation.bench_fusion import BOXES, ROOM, box_faces, peak_rss_kb, reset_peak, sample_faces
from ov3d_ros.models.student import Student, student_config
from ov3d_ros.sparse.layers import DownConv3d, SparseInstanceNorm, SubmanifoldConv3d, UpConv3d
from ov3d_ros.sparse.tensor import SparseTensor, voxelize

POINTS_PER_CELL = 4.0           # surface samples per voxel face: nearly every surface cell is occupied
NOISE_VOXELS = 0.2              # Gaussian position noise, in voxels
AGREEMENT_TOLERANCE = 1e-3      # max |ours - spconv| of unit-norm outputs, at 1 thread
BACKENDS = ("ours", "spconv")


def room_points(voxels: int, voxel_size: float = 0.02, seed: int = 0) -> torch.Tensor:
    """(N, 3) float32 points of the benchmark room, scaled so that about `voxels` voxels are occupied."""
    faces = box_faces(ROOM, skip=("top",)) + [f for box in BOXES for f in box_faces(box, skip=("bottom",))]
    area = sum(float(np.linalg.norm(np.cross(e1, e2))) for _, e1, e2 in faces)

    def sample(scale: float) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        count = int(POINTS_PER_CELL * area * scale ** 2 / voxel_size ** 2)
        points = sample_faces(faces, count, rng) * scale + rng.normal(0.0, NOISE_VOXELS * voxel_size, (count, 3))
        return torch.from_numpy(points.astype(np.float32))

    scale = math.sqrt(voxels * voxel_size ** 2 / area)
    for _ in range(2):          # the surface voxel count is about proportional to the scale squared
        scale *= math.sqrt(voxels / len(voxelize(sample(scale), voxel_size)[0].coords))
    return sample(scale)


def spconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """Our (K, C_in, C_out) -> spconv's (C_out, k, k, k, C_in) (both cross-correlations, x slowest)."""
    k = round(weight.shape[0] ** (1 / 3))
    return weight.reshape(k, k, k, *weight.shape[1:]).permute(4, 0, 1, 2, 3).contiguous()


def spconv_input(x: SparseTensor, levels: int) -> Any:
    """Our stride-1 tensor as a spconv SparseConvTensor: coordinates moved to >= 0 by a multiple of 2**levels (so
    every stride-2 grouping is unchanged) and a spatial shape divisible by 2**levels."""
    import spconv.pytorch as spconv

    step = 2 ** levels
    xyz = x.coords[:, 1:].to(torch.int64)
    xyz = xyz - torch.div(xyz.min(dim=0).values, step, rounding_mode="floor") * step
    shape = (torch.div(xyz.max(dim=0).values, step, rounding_mode="floor") + 1) * step
    indices = torch.cat((x.coords[:, :1].to(torch.int64), xyz), dim=1).to(torch.int32)
    return spconv.SparseConvTensor(x.features, indices, shape.tolist(), int(x.coords[:, 0].max()) + 1)


def spconv_twin(model: Student, example: SparseTensor) -> Student:
    """A copy of `model` whose sparse convolutions are spconv layers with the same weights (run on `spconv_input`).

    One forward of `model` on `example` (eval mode, restored afterwards) records each convolution's level.
    """
    import spconv.pytorch as spconv

    strides: dict[str, int] = {}
    names = {module: name for name, module in model.named_modules()}
    convs = [m for m in model.modules() if isinstance(m, (SubmanifoldConv3d, DownConv3d, UpConv3d))]

    def record(module: torch.nn.Module, args: tuple[SparseTensor]) -> None:
        strides[names[module]] = args[0].stride

    hooks = [m.register_forward_pre_hook(record) for m in convs]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval().forward_voxels(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    twin = copy.deepcopy(model)
    for name, stride in strides.items():
        ours = twin.get_submodule(name)
        common = {"bias": ours.bias is not None}
        if isinstance(ours, SubmanifoldConv3d):
            layer = spconv.SubMConv3d(ours.in_channels, ours.out_channels, ours.kernel_size,
                                      indice_key=f"subm{stride}", **common)
        elif isinstance(ours, DownConv3d):
            layer = spconv.SparseConv3d(ours.in_channels, ours.out_channels, 2, stride=2,
                                        indice_key=f"down{stride}", **common)
        else:
            layer = spconv.SparseInverseConv3d(ours.in_channels, ours.out_channels, 2,
                                               indice_key=f"down{stride // 2}", **common)
        with torch.no_grad():
            layer.weight.copy_(spconv_weight(ours.weight))
            if ours.bias is not None:
                layer.bias.copy_(ours.bias)
        parent, _, child = name.rpartition(".")
        setattr(twin.get_submodule(parent), child, layer)
    for name, module in list(twin.named_modules()):
        if isinstance(module, SparseInstanceNorm):
            norm = _SpconvInstanceNorm(module.num_features, module.eps)
            norm.load_state_dict(module.state_dict())
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent), child, norm)
    return twin


class _SpconvInstanceNorm(SparseInstanceNorm):
    """`SparseInstanceNorm` on a spconv SparseConvTensor (batch index in its `indices`)."""

    def forward(self, x: Any) -> Any:  # type: ignore[override]
        return x.replace_feature(self.normalise(x.features, x.indices[:, 0]))


def patch_spconv_for_cpu() -> None:
    """spconv's backward asks torch.cuda for a stream even for CPU tensors; make it get the null stream."""
    import spconv.pytorch.ops

    spconv.pytorch.ops.get_current_stream = lambda: 0


def _best_seconds(step: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def _measure(backend: str, threads: int, scene: dict[str, Any], out: str) -> dict[str, Any]:
    """In a child process: build scene and model, warm up, time training and inference passes, save the output."""
    torch.set_num_threads(threads)
    torch.manual_seed(scene["seed"])
    config = student_config(scene["preset"])
    model = Student(config)
    voxels, _ = model.voxelize(room_points(scene["voxels"], config.voxel_size, scene["seed"]))
    coords, features = voxels.coords, voxels.features
    target = torch.nn.functional.normalize(torch.randn(len(coords), config.out_dim), dim=1)
    if backend == "spconv":
        patch_spconv_for_cpu()
        network = spconv_twin(model, voxels)
        levels = len(config.channels)

        def run() -> torch.Tensor:
            return network.forward_voxels(spconv_input(SparseTensor(coords, features), levels)).features
    else:
        network = model

        def run() -> torch.Tensor:
            return network.forward_voxels(SparseTensor(coords, features)).features

    def train_step() -> None:
        network.train()
        loss = 1.0 - (run() * target).sum(dim=1).mean()
        loss.backward()
        network.zero_grad(set_to_none=True)

    def inference() -> torch.Tensor:
        network.eval()
        with torch.inference_mode():
            return run()

    train_step()
    inference()
    baseline_kb, method = reset_peak()
    forward_backward = _best_seconds(train_step, scene["repeats"])
    inference_s = _best_seconds(inference, scene["repeats"])
    peak_kb = peak_rss_kb(method)
    np.save(f"{out}.npy", inference().numpy())
    return {"name": f"{backend}: {'portable backend' if backend == 'ours' else 'spconv ' + _spconv_version()}",
            "backend": backend, "threads": threads, "voxels": len(coords), "forward_backward_s": forward_backward,
            "inference_s": inference_s, "peak_mb": peak_kb / 1024, "peak_increase_mb": (peak_kb - baseline_kb) / 1024,
            "peak_memory_method": method}


def _spconv_version() -> str:
    import spconv

    return spconv.__version__


def run_student_benchmark(voxels: int = 100_000, preset: str = "default", threads: int = 2, repeats: int = 5,
                          seed: int = 0) -> dict[str, Any]:
    """Time and measure the student on ours and on spconv, each in its own process; raises if they disagree.

    Rows (dicts with name, backend, threads, voxels, forward_backward_s, inference_s, peak_mb, peak_increase_mb,
    peak_memory_method): ours and spconv at `threads`, then (if `threads` != 1) both at 1 thread. The outputs of
    ours at `threads` and spconv at 1 thread must agree to AGREEMENT_TOLERANCE. Also returned: the student's
    parameter count, "ratio" (ours / spconv time at `threads`: forward_backward and inference; spconv's numbers at
    more than 1 thread are speed only), "ratio_1_thread" when measured, "max_abs_diff" (ours vs spconv at 1
    thread) and "spconv_max_abs_diff" (spconv at `threads` vs 1 thread: nonzero shows its multithreading defect).
    """
    scene = {"voxels": voxels, "preset": preset, "seed": seed, "repeats": repeats}
    runs = [(backend, threads) for backend in BACKENDS]
    if threads != 1:
        runs += [(backend, 1) for backend in BACKENDS]
    context = multiprocessing.get_context("spawn")
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory(prefix="ov3d-bench-student-") as folder:
        for i, (backend, count) in enumerate(runs):
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
                rows.append(executor.submit(_measure, backend, count, scene, f"{folder}/{i}").result())
            outputs[backend, count] = np.load(f"{folder}/{i}.npy")
    max_abs_diff = float(np.abs(outputs["ours", threads] - outputs["spconv", 1]).max(initial=0.0))
    if max_abs_diff >= AGREEMENT_TOLERANCE:
        raise RuntimeError(f"student benchmark: ours and spconv (1 thread) differ by up to {max_abs_diff:.3g} "
                           f"(tolerance {AGREEMENT_TOLERANCE})")

    def ratio(count: int) -> dict[str, float]:
        ours, reference = (next(r for r in rows if r["backend"] == b and r["threads"] == count) for b in BACKENDS)
        return {key: ours[key] / reference[key] for key in ("forward_backward_s", "inference_s")}

    result = {**scene, "threads": threads, "voxels": rows[0]["voxels"],
              "parameters": sum(p.numel() for p in Student(student_config(preset)).parameters()),
              "max_abs_diff": max_abs_diff,
              "spconv_max_abs_diff": float(np.abs(outputs["spconv", threads] - outputs["spconv", 1]).max()),
              "ratio": ratio(threads), "rows": rows}
    if threads != 1:
        result["ratio_1_thread"] = ratio(1)
    return result
