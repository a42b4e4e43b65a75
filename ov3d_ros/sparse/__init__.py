"""Sparse 3D convolution: voxel tensors, kernel maps, layers and backends (portable PyTorch or torchsparse)."""
from ov3d_ros.sparse.backends import get_backend, set_backend, torchsparse_available, use_backend
from ov3d_ros.sparse.layers import (DownConv3d, PointwiseConv3d, SparseInstanceNorm, SparseReLU, SubmanifoldConv3d,
                                    UpConv3d)
from ov3d_ros.sparse.tensor import KernelMapCache, SparseTensor, cat_features, devoxelize, voxelize

__all__ = [
    "DownConv3d", "KernelMapCache", "PointwiseConv3d", "SparseInstanceNorm", "SparseReLU", "SparseTensor",
    "SubmanifoldConv3d", "UpConv3d", "cat_features", "devoxelize", "get_backend", "set_backend",
    "torchsparse_available", "use_backend", "voxelize",
]
