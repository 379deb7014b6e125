#include "builder/step_label.hpp"

#include <fmt/format.h>

namespace imgbuild::builder {

std::string step_label(const std::string& stage_name, int index, int total) {
  int width = static_cast<int>(fmt::format("{}", total).size());
  std::string prefix = stage_name.empty() ? "" : stage_name + " ";
  return fmt::format("[{}{:>{}}/{}] ", prefix, index, width, total);
}

}  // namespace imgbuild::builder
