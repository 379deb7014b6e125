#include "image/change.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/strings.hpp"

namespace imgbuild::image {

namespace {

// Splits on unquoted whitespace; double and single quotes group and are
// removed, backslash escapes the next character outside single quotes.
Result<std::vector<std::string>> split_words(std::string_view s, std::string_view instruction) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < s.size()) {
        cur += s[++i];
      } else {
        cur += c;
      }
      continue;
    }
    if (c == ' ' || c == '\t') {
      if (in_word) {
        words.push_back(cur);
        cur.clear();
        in_word = false;
      }
      continue;
    }
    in_word = true;
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '\\' && i + 1 < s.size()) {
      cur += s[++i];
    } else {
      cur += c;
    }
  }
  if (quote != 0) {
    return fail(Errc::invalid_argument, fmt::format("--change {}: unterminated quote", str::go_quote(instruction)));
  }
  if (in_word) {
    words.push_back(cur);
  }
  return words;
}

// JSON form (["a","b"]) when the text parses as an array of strings.
std::optional<std::vector<std::string>> json_form(std::string_view s) {
  std::string_view t = str::trim(s);
  if (t.empty() || t.front() != '[') {
    return std::nullopt;
  }
  try {
    nlohmann::json j = nlohmann::json::parse(t);
    if (!j.is_array()) {
      return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& e : j) {
      if (!e.is_string()) {
        return std::nullopt;
      }
      out.push_back(e.get<std::string>());
    }
    return out;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

std::vector<std::string> command_form(std::string_view args) {
  if (auto j = json_form(args)) {
    return *j;
  }
  return {"/bin/sh", "-c", std::string(str::trim(args))};
}

// KEY=VALUE pairs, or the legacy "KEY VALUE" form.
Result<std::vector<std::pair<std::string, std::string>>> key_values(std::string_view args,
                                                                     std::string_view instruction) {
  std::vector<std::pair<std::string, std::string>> out;
  TRY(std::vector<std::string> words, split_words(args, instruction));
  if (words.empty()) {
    return fail(Errc::invalid_argument, fmt::format("--change {}: missing KEY=VALUE", str::go_quote(instruction)));
  }
  if (words[0].find('=') == std::string::npos) {
    std::string_view t = str::trim(args);
    size_t sp = t.find_first_of(" \t");
    if (sp == std::string_view::npos) {
      return fail(Errc::invalid_argument,
                  fmt::format("--change {}: {} needs a value", str::go_quote(instruction), words[0]));
    }
    out.emplace_back(std::string(t.substr(0, sp)), std::string(str::trim(t.substr(sp))));
    return out;
  }
  for (const auto& w : words) {
    size_t eq = w.find('=');
    if (eq == std::string::npos || eq == 0) {
      return fail(Errc::invalid_argument,
                  fmt::format("--change {}: {} is not KEY=VALUE", str::go_quote(instruction), str::go_quote(w)));
    }
    out.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  return out;
}

}  // namespace

Result<void> apply_change(ContainerConfig& config, std::string_view instruction) {
  std::string_view text = str::trim(instruction);
  size_t sp = text.find_first_of(" \t");
  std::string keyword = str::to_upper(text.substr(0, sp));
  std::string_view args = sp == std::string_view::npos ? std::string_view() : str::trim(text.substr(sp));
  auto need_args = [&]() -> Result<void> {
    if (args.empty()) {
      return fail(Errc::invalid_argument,
                  fmt::format("--change {}: {} needs an argument", str::go_quote(instruction), keyword));
    }
    return ok();
  };
  if (keyword == "CMD") {
    TRY_VOID(need_args());
    config.cmd = command_form(args);
  } else if (keyword == "ENTRYPOINT") {
    TRY_VOID(need_args());
    config.entrypoint = command_form(args);
  } else if (keyword == "ENV") {
    TRY(auto kvs, key_values(args, instruction));
    for (const auto& [k, v] : kvs) {
      std::string prefix = k + "=";
      std::erase_if(config.env, [&](const std::string& e) { return e.rfind(prefix, 0) == 0; });
      config.env.push_back(prefix + v);
    }
  } else if (keyword == "LABEL") {
    TRY(auto kvs, key_values(args, instruction));
    for (const auto& [k, v] : kvs) {
      config.labels[k] = v;
    }
  } else if (keyword == "EXPOSE") {
    TRY_VOID(need_args());
    TRY(std::vector<std::string> words, split_words(args, instruction));
    for (const auto& w : words) {
      std::string port = w.find('/') == std::string::npos ? w + "/tcp" : str::to_lower(w);
      std::string number = port.substr(0, port.find('/'));
      if (number.empty() || number.find_first_not_of("0123456789-") != std::string::npos) {
        return fail(Errc::invalid_argument,
                    fmt::format("--change {}: invalid port {}", str::go_quote(instruction), str::go_quote(w)));
      }
      config.exposed_ports.insert(port);
    }
  } else if (keyword == "USER") {
    TRY_VOID(need_args());
    config.user = std::string(args);
  } else if (keyword == "VOLUME") {
    TRY_VOID(need_args());
    std::vector<std::string> vols;
    if (auto j = json_form(args)) {
      vols = *j;
    } else {
      TRY(vols, split_words(args, instruction));
    }
    for (const auto& v : vols) {
      config.volumes.insert(v);
    }
  } else if (keyword == "WORKDIR") {
    TRY_VOID(need_args());
    std::string dir(args);
    if (dir.front() != '/') {
      dir = (config.working_dir.empty() ? std::string("/") : config.working_dir + "/") + dir;
    }
    config.working_dir = dir;
  } else if (keyword == "STOPSIGNAL") {
    TRY_VOID(need_args());
    config.stop_signal = std::string(args);
  } else if (keyword == "ONBUILD") {
    TRY_VOID(need_args());
    config.on_build.emplace_back(args);
  } else {
    return fail(Errc::invalid_argument,
                fmt::format("--change {}: {} is not supported (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, "
                            "STOPSIGNAL, USER, VOLUME, WORKDIR)",
                            str::go_quote(instruction), keyword.empty() ? std::string("an empty instruction") : keyword));
  }
  return ok();
}

}  // namespace imgbuild::image
