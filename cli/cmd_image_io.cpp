// import, save and load.

#include "cli/image_common.hpp"

namespace imgbuild::cli {

void register_image_io_commands(CLI::App& app, CLI::App& image_cmd, Context& ctx) {
  (void)app;
  (void)image_cmd;
  (void)ctx;
}

}  // namespace imgbuild::cli
