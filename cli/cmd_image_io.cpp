// import, save and load: images in and out of the store as archives.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/image_common.hpp"
#include "image/archive.hpp"
#include "util/fd.hpp"
#include "util/output.hpp"

namespace imgbuild::cli {

namespace {

UniqueFd open_input(const std::string& path) {
  if (path.empty() || path == "-") {
    return UniqueFd(::dup(STDIN_FILENO));
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    throw CommandError{fmt::format("open {}: {}", path, std::strerror(errno)), 1};
  }
  return fd;
}

void add_import(CLI::App* sub, Context& ctx) {
  struct Opt {
    std::string source;
    std::string ref;
    std::vector<std::string> changes;
    std::string message;
    std::string platform;
  };
  auto opt = std::make_shared<Opt>();
  sub->add_option("file", opt->source, "Rootfs tar (plain, gzip, zstd, bzip2 or xz), or - for stdin")->required();
  sub->add_option("reference", opt->ref, "REPOSITORY[:TAG] for the new image");
  sub->add_option("-c,--change", opt->changes, "Apply a Dockerfile instruction to the image config")
      ->allow_extra_args(false);
  sub->add_option("-m,--message", opt->message, "Commit message (history comment)");
  sub->add_option("--platform", opt->platform, "os/arch[/variant] of the image (default: the host's)");
  sub->callback([&ctx, opt]() {
    image::ImportOptions options;
    if (!opt->ref.empty()) {
      options.name = unwrap(image::parse_reference(opt->ref));
      if (!options.name->digest.empty()) {
        throw CommandError{fmt::format("cannot import to a digest reference: {}", opt->ref), 1};
      }
    }
    options.changes = opt->changes;
    options.message = opt->message;
    options.source = opt->source;
    options.platform = opt->platform;
    auto store = open_store(ctx);
    UniqueFd in = open_input(opt->source);
    std::vector<std::string> notes;
    options.notes = &notes;
    std::string id = unwrap(image::import_rootfs(*store, in.get(), options));
    for (const auto& n : notes) {
      std::fprintf(stderr, "note: %s\n", n.c_str());
    }
    std::fputs((id + "\n").c_str(), stdout);
  });
}

void add_save(CLI::App* sub, Context& ctx) {
  struct Opt {
    std::vector<std::string> refs;
    std::string output;
    std::string format = "docker";
  };
  auto opt = std::make_shared<Opt>();
  sub->add_option("image", opt->refs, "Images to save")->required();
  sub->add_option("-o,--output", opt->output, "Write to a file (or, with --format oci-dir, a directory)");
  sub->add_option("--format", opt->format, "docker (a tar that is also an OCI layout) or oci-dir")
      ->check(CLI::IsMember({"docker", "oci-archive", "oci-dir"}));
  sub->callback([&ctx, opt]() {
    const bool to_stdout = opt->format != "oci-dir" && (opt->output.empty() || opt->output == "-");
    if (to_stdout && ::isatty(STDOUT_FILENO) != 0) {
      throw CommandError{"cowardly refusing to save to a terminal. Use the -o flag or redirect", 1};
    }
    if (opt->format == "oci-dir" && opt->output.empty()) {
      throw CommandError{"--format oci-dir needs -o DIRECTORY", 2};
    }
    // A bad destination fails before any image is read.
    if (opt->format != "oci-dir") {
      unwrap(output::check_destination(to_stdout ? "-" : opt->output));
    }
    auto store = open_store(ctx);
    std::vector<image::SaveItem> items;
    for (const auto& arg : opt->refs) {
      image::SaveItem item;
      item.record = unwrap(store->resolve_target(arg));  // a multi-platform image: all its platforms
      auto ref = image::parse_reference(arg);
      if (ref && ref->digest.empty()) {
        auto names = unwrap(store->db().names_of(item.record.manifest_digest));
        for (const auto& n : names) {
          if (n == ref->str()) {
            item.name = *ref;
          }
        }
      }
      items.push_back(std::move(item));
    }
    if (opt->format == "oci-dir") {
      unwrap(image::save_oci_dir(*store, items, opt->output));
      return;
    }
    // A regular file is replaced only once the whole archive is written; a
    // FIFO, a character device or standard output is written as it streams.
    output::File out = unwrap(output::File::open(to_stdout ? "-" : opt->output));
    unwrap(image::save_archive(*store, items, out.fd()));
    unwrap(out.commit());
  });
}

void add_load(CLI::App* sub, Context& ctx) {
  struct Opt {
    std::string input;
    bool quiet = false;
  };
  auto opt = std::make_shared<Opt>();
  sub->add_option("-i,--input", opt->input, "Read from a tar archive file instead of stdin");
  sub->add_flag("-q,--quiet", opt->quiet, "Suppress the load output");
  sub->callback([&ctx, opt]() {
    if (opt->input.empty() && ::isatty(STDIN_FILENO) != 0) {
      throw CommandError{"requested load from stdin, but stdin is empty", 1};
    }
    auto store = open_store(ctx);
    UniqueFd in = open_input(opt->input);
    std::string label = opt->input.empty() || opt->input == "-" ? "stdin" : opt->input;
    std::vector<std::string> lines = unwrap(image::load_archive(*store, in.get(), label));
    if (!opt->quiet) {
      for (const auto& l : lines) {
        std::fputs((l + "\n").c_str(), stdout);
      }
    }
  });
}

}  // namespace

void register_image_io_commands(CLI::App& app, CLI::App& image_cmd, Context& ctx) {
  add_import(app.add_subcommand("import", "Import a rootfs tarball as a one-layer image"), ctx);
  add_import(image_cmd.add_subcommand("import", "Import a rootfs tarball as a one-layer image"), ctx);
  add_save(app.add_subcommand("save", "Save images to a tar archive (docker-load and OCI layout)"), ctx);
  add_save(image_cmd.add_subcommand("save", "Save images to a tar archive (docker-load and OCI layout)"), ctx);
  add_load(app.add_subcommand("load", "Load images from a tar archive"), ctx);
  add_load(image_cmd.add_subcommand("load", "Load images from a tar archive"), ctx);
}

}  // namespace imgbuild::cli
