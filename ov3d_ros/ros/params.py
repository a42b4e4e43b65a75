"""Declare a config dataclass as ROS parameters (with descriptions and ranges) and read it back, typed."""
from __future__ import annotations

from typing import TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from ov3d_ros.config import ConfigError, from_mapping, nest, parameter_specs

T = TypeVar("T")


def declare_config(node: Node, cls: type[T]) -> T:
    """Declare every field of `cls` on `node` and return the dataclass built from the parameter values.

    Values come from the params file given to the node (launch file or `ov3d launch`), or the field defaults.
    rclpy rejects out-of-range values at declaration; cross-field rules raise ConfigError.
    """
    values = {}
    for name, default, description, (low, high) in parameter_specs(cls):
        descriptor = ParameterDescriptor(description=description, read_only=True)
        if isinstance(default, float) and low is not None and high is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
        elif isinstance(default, int) and not isinstance(default, bool) and low is not None and high is not None:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        if isinstance(default, list) and not default:     # an empty list does not say its type: declare it
            value = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor).value
            values[name] = default if value is None else list(value)
        else:
            values[name] = node.declare_parameter(name, default, descriptor).value
    try:
        return from_mapping(cls, nest(values), node.get_name())
    except ConfigError:
        node.get_logger().fatal("invalid parameters; see the error")
        raise
