#include "cache/key.hpp"

#include <fmt/format.h>

namespace imgbuild::cache {

namespace {

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

// Transcript values stay on one line: newlines and backslashes are escaped.
std::string one_line(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

KeyBuilder::KeyBuilder() {
  m_hash.update(k_key_version);
  m_transcript = fmt::format("version: {}\n", k_key_version);
}

void KeyBuilder::field(char type, std::string_view name, std::string_view value) {
  std::string head;
  head.push_back('\x1e');
  head.push_back(type);
  put_be(head, name.size(), 4);
  head.append(name);
  put_be(head, value.size(), 8);
  m_hash.update(head);
  m_hash.update(value);
}

KeyBuilder& KeyBuilder::str(std::string_view name, std::string_view value) {
  field('s', name, value);
  m_transcript += fmt::format("{}: {}\n", name, one_line(value));
  return *this;
}

KeyBuilder& KeyBuilder::integer(std::string_view name, int64_t value) {
  std::string v = std::to_string(value);
  field('i', name, v);
  m_transcript += fmt::format("{}: {}\n", name, v);
  return *this;
}

KeyBuilder& KeyBuilder::boolean(std::string_view name, bool value) {
  field('b', name, value ? "1" : "0");
  m_transcript += fmt::format("{}: {}\n", name, value ? "true" : "false");
  return *this;
}

KeyBuilder& KeyBuilder::digest(std::string_view name, std::string_view value) {
  field('d', name, value);
  m_transcript += fmt::format("{}: {}\n", name, value);
  return *this;
}

KeyBuilder& KeyBuilder::key(std::string_view name, std::string_view value) {
  field('k', name, value);
  m_transcript += fmt::format("{}: {}\n", name, value);
  return *this;
}

KeyBuilder& KeyBuilder::list(std::string_view name, const std::vector<std::string>& items) {
  field('l', name, std::to_string(items.size()));
  m_transcript += fmt::format("{}: [{} items]\n", name, items.size());
  for (const auto& item : items) {
    field('s', "", item);
    m_transcript += fmt::format("  - {}\n", one_line(item));
  }
  return *this;
}

KeyBuilder& KeyBuilder::map(std::string_view name, const std::map<std::string, std::string>& entries) {
  field('m', name, std::to_string(entries.size()));
  m_transcript += fmt::format("{}: [{} entries]\n", name, entries.size());
  for (const auto& [k, v] : entries) {
    field('s', "", k);
    field('s', "", v);
    m_transcript += fmt::format("  {}={}\n", one_line(k), one_line(v));
  }
  return *this;
}

std::string KeyBuilder::finish() {
  m_finished = true;
  std::string key = m_hash.finish().str();
  return key;
}

}  // namespace imgbuild::cache
