#include <catch2/catch.hpp>

#include "builder/step_label.hpp"

using imgbuild::builder::step_label;

TEST_CASE("step label: stage name, index padded to the total's width", "[builder]") {
  CHECK(step_label("base", 2, 3) == "[base 2/3] ");
  CHECK(step_label("base", 1, 11) == "[base  1/11] ");
  CHECK(step_label("base", 10, 11) == "[base 10/11] ");
  CHECK(step_label("stage-1", 1, 1) == "[stage-1 1/1] ");
  CHECK(step_label("", 2, 2) == "[2/2] ");
  CHECK(step_label("", 3, 100) == "[  3/100] ");
}
