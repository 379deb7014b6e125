#pragma once
// Image references parsed and normalised as docker does:
//   busybox                → docker.io/library/busybox:latest
//   user/app:1.0           → docker.io/user/app:1.0
//   host:5000/a/b:tag      → host:5000/a/b:tag
//   name@sha256:<hex>      → docker.io/library/name@sha256:<hex>
// and shown back in docker's "familiar" form (docker.io/library/ dropped).

#include <string>
#include <string_view>

#include "util/result.hpp"

namespace imgbuild::image {

/// A normalised reference: domain, path, and a tag and/or a digest.
struct Reference {
  std::string domain;  ///< "docker.io", "localhost:5000", "[::1]:5000"
  std::string path;    ///< "library/busybox"
  std::string tag;     ///< empty when none
  std::string digest;  ///< "sha256:<hex>", empty when none

  /// domain/path: "docker.io/library/busybox".
  std::string name() const;
  /// name[:tag][@digest].
  std::string str() const;
  /// The name as docker prints it: "busybox", "user/app", "host:5000/a/b".
  std::string familiar_name() const;
  /// familiar_name()[:tag][@digest].
  std::string familiar() const;
  /// familiar_name():tag, or familiar_name()@digest when there is no tag.
  std::string familiar_tagged() const;
  /// Field-wise equality.
  bool operator==(const Reference&) const = default;
};

/// Whether a reference without tag or digest gets ":latest".
enum class DefaultTag { add, none };

/// Parses and normalises `text`. Errors (Errc::invalid_argument) quote the
/// input and say which rule it breaks.
Result<Reference> parse_reference(std::string_view text, DefaultTag default_tag = DefaultTag::add);

}  // namespace imgbuild::image
