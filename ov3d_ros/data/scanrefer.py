"""ScanRefer-style referring expressions (JSON list of entries), ours and ScanRefer's own files alike."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ov3d_ros.data.openscene import DataError

REQUIRED = ("scene_id", "object_id", "object_name", "ann_id", "description")


@dataclass(frozen=True)
class ReferringExpression:
    """One sentence about one object of one scene."""

    scene_id: str
    object_id: int
    object_name: str
    ann_id: int
    description: str
    eval_type: str | None = None      # "unique" / "multiple" when the file says (ours does; ScanRefer does not)


def read_scanrefer(path: str | Path) -> list[ReferringExpression]:
    """Entries of a ScanRefer JSON file; clear errors for a file that is not a list of such entries."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of ScanRefer entries")
    out = []
    for i, entry in enumerate(entries):
        missing = [key for key in REQUIRED if key not in entry] if isinstance(entry, dict) else list(REQUIRED)
        if missing:
            raise DataError(f"{path}: entry {i} lacks {', '.join(missing)}")
        out.append(ReferringExpression(str(entry["scene_id"]), int(entry["object_id"]), str(entry["object_name"]),
                                       int(entry["ann_id"]), str(entry["description"]), entry.get("eval_type")))
    return out
