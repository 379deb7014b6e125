#include "parser/instructions.hpp"

namespace imgbuild::parser {

namespace {

template <class... Fs>
struct Overload : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overload(Fs...) -> Overload<Fs...>;

}  // namespace

const char* Instruction::name() const {
  return std::visit(
      Overload{
          [](const FromInstruction&) { return "FROM"; },
          [](const RunInstruction&) { return "RUN"; },
          [](const CmdInstruction&) { return "CMD"; },
          [](const EntrypointInstruction&) { return "ENTRYPOINT"; },
          [](const EnvInstruction&) { return "ENV"; },
          [](const LabelInstruction&) { return "LABEL"; },
          [](const ExposeInstruction&) { return "EXPOSE"; },
          [](const VolumeInstruction&) { return "VOLUME"; },
          [](const UserInstruction&) { return "USER"; },
          [](const WorkdirInstruction&) { return "WORKDIR"; },
          [](const ArgInstruction&) { return "ARG"; },
          [](const OnbuildInstruction&) { return "ONBUILD"; },
          [](const StopsignalInstruction&) { return "STOPSIGNAL"; },
          [](const HealthcheckInstruction&) { return "HEALTHCHECK"; },
          [](const ShellInstruction&) { return "SHELL"; },
          [](const MaintainerInstruction&) { return "MAINTAINER"; },
          [](const CopyInstruction&) { return "COPY"; },
          [](const AddInstruction&) { return "ADD"; },
      },
      node);
}

std::string heredoc_body(const Heredoc& heredoc) {
  if (!heredoc.chomp) {
    return heredoc.content;
  }
  std::string out;
  out.reserve(heredoc.content.size());
  bool line_start = true;
  for (char c : heredoc.content) {
    if (line_start && c == '\t') {
      continue;
    }
    out += c;
    line_start = c == '\n';
  }
  return out;
}

const char* to_string(MountType type) {
  switch (type) {
    case MountType::bind: return "bind";
    case MountType::cache: return "cache";
    case MountType::tmpfs: return "tmpfs";
    case MountType::secret: return "secret";
    case MountType::ssh: return "ssh";
  }
  return "bind";
}

const char* to_string(CacheSharing sharing) {
  switch (sharing) {
    case CacheSharing::shared: return "shared";
    case CacheSharing::private_: return "private";
    case CacheSharing::locked: return "locked";
  }
  return "shared";
}

}  // namespace imgbuild::parser
