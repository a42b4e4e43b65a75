"""Geometry: camera models and rigid transforms (numpy, no ROS)."""
