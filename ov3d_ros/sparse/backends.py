"""Sparse-convolution backends behind the layers, chosen with `set_backend` / `use_backend`.

- "portable" (default): pure PyTorch, CPU and CUDA, nothing to compile. Per level, kernel maps are built once
  (`kernel_maps`) and kept in the tensor's `KernelMapCache`. Stride-2 and transposed convolutions do one gather
  -> matmul -> index_add (index_copy) per non-empty kernel offset, into buffers allocated once per call.
  Submanifold convolutions run output-stationary ("implicit GEMM"): per block of voxels, one gather of all their
  neighbours' features (a zero row where there is none) and one matmul with the (offsets x C_in, C_out) weight;
  no scatter at all, and on this 2-core CPU 1.2-4x faster than per-offset gather-scatter at 100k voxels (most for
  narrow layers), because the matmuls are larger and blocks stay in cache. Backward is hand-written the same way.
- "torchsparse": an adapter onto torchsparse >= 2.1 (built from source, CUDA; e.g. Jetson). It converts our
  coordinates and weights (offset order, see `kernel_maps`) and keeps torchsparse's own map cache in ours.
- "auto": torchsparse for CUDA tensors when it imports, else portable.

All backends take the same weights (K, C_in, C_out), so one checkpoint runs on any of them.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Literal, Protocol

import torch

from ov3d_ros.sparse import kernel_maps
from ov3d_ros.sparse.kernel_maps import KernelMap, NeighbourMap
from ov3d_ros.sparse.tensor import SparseTensor

ConvKind = Literal["subm", "down", "up"]
BACKEND_NAMES = ("portable", "torchsparse", "auto")
_selected = "portable"
_BLOCK_BYTES = 8 << 20          # gather block of the implicit GEMM: ~8 MB stays in cache (measured best here)


class Backend(Protocol):
    """Runs one sparse convolution (no bias) of `kind` with weight (K, C_in, C_out)."""

    name: str

    def conv(self, x: SparseTensor, weight: torch.Tensor, kind: ConvKind, kernel_size: int) -> SparseTensor:
        ...


def _scatter(target: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, once: bool) -> None:
    if once:
        target.index_copy_(0, rows, values)
    else:
        target.index_add_(0, rows, values)


def _propagate(features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """(num_outputs, C_out): every pair's input row times its weight slice, summed into its output row."""
    width = weight.shape[2]
    if kmap.outputs_once:
        out = features.new_empty((kmap.num_outputs, width))
    else:
        out = features.new_zeros((kmap.num_outputs, width))
    gathered = features.new_empty((kmap.max_pairs, features.shape[1]))
    product = features.new_empty((kmap.max_pairs, width))
    for k, rows_in, rows_out in zip(kmap.kernel_index, kmap.inputs, kmap.outputs):
        n = len(rows_in)
        torch.index_select(features, 0, rows_in, out=gathered[:n])
        torch.mm(gathered[:n], weight[k], out=product[:n])
        _scatter(out, rows_out, product[:n], kmap.outputs_once)
    return out


class _KernelMapFunction(torch.autograd.Function):
    """Sparse convolution through a kernel map, with a gather -> matmul -> scatter backward."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        ctx.save_for_backward(features, weight)
        ctx.kmap = kmap
        return _propagate(features, weight, kmap)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        features, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        need_features, need_weight = ctx.needs_input_grad[:2]
        grad_out = grad_out.contiguous()
        grad_features = grad_weight = None
        if need_features:
            grad_features = (features.new_empty if kmap.inputs_once else features.new_zeros)(features.shape)
            product = features.new_empty((kmap.max_pairs, features.shape[1]))
        if need_weight:
            grad_weight = torch.zeros_like(weight)
            gathered_in = features.new_empty((kmap.max_pairs, features.shape[1]))
        gathered_out = grad_out.new_empty((kmap.max_pairs, grad_out.shape[1]))
        for k, rows_in, rows_out in zip(kmap.kernel_index, kmap.inputs, kmap.outputs):
            n = len(rows_in)
            grad_rows = torch.index_select(grad_out, 0, rows_out, out=gathered_out[:n])
            if need_weight:
                feature_rows = torch.index_select(features, 0, rows_in, out=gathered_in[:n])
                torch.mm(feature_rows.T, grad_rows, out=grad_weight[k])
            if need_features:
                torch.mm(grad_rows, weight[k].T, out=product[:n])
                _scatter(grad_features, rows_in, product[:n], kmap.inputs_once)
        return grad_features, grad_weight, None


def apply_kernel_map(features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Differentiable sparse convolution of (N_in, C_in) features through `kmap` -> (N_out, C_out)."""
    return _KernelMapFunction.apply(features, weight, kmap)


def _gathered_blocks(features: torch.Tensor, table: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """Per block of table rows: (their slice, the (rows, columns * C) features of their table entries, with the
    entry len(features) reading zeros). The yielded tensor is a reused buffer."""
    padded = torch.cat((features, features.new_zeros((1, features.shape[1]))))
    rows = max(256, min(16384, _BLOCK_BYTES // max(1, table.shape[1] * features.shape[1] * features.element_size())))
    buffer = features.new_empty((min(rows, len(table)) * table.shape[1], features.shape[1]))
    for start in range(0, len(table), rows):
        block = table[start:start + rows]
        gathered = torch.index_select(padded, 0, block.reshape(-1), out=buffer[:block.numel()])
        yield slice(start, start + len(block)), gathered.view(len(block), -1)


def _implicit_gemm(features: torch.Tensor, table: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """out[o] = concatenated features of table[o] @ weight (columns * C_in, C_out)."""
    out = features.new_empty((len(table), weight.shape[1]))
    for rows, gathered in _gathered_blocks(features, table):
        torch.mm(gathered, weight, out=out[rows])
    return out


class _SubmanifoldFunction(torch.autograd.Function):
    """Submanifold convolution through a neighbour table; backward uses the same table (the map is symmetric)."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, weight: torch.Tensor, nmap: NeighbourMap) -> torch.Tensor:
        ctx.save_for_backward(features, weight)
        ctx.nmap = nmap
        return _implicit_gemm(features, nmap.table, weight[list(nmap.columns)].reshape(-1, weight.shape[2]))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        features, weight = ctx.saved_tensors
        nmap: NeighbourMap = ctx.nmap
        grad_out = grad_out.contiguous()
        grad_features = grad_weight = None
        if ctx.needs_input_grad[0]:
            # o reads i at offset d  <=>  i sees o at offset -d: the mirrored, transposed weights
            mirrored = [nmap.kernel_volume - 1 - k for k in nmap.columns]
            grad_features = _implicit_gemm(grad_out, nmap.table,
                                           weight[mirrored].transpose(1, 2).reshape(-1, weight.shape[1]))
        if ctx.needs_input_grad[1]:
            flat = weight.new_zeros((len(nmap.columns) * weight.shape[1], weight.shape[2]))
            for rows, gathered in _gathered_blocks(features, nmap.table):
                flat.addmm_(gathered.T, grad_out[rows])
            grad_weight = torch.zeros_like(weight)
            grad_weight[list(nmap.columns)] = flat.view(len(nmap.columns), *weight.shape[1:])
        return grad_features, grad_weight, None


class PortableBackend:
    """Pure PyTorch; kernel maps from the tensor's cache (built on first use per level)."""

    name = "portable"

    def conv(self, x: SparseTensor, weight: torch.Tensor, kind: ConvKind, kernel_size: int) -> SparseTensor:
        if kind == "subm":
            nmap = x.cache.get((x.stride, kernel_size, "subm"),
                               lambda: kernel_maps.build_submanifold_map(x.coords, kernel_size))
            return x.replace_feature(_SubmanifoldFunction.apply(x.features, weight, nmap))
        if kind == "down":
            maps = x.cache.get((x.stride, 2, "down"), lambda: kernel_maps.build_down_map(x.coords))
            return SparseTensor(maps.coarse_coords, apply_kernel_map(x.features, weight, maps.down), 2 * x.stride,
                                x.cache)
        maps = x.cache.maps.get((x.stride // 2, 2, "down"))
        if x.stride % 2 or maps is None or len(maps.coarse_coords) != len(x.features):
            raise ValueError(f"UpConv3d onto stride {x.stride // 2} needs the DownConv3d from that stride earlier in "
                             "the same forward (same cache)")
        return SparseTensor(maps.fine_coords, apply_kernel_map(x.features, weight, maps.up), x.stride // 2, x.cache)


def _torchsparse_weight(weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Our (K, C_in, C_out) in torchsparse's offset order: x fastest for odd kernels, ours (z fastest) for even."""
    if kernel_size % 2 == 0:
        return weight
    cube = weight.reshape(kernel_size, kernel_size, kernel_size, *weight.shape[1:])
    return cube.permute(2, 1, 0, 3, 4).reshape(weight.shape)


class TorchsparseBackend:
    """Adapter onto torchsparse >= 2.1 (coordinates (batch, x, y, z) on each level's grid, like ours)."""

    name = "torchsparse"

    def __init__(self) -> None:
        import torchsparse
        from torchsparse.nn import functional

        version = tuple(int(part) for part in torchsparse.__version__.split(".")[:2])
        if version < (2, 1):
            raise ImportError(f"torchsparse {torchsparse.__version__} found; the adapter needs >= 2.1 "
                              "(batch-first coordinates on each level's grid)")
        self._tensor_type = torchsparse.SparseTensor
        self._conv3d = functional.conv3d

    def conv(self, x: SparseTensor, weight: torch.Tensor, kind: ConvKind, kernel_size: int) -> SparseTensor:
        tensor = self._tensor_type(feats=x.features, coords=x.coords.to(torch.int32), stride=x.stride)
        # one torchsparse cache per forward, carried in ours: its maps are reused like the portable ones
        tensor._caches = x.cache.backend_state.setdefault(self.name, tensor._caches)
        tensor._caches.cmaps.setdefault(tensor.stride, (tensor.coords, tensor.spatial_range))
        out = self._conv3d(tensor, _torchsparse_weight(weight, kernel_size), kernel_size=kernel_size,
                           stride=1 if kind == "subm" else 2,
                           padding=(kernel_size - 1) // 2 if kind == "subm" else 0,
                           transposed=kind == "up", training=torch.is_grad_enabled())
        return SparseTensor(out.coords, out.feats, int(out.stride[0]), x.cache)


@functools.cache
def _backend(name: str) -> Backend:
    return TorchsparseBackend() if name == "torchsparse" else PortableBackend()


@functools.cache
def torchsparse_available() -> bool:
    """Whether the torchsparse adapter can be used (torchsparse >= 2.1 imports)."""
    try:
        _backend("torchsparse")
    except (ImportError, OSError):      # OSError: an installed build whose CUDA libraries do not load
        return False
    return True


def set_backend(name: str) -> None:
    """Select "portable", "torchsparse" (raises ImportError when unusable) or "auto" for all sparse layers."""
    global _selected
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown sparse backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if name == "torchsparse":
        _backend(name)
    _selected = name


def get_backend() -> str:
    """The selected backend name."""
    return _selected


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Select a backend inside a `with` block; the previous selection is restored afterwards."""
    previous = _selected
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def backend_for(features: torch.Tensor) -> Backend:
    """The backend that runs a layer on `features` under the current selection."""
    if _selected == "auto":
        return _backend("torchsparse" if features.is_cuda and torchsparse_available() else "portable")
    return _backend(_selected)
