#!/usr/bin/env bash
# Runs the whole test suite in the project's venv (made by ./setup.sh; OV3D_ROS_DISTRO=jazzy: the Jazzy venv).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
case "${OV3D_ROS_DISTRO:-kilted}" in
  kilted) VENV=.venv ;;
  jazzy) VENV=.venv-jazzy ;;
  *) echo "test.sh: unknown ROS 2 distribution '${OV3D_ROS_DISTRO}' (kilted or jazzy)" >&2; exit 2 ;;
esac
if [ ! -x "$VENV/bin/python" ]; then
  echo "test.sh: $VENV is missing; run ./setup.sh${OV3D_ROS_DISTRO:+ --distro $OV3D_ROS_DISTRO} first" >&2
  exit 1
fi
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
