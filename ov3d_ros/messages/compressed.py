"""``sensor_msgs/msg/CompressedImage`` <-> numpy, without ROS or OpenCV: what most recorded bags carry.

Colour (image_transport's ``compressed``): ``format`` names the codec, as ``"jpeg"`` / ``"png"`` or in the long
form ``"rgb8; jpeg compressed bgr8"``; the payload is a plain JPEG or PNG file, decoded to RGB whatever the
channel order it was made from.

Depth (image_transport's ``compressedDepth``): ``format`` is ``"<encoding>; compressedDepth [png|rvl]"`` (older
publishers write only ``"<encoding>; compressedDepth"``, meaning png) and the payload is a 12-byte little-endian
header (int32 compression format, float32 quantisation parameters A and B) followed by a 16-bit PNG. For 16UC1
the PNG holds millimetres (0 = no reading); for 32FC1 it holds quantised inverse depth q, depth = A / (q - B)
metres (q = 0: no reading). RVL payloads are rejected with a clear reason.

`colour_pixels` and `depth_metres` take a raw Image or a CompressedImage alike, so the fusion node decodes one way.
"""
from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
from PIL import Image as PILImage

from ov3d_ros.messages.errors import MessageError
from ov3d_ros.messages.image import depth_to_metres, image_to_array
from ov3d_ros.messages.types import MessageTypes, ROS_TYPES, data_bytes, make_header

DEPTH_HEADER = struct.Struct("<iff")       # compression format (0 = inverse depth), quantisation A, B
INVERSE_DEPTH = 0
DEFAULT_DEPTH_MAX_M = 10.0                 # image_transport's defaults for 32FC1 inverse-depth quantisation
DEFAULT_DEPTH_QUANTIZATION = 100.0
COLOUR_CODECS = ("jpeg", "png")
MAX_PIXELS = 64 * 1024 * 1024              # a decoded image larger than this is refused (decompression bombs)


def is_compressed(msg: Any) -> bool:
    """Whether a message is a CompressedImage (it has ``format``) rather than a raw Image."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def _decode_png_or_jpeg(payload: np.ndarray | bytes, what: str) -> PILImage.Image:
    try:
        image = PILImage.open(io.BytesIO(bytes(payload)))
        if image.width * image.height > MAX_PIXELS:
            raise MessageError(f"{what} is {image.width}x{image.height}, more than {MAX_PIXELS} pixels")
        image.load()
        return image
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise MessageError(f"{what} does not decode: {exc}") from None


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour CompressedImage (JPEG or PNG)."""
    codec = str(msg.format).lower()
    if "compresseddepth" in codec.replace(" ", ""):
        raise MessageError(f"a compressedDepth image ({msg.format!r}) is not a colour image")
    if not any(name in codec for name in COLOUR_CODECS):
        raise MessageError(f"unsupported compressed image format {msg.format!r}; supported: jpeg, png")
    image = _decode_png_or_jpeg(data_bytes(msg.data), "compressed colour image")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _depth_format(fmt: str) -> tuple[str, str]:
    """(encoding, codec) of a compressedDepth ``format`` string."""
    encoding, _, rest = fmt.partition(";")
    encoding, rest = encoding.strip(), rest.strip()
    if rest and not rest.startswith("compressedDepth"):
        raise MessageError(f"not a compressedDepth format: {fmt!r}")
    codec = rest[len("compressedDepth"):].strip() or "png"
    if encoding not in ("16UC1", "32FC1"):
        raise MessageError(f"compressedDepth encoding must be 16UC1 or 32FC1, got {encoding!r}")
    if codec != "png":
        raise MessageError(f"compressedDepth codec {codec!r} is not supported (png only)")
    return encoding, codec


def compressed_depth_to_metres(msg: Any) -> np.ndarray:
    """(H, W) float32 metres of a compressedDepth CompressedImage; no reading -> NaN."""
    encoding, _ = _depth_format(str(msg.format))
    data = data_bytes(msg.data)
    if data.size <= DEPTH_HEADER.size:
        raise MessageError(f"compressedDepth data has {data.size} bytes, no room for the header and an image")
    kind, quant_a, quant_b = DEPTH_HEADER.unpack(bytes(data[:DEPTH_HEADER.size]))
    image = _decode_png_or_jpeg(data[DEPTH_HEADER.size:], "compressedDepth image")
    values = np.asarray(image)
    if values.ndim != 2 or values.dtype.kind not in "ui" or image.mode not in ("I;16", "I;16B", "I", "L"):
        raise MessageError(f"compressedDepth image must be one 16-bit channel, got mode {image.mode}")
    values = values.astype(np.uint16)
    if encoding == "16UC1":
        return depth_to_metres(values, "16UC1")
    if kind != INVERSE_DEPTH:
        raise MessageError(f"32FC1 compressedDepth with compression format {kind} (expected inverse depth)")
    metres = np.full(values.shape, np.nan, np.float32)
    seen = values > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        metres[seen] = quant_a / (values[seen].astype(np.float32) - quant_b)
    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def colour_pixels(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour Image or CompressedImage."""
    return compressed_to_rgb(msg) if is_compressed(msg) else image_to_array(msg)


def depth_metres(msg: Any) -> np.ndarray:
    """(H, W) float32 metres of a depth Image (16UC1 / 32FC1) or compressedDepth CompressedImage."""
    return compressed_depth_to_metres(msg) if is_compressed(msg) else depth_to_metres(msg)


def _png(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    PILImage.fromarray(array).save(stream, format="PNG")
    return stream.getvalue()


def rgb_to_compressed(rgb: np.ndarray, codec: str, frame_id: str, stamp_ns: int, quality: int = 90,
                      types: MessageTypes = ROS_TYPES) -> Any:
    """A colour CompressedImage (format ``"rgb8; <codec> compressed rgb8"``) of (H, W, 3) uint8 RGB."""
    if codec not in COLOUR_CODECS:
        raise MessageError(f"codec must be one of {', '.join(COLOUR_CODECS)}, got {codec!r}")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise MessageError(f"colour must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    if codec == "png":
        payload = _png(rgb)
    else:
        stream = io.BytesIO()
        PILImage.fromarray(rgb).save(stream, format="JPEG", quality=quality)
        payload = stream.getvalue()
    return types.get("sensor_msgs/msg/CompressedImage")(
        header=make_header(types, frame_id, stamp_ns), format=f"rgb8; {codec} compressed rgb8",
        data=types.sequence(np.frombuffer(payload, np.uint8)))


def depth_to_compressed(depth: np.ndarray, frame_id: str, stamp_ns: int, depth_max_m: float = DEFAULT_DEPTH_MAX_M,
                        quantization: float = DEFAULT_DEPTH_QUANTIZATION, types: MessageTypes = ROS_TYPES) -> Any:
    """A compressedDepth CompressedImage of (H, W) uint16 millimetres (16UC1, readings beyond `depth_max_m` and
    invalid ones written as 0) or float32 metres (32FC1, quantised inverse depth as image_transport writes it)."""
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.dtype not in (np.uint16, np.float32):
        raise MessageError(f"depth must be (H, W) uint16 millimetres or float32 metres, got {depth.dtype} "
                           f"{depth.shape}")
    if depth.dtype == np.uint16:
        encoding, header = "16UC1", DEPTH_HEADER.pack(INVERSE_DEPTH, 0.0, 0.0)
        pixels = np.where(depth > depth_max_m * 1000.0, 0, depth).astype(np.uint16)
    else:
        encoding = "32FC1"
        quant_a = np.float32(quantization * (quantization + 1.0))
        quant_b = np.float32(1.0 - quant_a / depth_max_m)
        header = DEPTH_HEADER.pack(INVERSE_DEPTH, float(quant_a), float(quant_b))
        valid = np.isfinite(depth) & (depth > 0) & (depth < depth_max_m)
        pixels = np.zeros(depth.shape, np.uint16)
        pixels[valid] = np.clip(quant_a / depth[valid] + quant_b, 1, 65535).astype(np.uint16)
    payload = header + _png(pixels)
    return types.get("sensor_msgs/msg/CompressedImage")(
        header=make_header(types, frame_id, stamp_ns), format=f"{encoding}; compressedDepth png",
        data=types.sequence(np.frombuffer(payload, np.uint8)))
