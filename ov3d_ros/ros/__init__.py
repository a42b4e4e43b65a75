"""The ROS 2 layer: nodes, message adaptation, launcher and bag replay. The only package that imports rclpy."""
