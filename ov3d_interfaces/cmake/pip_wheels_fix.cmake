# The ROS 2 PyPI wheels export some targets whose INTERFACE_INCLUDE_DIRECTORIES name folders of the image the
# wheels were built in (/opt/python/...). Those folders do not exist here and CMake refuses to generate.
# Include this file after ament_package(): it drops such entries from every imported target of this directory.
# On a normal ROS installation no entry matches and nothing changes.
get_directory_property(_ov3d_imported IMPORTED_TARGETS)
foreach(_target IN LISTS _ov3d_imported)
  get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
  if(_dirs)
    list(FILTER _dirs EXCLUDE REGEX "^/opt/python/")
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_dirs}")
  endif()
endforeach()
