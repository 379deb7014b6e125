#include "cache/key.hpp"

#include <charconv>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::cache {

namespace {

// Writes v big-endian into out[0, bytes).
void put_be(char* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out[i] = static_cast<char>((v >> (8 * (bytes - 1 - i))) & 0xff);
  }
}

}  // namespace

KeyBuilder::KeyBuilder(Transcript transcript) : m_keep(transcript == Transcript::kept) {
  m_hash.update(k_key_version);
  if (m_keep) {
    m_transcript = fmt::format("version: {}\n", k_key_version);
  }
}

void KeyBuilder::field(char type, std::string_view name, std::string_view value) {
  // The record head: delimiter, type, name length, name, value length.
  char fixed[14];
  fixed[0] = '\x1e';
  fixed[1] = type;
  put_be(fixed + 2, name.size(), 4);
  m_hash.update(fixed, 6);
  m_hash.update(name);
  put_be(fixed + 6, value.size(), 8);
  m_hash.update(fixed + 6, 8);
  m_hash.update(value);
}

KeyBuilder& KeyBuilder::str(std::string_view name, std::string_view value) {
  field('s', name, value);
  if (m_keep) {
    m_transcript += fmt::format("{}: {}\n", name, str::escape_line(value));
  }
  return *this;
}

KeyBuilder& KeyBuilder::integer(std::string_view name, int64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  (void)ec;  // 24 bytes hold any int64
  std::string_view v(buf, static_cast<size_t>(end - buf));
  field('i', name, v);
  if (m_keep) {
    m_transcript += fmt::format("{}: {}\n", name, v);
  }
  return *this;
}

KeyBuilder& KeyBuilder::boolean(std::string_view name, bool value) {
  field('b', name, value ? "1" : "0");
  if (m_keep) {
    m_transcript += fmt::format("{}: {}\n", name, value ? "true" : "false");
  }
  return *this;
}

KeyBuilder& KeyBuilder::digest(std::string_view name, std::string_view value) {
  field('d', name, value);
  if (m_keep) {
    m_transcript += fmt::format("{}: {}\n", name, value);
  }
  return *this;
}

KeyBuilder& KeyBuilder::key(std::string_view name, std::string_view value) {
  field('k', name, value);
  if (m_keep) {
    m_transcript += fmt::format("{}: {}\n", name, value);
  }
  return *this;
}

KeyBuilder& KeyBuilder::list(std::string_view name, const std::vector<std::string>& items) {
  field('l', name, std::to_string(items.size()));
  if (m_keep) {
    m_transcript += fmt::format("{}: [{} items]\n", name, items.size());
  }
  for (const auto& item : items) {
    field('s', "", item);
    if (m_keep) {
      m_transcript += fmt::format("  - {}\n", str::escape_line(item));
    }
  }
  return *this;
}

KeyBuilder& KeyBuilder::map(std::string_view name, const std::map<std::string, std::string>& entries) {
  field('m', name, std::to_string(entries.size()));
  if (m_keep) {
    m_transcript += fmt::format("{}: [{} entries]\n", name, entries.size());
  }
  for (const auto& [k, v] : entries) {
    field('s', "", k);
    field('s', "", v);
    if (m_keep) {
      m_transcript += fmt::format("  {}={}\n", str::escape_line(k), str::escape_line(v));
    }
  }
  return *this;
}

std::string KeyBuilder::finish() {
  m_finished = true;
  std::string key = m_hash.finish().str();
  return key;
}

}  // namespace imgbuild::cache
