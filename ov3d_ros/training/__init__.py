"""Offline training of the student (GGSD, 3DSS-VLG) and the grounder (ROS-free library code)."""
