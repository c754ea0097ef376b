# cmake/triton.cmake - compiles kiln's Triton kernels (kernels/triton/*.py) ahead of time.
#
# Included by the top-level CMakeLists.txt when the CUDA backend is on and python3 can import
# triton. It runs tools/triton_aot.py at build time for KILN_CUDA_ARCHS into
# ${CMAKE_BINARY_DIR}/generated/ (launchers, tables, manifest.json, and per kernel/variant/arch the
# PTX and the cubin that the CUDA toolkit's ptxas assembles), adds the generated C to the library
# and defines KILN_HAVE_TRITON_KERNELS=1. Nothing generated is committed.
#
# Triton is pinned to 3.6.x. When the python3 on PATH has another version (torch may pull a newer
# one), install 3.6 beside it and point KILN_TRITON_PYTHONPATH at it:
#   python3 -m pip install --no-deps --target .deps/triton36 'triton==3.6.*'
# (.deps/triton36 in the source tree is used by default when it exists). With KILN_TRITON=AUTO a
# missing or wrong Triton only turns the Triton kernels off, with a warning; with ON it is an error.
#
# What it is not: a place for kernel code; kernels and their variants live in kernels/triton.

set(KILN_TRITON_PYTHONPATH "" CACHE PATH "Folder holding Triton 3.6 (prepended to PYTHONPATH)")
if(NOT KILN_TRITON_PYTHONPATH AND EXISTS "${PROJECT_SOURCE_DIR}/.deps/triton36/triton")
  set(KILN_TRITON_PYTHONPATH "${PROJECT_SOURCE_DIR}/.deps/triton36")
endif()
set(_kiln_triton_env "")
if(KILN_TRITON_PYTHONPATH)
  set(_kiln_triton_env "PYTHONPATH=${KILN_TRITON_PYTHONPATH}")
endif()
set(_kiln_aot ${PROJECT_SOURCE_DIR}/tools/triton_aot.py)

execute_process(COMMAND ${CMAKE_COMMAND} -E env ${_kiln_triton_env}
                        ${Python3_EXECUTABLE} ${_kiln_aot} --check-version
                RESULT_VARIABLE _kiln_triton_ok OUTPUT_VARIABLE _kiln_triton_version
                ERROR_VARIABLE _kiln_triton_err OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_STRIP_TRAILING_WHITESPACE)
if(NOT _kiln_triton_ok EQUAL 0)
  if(KILN_TRITON STREQUAL "ON")
    message(FATAL_ERROR "KILN_TRITON=ON: ${_kiln_triton_err}")
  endif()
  message(WARNING "kiln: Triton kernels OFF: ${_kiln_triton_err}")
  return()
endif()

find_program(KILN_PTXAS ptxas HINTS ${CUDAToolkit_BIN_DIR} NO_DEFAULT_PATH)
if(NOT KILN_PTXAS)
  find_program(KILN_PTXAS ptxas)
endif()
if(NOT KILN_PTXAS)
  message(FATAL_ERROR "kiln: the CUDA toolkit's ptxas was not found (needed to assemble the Triton kernels); set KILN_PTXAS or KILN_TRITON=OFF")
endif()

file(GLOB KILN_TRITON_KERNEL_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/triton/*.py)
cmake_host_system_information(RESULT _kiln_cores QUERY NUMBER_OF_LOGICAL_CORES)
set(KILN_TRITON_GEN_DIR ${CMAKE_BINARY_DIR}/generated)
set(KILN_TRITON_OUTPUTS ${KILN_TRITON_GEN_DIR}/kiln_triton_kernels.c
                        ${KILN_TRITON_GEN_DIR}/kiln_triton_kernels.h
                        ${KILN_TRITON_GEN_DIR}/manifest.json)
string(REPLACE ";" "," _kiln_archs "${KILN_CUDA_ARCHS}")
add_custom_command(
  OUTPUT ${KILN_TRITON_OUTPUTS}
  COMMAND ${CMAKE_COMMAND} -E env ${_kiln_triton_env}
          ${Python3_EXECUTABLE} ${_kiln_aot} --out ${KILN_TRITON_GEN_DIR} --archs ${_kiln_archs}
          --ptxas ${KILN_PTXAS} --jobs ${_kiln_cores} ${KILN_TRITON_KERNEL_FILES}
  DEPENDS ${_kiln_aot} ${KILN_TRITON_KERNEL_FILES}
  COMMENT "Compiling Triton kernels ahead of time for sm_${_kiln_archs} (Triton ${_kiln_triton_version})"
  VERBATIM)
add_custom_target(kiln_triton_kernels DEPENDS ${KILN_TRITON_OUTPUTS})
add_dependencies(kiln_objects kiln_triton_kernels)
target_sources(kiln_objects PRIVATE ${KILN_TRITON_GEN_DIR}/kiln_triton_kernels.c)
# Directory-wide, so the library and the tests (which include kiln_triton_kernels.h) see both.
add_compile_definitions(KILN_HAVE_TRITON_KERNELS=1)
include_directories(${KILN_TRITON_GEN_DIR})
set(KILN_HAVE_TRITON_KERNELS ON)
message(STATUS "kiln: Triton ${_kiln_triton_version} kernels for sm_${_kiln_archs} (ptxas ${KILN_PTXAS})")
