#pragma once
// Kill points for fault-injection tests.
//
// IMGBUILD_FAULT_KILL_AT=NAME:COUNT makes the COUNT-th passage (1-based,
// counted over every thread of the process) through the kill point NAME
// SIGKILL the process, as a crash or an OOM kill would at that moment;
// NAME "*" counts the passages through every point. COUNT 0 kills nothing
// and prints "imgbuild-fault: N passages" to stderr at exit, so a test can
// learn how many points a command passes and kill it at each. Points sit
// where a crash leaves the most behind: between writing data and recording
// it. Without the variable a point costs one relaxed atomic load.

#include <string_view>

namespace imgbuild::fault {

/// A kill point named `name` (see the file comment).
void point(std::string_view name);

}  // namespace imgbuild::fault
