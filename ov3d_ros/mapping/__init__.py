"""Mapping: sensor data to world-frame points, the incremental voxel map (ROS-free)."""
