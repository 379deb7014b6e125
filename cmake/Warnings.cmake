# imgbuild_warnings: the warning set every target of ours uses.
add_library(imgbuild_warnings INTERFACE)
target_compile_options(imgbuild_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Wunused -Woverloaded-virtual -Wnull-dereference
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough)
if(IMGBUILD_WERROR)
  target_compile_options(imgbuild_warnings INTERFACE -Werror)
endif()
