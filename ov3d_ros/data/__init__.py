"""Offline data: rosbag2 reading and writing, datasets."""
