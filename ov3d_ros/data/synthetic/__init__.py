"""Synthetic indoor world: procedurally furnished rooms (:mod:`.layout`) over an NYU40 / ScanNet-style category set
(:mod:`.categories`), rendered as surface point clouds and RGB-D views (:mod:`.render`) and sensed by a handheld
RGB-D camera and a spinning LiDAR with realistic noise (:mod:`.sensors`). Everything is deterministic given a seed.
"""
