"""The distilled grounder's per-query pass in ONNX Runtime.

A query runs a few dozen small operators; in eager PyTorch each costs several microseconds of dispatch, which is
most of the time on a CPU. ONNX Runtime runs the same graph (exported from the trained module, in memory, when the
grounder loads) at a fraction of that cost. The map encoding (once per map) stays in PyTorch. Without onnxruntime
installed, `onnx_runner` returns None and the grounder runs in PyTorch.
"""
from __future__ import annotations

import io
import warnings
from typing import Callable

import numpy as np
import torch

from ov3d_ros.models.grounding import MapEncoding, TwoStageGrounder

INPUTS = ("words", "word_padding", "coarse", "object_padding", "neighbours", "neighbour_padding", "tokens",
          "pair_key_values")
# {input name: numpy array} (names the graph does not use are ignored) -> (B, P) scores
Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


class _Flat(torch.nn.Module):
    """The grounder's forward with the map encoding as two plain tensors (what an exporter can trace)."""

    def __init__(self, model: TwoStageGrounder) -> None:
        super().__init__()
        self.model = model

    def forward(self, words: torch.Tensor, word_padding: torch.Tensor, coarse: torch.Tensor,
                object_padding: torch.Tensor, neighbours: torch.Tensor, neighbour_padding: torch.Tensor,
                tokens: torch.Tensor, pair_key_values: torch.Tensor) -> torch.Tensor:
        return self.model(words, word_padding, coarse, object_padding, neighbours, neighbour_padding,
                          MapEncoding(tokens, pair_key_values))


def onnx_runner(model: TwoStageGrounder, threads: int = 1) -> Runner | None:
    """A function running the grounder's forward in ONNX Runtime on `threads` threads, or None when onnxruntime
    is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    flat = _Flat(model).eval()
    dim, feature_dim = model.config.dim, model.config.feature_dim
    example = (torch.zeros(1, 3, feature_dim), torch.zeros(1, 3, dtype=torch.bool), torch.zeros(1, 4, 2),
               torch.zeros(1, 4, dtype=torch.bool), torch.zeros(1, 4, 2, dtype=torch.long),
               torch.zeros(1, 4, 2, dtype=torch.bool), torch.zeros(1, 4, dim), torch.zeros(1, 4, 2, 2 * dim))
    axes = {name: {0: "batch", 1: "words" if name.startswith("word") else "objects"} for name in INPUTS}
    for name in ("neighbours", "neighbour_padding", "pair_key_values"):
        axes[name][2] = "neighbourhood"
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the exporter's notes on traced shapes and deprecations
        torch.onnx.export(flat, example, buffer, input_names=list(INPUTS), output_names=["scores"],
                          dynamic_axes=axes, dynamo=False, opset_version=17)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    used = {i.name for i in session.get_inputs()}

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, {name: value for name, value in feed.items() if name in used})[0]
    return run
