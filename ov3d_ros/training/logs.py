"""Training logs: CSV files a person can read (one row per log step) and TensorBoard event files."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def tensorboard(folder: Path) -> Any:
    """A TensorBoard SummaryWriter writing into `folder`/tensorboard."""
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(folder / "tensorboard"))


class CsvLog:
    """Appends rows to a CSV file (header written once), flushed per row so a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header_written = path.exists() and path.stat().st_size > 0

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            if not self.header_written:
                writer.writeheader()
                self.header_written = True
            writer.writerow(row)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CsvLog file (empty when it does not exist)."""
    if not path.exists():
        return []
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))
