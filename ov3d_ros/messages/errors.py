"""Error raised when a ROS message cannot be converted."""
from __future__ import annotations


class MessageError(ValueError):
    """A message is malformed or uses a layout/encoding this package does not support. `reason`, when given, is
    the drop counter it is counted under instead of the callback's own (e.g. ``unsupported_distortion``)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
