#pragma once
// A build's -o outputs (buildx semantics): the specs parsed, the image
// names and pushes that type=image/registry outputs ask for, and the
// writers of the other types: docker and oci archives (or an OCI layout
// directory with tar=false), the root filesystem as a directory (local) or
// as one tar stream (tar; "-" is stdout).

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "builder/build_push.hpp"
#include "builder/executor.hpp"
#include "image/layer_compression.hpp"
#include "image/reference.hpp"
#include "image/store.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// One -o value parsed: its type (docker, oci, local, tar, image) and
/// its other attributes by lower-case key.
struct Output {
  std::string type;
  std::map<std::string, std::string> attrs;
};

/// Parses a -o value, short forms too ("-": a tar on stdout; "x.tar": a
/// docker archive; anything else: a local directory). type=registry is
/// type=image,push=true. Errors (Errc::invalid_argument): an unknown type, a
/// missing dest=.
Result<Output> parse_output(const std::string& spec);

/// True when the attribute `key` is set to true ("true", "1" or empty).
bool attr_true(const Output& o, const std::string& key);

/// Whether output `o` is one file (or stream) written through util/output
/// rather than a directory.
bool writes_file(const Output& o);

/// The layer compression an output asks for (compression=,
/// compression-level=, force-compression=); gzip unless it says otherwise
/// when `by_default`, else none unless it names one. Errors
/// (Errc::invalid_argument): "invalid output TYPE: …".
Result<std::optional<image::LayerCompression>> output_compression(const Output& o, bool by_default);

/// What the type=image outputs ask for: the names they give the image
/// (name=, else the -t names) and, with push=true, the pushes.
struct ImageOutputs {
  std::vector<image::Reference> names;
  std::vector<PushTarget> pushes;
};

/// The names and pushes of the type=image outputs among `outputs`; `tags`
/// are the -t names. Errors (Errc::invalid_argument): a bad name=, a push
/// without a name, a bad compression.
Result<ImageOutputs> image_outputs(const std::vector<Output>& outputs, const std::vector<image::Reference>& tags);

/// Writes every output that is not type=image, in order: docker and oci
/// archives of `built` (named by name= or `tags`), its root filesystem as a
/// directory (local) or as a tar (tar). The compressions must have been
/// checked (output_compression) first. A multi-platform build passes the
/// image index it committed (image/index.hpp) as `index`: the archives are
/// then of the index (every platform), and local and tar write a directory
/// per platform (builder/platform_outputs.hpp); type=docker with several
/// platforms must have been refused before (check_docker_output).
Result<void> write_outputs(image::ImageStore& store, const BuiltImage& built, const std::vector<Output>& outputs,
                           const std::vector<image::Reference>& tags, const image::ImageRecord* index = nullptr);

}  // namespace imgbuild::builder
