"""2D teachers (per-pixel language-aligned features) and their multi-view fusion onto 3D points (ROS-free)."""
