"""The core imports and works with rclpy made unimportable: only ov3d_ros.ros may use it."""
from __future__ import annotations

import subprocess
import sys

BLOCK_RCLPY = """
import importlib.abc, pkgutil, sys
class BlockRclpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "rclpy" or name.startswith("rclpy."):
            raise ImportError("rclpy is blocked for this test")
sys.meta_path.insert(0, BlockRclpy())
import ov3d_ros
names = [m.name for m in pkgutil.walk_packages(ov3d_ros.__path__, "ov3d_ros.")
         if not m.name.startswith("ov3d_ros.ros")]
for name in names:
    __import__(name)
assert "rclpy" not in sys.modules
print(len(names), "modules")
"""


def test_every_core_module_imports_without_rclpy():
    result = subprocess.run([sys.executable, "-c", BLOCK_RCLPY], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[0]) >= 10


def test_ros_layer_really_needs_rclpy():
    """The guard above can fail: importing the ROS layer under the same block raises."""
    code = BLOCK_RCLPY.split("import ov3d_ros\n")[0] + "import ov3d_ros.ros.nodes.grounding\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "rclpy is blocked" in result.stderr
