"""ov3d_ros: open-vocabulary 3D perception for ROS 2."""
