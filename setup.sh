#!/usr/bin/env bash
# One-command set-up on a fresh Debian 12 / Python 3.11 machine (no ROS needed):
#   a venv with pinned torch, the ROS 2 PyPI wheels (rclpy + Fast DDS), our interface package built from
#   source into the venv, and this package installed editable with its test dependencies.
# The ROS 2 distribution: Kilted by default (venv .venv); `./setup.sh --distro jazzy` or OV3D_ROS_DISTRO=jazzy
# gives Jazzy (the ros-jazzy-* wheels, venv .venv-jazzy; `OV3D_ROS_DISTRO=jazzy ./test.sh` tests it).
# Idempotent: every step is skipped when a stamp says its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
DISTRO=${OV3D_ROS_DISTRO:-kilted}
if [ "${1:-}" = "--distro" ]; then DISTRO=${2:?"--distro needs kilted or jazzy"}; fi
case "$DISTRO" in
  kilted) VENV="$ROOT/.venv"; PREFIX="ros-"; CMAKE_ROS=(ros-ament-cmake-ros-core) ;;
  # Jazzy's ament_cmake_ros needs the gmock, gtest and pytest modules, its rosidl_generator_py python_cmake_module
  jazzy)  VENV="$ROOT/.venv-jazzy"; PREFIX="ros-jazzy-"
          CMAKE_ROS=(ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-gtest
                     ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module) ;;
  *) echo "setup.sh: unknown ROS 2 distribution '$DISTRO' (kilted or jazzy)" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")   # see README: both are on this machine's disk
ROS_WHEELS=()
for name in rclpy rmw-fastrtps-cpp std-msgs std-srvs builtin-interfaces rosgraph-msgs geometry-msgs sensor-msgs \
            nav-msgs visualization-msgs diagnostic-msgs lifecycle-msgs; do ROS_WHEELS+=("$PREFIX$name"); done
ROS_BUILD_WHEELS=("${PREFIX}ament-cmake" "${PREFIX}ament-package" "${PREFIX}rosidl-default-generators"
                  "${PREFIX}rosidl-core-generators" "${PREFIX}ament-cmake-include-directories" "${CMAKE_ROS[@]}"
                  catkin-pkg cmake ninja)
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
  local build="$ROOT/build/$DISTRO/$name"
  rm -rf "$build"
  AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$VPY" -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 \
  && AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" cmake --build "$build" --target install >>"$build.log" 2>&1 \
  || { tail -n 40 "$build.log"; echo "setup.sh: building $name failed (full log: $build.log)" >&2; exit 1; }
  "$VPY" -c "import $module" || { echo "setup.sh: $name built but '$module' does not import" >&2; exit 1; }
  echo "$key" > "$STAMPS/$name"
}

mkdir -p "$ROOT/build/$DISTRO"
build_interfaces "$ROOT/ov3d_interfaces" "ov3d_interfaces.srv"
if [ -f "$STAMPS/tf2_msgs" ] || ! "$VPY" -c "import tf2_msgs.msg" 2>/dev/null; then
  build_interfaces "$ROOT/compat/tf2_msgs" "tf2_msgs.msg"   # only when no ROS install provides tf2_msgs
fi

step "ready ($DISTRO): $("$VPY" -c 'import rclpy, torch; print("torch", torch.__version__, "| rclpy OK")')"
if [ "$DISTRO" = kilted ]; then echo "run the tests with ./test.sh"; else echo "run the tests with OV3D_ROS_DISTRO=$DISTRO ./test.sh"; fi
