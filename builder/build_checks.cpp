#include "builder/build_checks.hpp"

#include <cctype>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "parser/lower.hpp"
#include "parser/syntax/parse.hpp"

namespace imgbuild::builder {

std::optional<image::ContainerConfig> stored_image_config(image::ImageStore& store, const std::string& ref) {
  auto rec = store.resolve(ref);
  if (!rec) {
    return std::nullopt;
  }
  auto img = store.load(*rec);
  if (!img) {
    return std::nullopt;
  }
  return img->config.config;
}

std::string check_rule_url(const std::string& rule) {
  // CamelCase to kebab-case; an acronym stays one word ("JSONArgs" → "json-args").
  std::string kebab;
  for (size_t i = 0; i < rule.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(rule[i]);
    if (std::isupper(c) != 0 && i > 0) {
      unsigned char prev = static_cast<unsigned char>(rule[i - 1]);
      bool next_lower = i + 1 < rule.size() && std::islower(static_cast<unsigned char>(rule[i + 1])) != 0;
      if (std::islower(prev) != 0 || std::isdigit(prev) != 0 || (std::isupper(prev) != 0 && next_lower)) {
        kebab += '-';
      }
    }
    kebab += static_cast<char>(std::tolower(c));
  }
  return "https://docs.docker.com/go/dockerfile/rule/" + kebab + "/";
}

Result<BuildCheckResult> run_build_checks(const BuildCheckInput& input) {
  BuildCheckResult out;
  TRY(auto ast, parser::parse_dockerfile(*input.dockerfile_text, input.dockerfile_name));
  parser::LoweredFile lowered = parser::lower(ast, input.dockerfile_name);
  parser::CheckOptions opts;
  opts.build_args = input.build_args;
  opts.target = input.target;
  if (input.plan != nullptr) {
    opts.target_platform = input.plan->platform.str();
    opts.build_platform = input.plan->build_platform.str();
    for (const auto& s : input.plan->stages) {
      opts.stages.push_back(s.index);
    }
  }
  if (input.store != nullptr) {
    image::ImageStore* store = input.store;
    const builder::Plan* plan = input.plan;
    opts.base_image = [store, plan](const std::string& name) -> std::optional<parser::BaseImageConfig> {
      std::string ref = name;
      if (plan != nullptr) {
        auto ctx = plan->named_contexts.find(name);
        if (ctx != plan->named_contexts.end()) {
          if (!ctx->second.starts_with("docker-image://")) {
            return std::nullopt;
          }
          ref = ctx->second.substr(std::string_view("docker-image://").size());
        }
      }
      auto config = stored_image_config(*store, ref);
      if (!config) {
        return std::nullopt;
      }
      parser::BaseImageConfig cfg;
      cfg.env = config->env;
      cfg.shell = config->shell;
      return cfg;
    };
  }
  if (input.context != nullptr && !input.context->ignore().empty()) {
    const builder::BuildContext* context = input.context;
    opts.dockerignore_excludes = [context](const std::string& path) { return context->ignore().excluded(path); };
  }
  TRY(auto report, parser::run_checks(ast, lowered, opts));
  out.warnings = report.warnings();
  out.error = report.error_message();
  return out;
}

std::string format_check_summary(const std::vector<parser::CheckWarning>& warnings) {
  if (warnings.empty()) {
    return "";
  }
  std::string out = fmt::format("\n {} warning{} found (use --check to expand):\n", warnings.size(),
                                warnings.size() == 1 ? "" : "s");
  for (const auto& w : warnings) {
    out += fmt::format(" - {}: {}", w.rule, w.message);
    if (w.line > 0) {
      out += fmt::format(" (line {})", w.line);
    }
    out += "\n";
  }
  return out;
}

std::string format_check_events(const std::vector<parser::CheckWarning>& warnings) {
  std::string out;
  for (const auto& w : warnings) {
    nlohmann::json j = {{"event", "warning"},
                        {"rule", w.rule},
                        {"message", w.message},
                        {"line", w.line},
                        {"url", check_rule_url(w.rule)}};
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  return out;
}

std::string format_check_details(const std::vector<parser::CheckWarning>& warnings, const std::string& file,
                                 const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& w : warnings) {
    out += fmt::format("WARNING: {} - {}\n{}\n", w.rule, check_rule_url(w.rule), w.message);
    if (w.line <= 0 || w.line > static_cast<int>(lines.size())) {
      out += "\n";
      continue;
    }
    int last = std::max(w.line, std::min(w.end_line, static_cast<int>(lines.size())));
    out += fmt::format("{}:{}\n--------------------\n", file, w.line == last ? fmt::format("{}", w.line)
                                                                              : fmt::format("{}-{}", w.line, last));
    int from = std::max(1, w.line - 2);
    int to = std::min(static_cast<int>(lines.size()), last + 2);
    for (int i = from; i <= to; ++i) {
      bool marked = i >= w.line && i <= last;
      out += fmt::format(" {:>3} | {} {}\n", i, marked ? ">>>" : "   ", lines[static_cast<size_t>(i - 1)]);
    }
    out += "--------------------\n\n";
  }
  return out;
}

std::string format_check_complete(size_t count) {
  if (count == 0) {
    return "Check complete, no warnings found.\n";
  }
  return fmt::format("Check complete, {} warning{} been found!\n", count, count == 1 ? " has" : "s have");
}

}  // namespace imgbuild::builder
