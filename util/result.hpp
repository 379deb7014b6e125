#pragma once
// Result<T>: the value of a fallible low-level operation, or the Error that
// stopped it. Modelled on std::expected so that moving to it later is a
// change of this header alone.

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace imgbuild {

/// What kind of failure an Error reports; the CLI maps these to exit codes.
enum class Errc {
  invalid_argument,  ///< the user asked for something malformed
  syntax,            ///< a Dockerfile (or other text) does not parse
  not_found,         ///< a named object does not exist
  already_exists,    ///< creating something that is there
  io,                ///< the operating system refused
  corrupt,           ///< stored or supplied data fails verification
  unsupported,       ///< valid, but not something imgbuild does
  permission,        ///< not allowed (privileges, policy)
  network,           ///< a remote peer could not be reached or misbehaved
  limit,             ///< a size, depth or count bound was exceeded
  no_space,          ///< the filesystem is full (ENOSPC, EDQUOT)
  internal,          ///< a bug in imgbuild
};

/// Where in a file an Error points; line and column are 1-based, 0 = unknown.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
};

/// A failure with enough context for a user to act on it.
struct Error {
  Errc code = Errc::internal;
  std::string message;
  std::optional<SourceLocation> location;
  /// Outer context, innermost first ("while loading image busybox").
  std::vector<std::string> context;

  Error() = default;
  Error(Errc c, std::string msg) : code(c), message(std::move(msg)) {}
  Error(Errc c, std::string msg, SourceLocation loc)
      : code(c), message(std::move(msg)), location(std::move(loc)) {}

  /// Adds a line of context and returns *this for chaining.
  Error& with_context(std::string what) {
    context.push_back(std::move(what));
    return *this;
  }

  /// One-line rendering: "file:line:col: message (context; context)".
  std::string to_string() const;
};

/// Tag type to construct a failed Result: `return fail(Errc::io, "…")`.
struct Unexpected {
  Error error;
};

/// Creates a failed Result from an Error.
inline Unexpected fail(Error e) { return Unexpected{std::move(e)}; }
/// Creates a failed Result from a code and message.
inline Unexpected fail(Errc c, std::string msg) { return Unexpected{Error(c, std::move(msg))}; }

/// A value of T or an Error.
template <class T>
class [[nodiscard]] Result {
public:
  Result(T value) : m_state(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Unexpected u) : m_state(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT
  Result(Error e) : m_state(std::in_place_index<1>, std::move(e)) {}  // NOLINT

  bool has_value() const { return m_state.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { assert(has_value()); return std::get<0>(m_state); }
  const T& value() const& { assert(has_value()); return std::get<0>(m_state); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(m_state)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  Error& error() & { assert(!has_value()); return std::get<1>(m_state); }
  const Error& error() const& { assert(!has_value()); return std::get<1>(m_state); }
  Error&& error() && { assert(!has_value()); return std::get<1>(std::move(m_state)); }

private:
  std::variant<T, Error> m_state;
};

/// The failure of a system call that set `err` while `doing` something to
/// `path`: ENOSPC and EDQUOT give Errc::no_space, "no space left on device
/// while <doing> <path>" (the CLI adds what prune could free), anything
/// else Errc::io, "<doing> <path>: <strerror>".
Unexpected errno_fail(int err, std::string_view doing, std::string_view path);

/// Result of an operation with no value.
template <>
class [[nodiscard]] Result<void> {
public:
  Result() = default;
  Result(Unexpected u) : m_error(std::move(u.error)) {}  // NOLINT
  Result(Error e) : m_error(std::move(e)) {}  // NOLINT

  bool has_value() const { return !m_error.has_value(); }
  explicit operator bool() const { return has_value(); }
  void value() const { assert(has_value()); }

  Error& error() & { assert(!has_value()); return *m_error; }
  const Error& error() const& { assert(!has_value()); return *m_error; }
  Error&& error() && { assert(!has_value()); return std::move(*m_error); }

private:
  std::optional<Error> m_error;
};

/// Success value for Result<void>.
inline Result<void> ok() { return {}; }

}  // namespace imgbuild

/// Evaluates a Result expression; on failure returns its Error from the
/// enclosing function. Usage: TRY(auto x, read_file(p));  TRY_VOID(write(p)).
#define IMGBUILD_CONCAT_INNER(a, b) a##b
#define IMGBUILD_CONCAT(a, b) IMGBUILD_CONCAT_INNER(a, b)
#define TRY_IMPL(tmp, decl, expr)              \
  auto tmp = (expr);                           \
  if (!tmp) {                                  \
    return ::imgbuild::fail(std::move(tmp).error()); \
  }                                            \
  decl = std::move(tmp).value()
#define TRY(decl, expr) TRY_IMPL(IMGBUILD_CONCAT(try_result_, __LINE__), decl, expr)
#define TRY_VOID(expr)                                          \
  do {                                                          \
    auto try_void_result = (expr);                              \
    if (!try_void_result) {                                     \
      return ::imgbuild::fail(std::move(try_void_result).error()); \
    }                                                           \
  } while (0)
