# -DIMGBUILD_SANITIZE=address,undefined turns sanitizers on for every target.
if(IMGBUILD_SANITIZE)
  add_compile_options(-fsanitize=${IMGBUILD_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${IMGBUILD_SANITIZE})
endif()
