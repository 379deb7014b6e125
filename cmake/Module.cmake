# imgbuild_module(NAME [FOLDER dir] SOURCES a.cpp … DEPENDS imgbuild_util …
#                 [PRIVATE_DEPENDS …])
#
# Declares the static library imgbuild_NAME from sources in FOLDER (default
# NAME). Includes are rooted at the repository ("parser/ast.hpp"), but the
# repository root itself is never on the include path: each folder gets its own
# include root under the build tree holding a single link to that folder, and
# a target sees only its own root and those of the libraries it links. An
# include of a module that is not in DEPENDS therefore fails to compile.
function(imgbuild_module_includes folder out_var)
  set(inc ${CMAKE_BINARY_DIR}/include/${folder})
  if(NOT EXISTS ${inc}/${folder})
    file(MAKE_DIRECTORY ${inc})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${folder} ${inc}/${folder} SYMBOLIC)
  endif()
  set(${out_var} ${inc} PARENT_SCOPE)
endfunction()

function(imgbuild_module name)
  cmake_parse_arguments(ARG "" "FOLDER" "SOURCES;DEPENDS;PRIVATE_DEPENDS" ${ARGN})
  if(NOT ARG_FOLDER)
    set(ARG_FOLDER ${name})
  endif()
  imgbuild_module_includes(${ARG_FOLDER} inc)
  if(NOT ARG_SOURCES)
    # A folder whose code has not arrived yet: headers only.
    add_library(imgbuild_${name} INTERFACE)
    target_include_directories(imgbuild_${name} INTERFACE ${inc})
    target_link_libraries(imgbuild_${name} INTERFACE ${ARG_DEPENDS})
    return()
  endif()
  add_library(imgbuild_${name} STATIC ${ARG_SOURCES})
  target_include_directories(imgbuild_${name} PUBLIC ${inc})
  target_link_libraries(imgbuild_${name}
    PUBLIC ${ARG_DEPENDS}
    PRIVATE imgbuild_warnings ${ARG_PRIVATE_DEPENDS})
endfunction()
