"""Error raised when a ROS message cannot be converted."""


class MessageError(ValueError):
    """A message is malformed or uses a layout/encoding this package does not support."""
