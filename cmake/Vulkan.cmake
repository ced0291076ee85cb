# Decides QGEMMA_HAVE_VULKAN from the QGEMMA_VULKAN option and what is installed.
set(QGEMMA_HAVE_VULKAN OFF)
if(NOT QGEMMA_VULKAN STREQUAL "OFF")
  find_package(Vulkan QUIET)
  find_program(GLSLANG_VALIDATOR glslangValidator)
  if(Vulkan_FOUND AND GLSLANG_VALIDATOR)
    set(QGEMMA_HAVE_VULKAN ON)
  elseif(QGEMMA_VULKAN STREQUAL "ON")
    message(FATAL_ERROR "QGEMMA_VULKAN=ON but the Vulkan loader/headers or glslangValidator were not found "
                        "(Debian: libvulkan-dev glslang-tools)")
  endif()
endif()
message(STATUS "qgemma: Vulkan backend ${QGEMMA_HAVE_VULKAN}")
