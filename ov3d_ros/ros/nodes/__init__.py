"""Nodes of the perception graph; each is a thin adapter between ROS messages and the ROS-free core."""
