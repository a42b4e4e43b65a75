"""Language grounding: text query in, ranked 3D objects of the map out (ROS-free)."""
