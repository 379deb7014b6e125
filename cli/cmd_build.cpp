// `imgbuild build` (and `imgbuild -f Dockerfile .`): docker buildx build's
// flags, a plan, the executor, then the outputs (-o) and the id/metadata
// files.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "builder/build_cache_io.hpp"
#include "builder/build_checks.hpp"
#include "builder/build_metadata.hpp"
#include "builder/build_outputs.hpp"
#include "builder/build_push.hpp"
#include "builder/config.hpp"
#include "builder/context.hpp"
#include "builder/executor.hpp"
#include "builder/oci_layout.hpp"
#include "builder/plan.hpp"
#include "builder/platform_outputs.hpp"
#include "builder/pull_resolver.hpp"
#include "cli/image_common.hpp"
#include "cli/progress.hpp"
#include "cli/report.hpp"
#include "image/index.hpp"
#include "sandbox/sandbox.hpp"
#include "util/output.hpp"
#include "util/strings.hpp"

namespace imgbuild::cli {

namespace {

std::string summary_line(const nlohmann::json& s) {
  std::string steps = fmt::format("{} step{} run, {} cached, {} written", s["steps_run"].get<int>(),
                                  s["steps_run"].get<int>() == 1 ? "" : "s", s["steps_cached"].get<int>(),
                                  str::human_size(static_cast<uint64_t>(s["bytes_written"].get<int64_t>()), 3));
  if (s.value("failed", false)) {
    return fmt::format("summary: failed after {:.1f}s, {}", s["seconds"].get<double>(), steps);
  }
  return fmt::format("summary: {:.1f}s, {}, image {}", s["seconds"].get<double>(), steps,
                     str::human_size(static_cast<uint64_t>(s["image_size"].get<int64_t>()), 3));
}

// "The same Dockerfile and target" for explaining cache misses: the
// Dockerfile's absolute path (from stdin: the context's), and the target.
std::string build_identity(const std::string& file, const std::string& context, const std::string& target) {
  auto absolute = [](const std::string& p) {
    std::error_code ec;
    std::filesystem::path a = std::filesystem::weakly_canonical(std::filesystem::absolute(p, ec), ec);
    return ec ? p : a.string();
  };
  std::string df;
  if (file == "-") {
    df = "stdin, context " + (context == "-" ? std::string("stdin") : absolute(context));
  } else if (file.empty()) {
    df = context == "-" ? std::string("stdin") : absolute((std::filesystem::path(context) / "Dockerfile").string());
  } else {
    df = absolute(file);
  }
  return "dockerfile=" + df + "\ntarget=" + target;
}

namespace fsys = std::filesystem;

// The value of a Result, or a CommandError with exit status `status`
// carrying its message as is (the library's session errors are already
// worded for the user).
template <class T>
T unwrap_message(Result<T> r, int status) {
  if (!r) {
    throw CommandError{r.error().message, status};
  }
  return std::move(r).value();
}
inline void unwrap_message(Result<void> r, int status) {
  if (!r) {
    throw CommandError{r.error().message, status};
  }
}

// The session's lines for the user (pulls, pushes, cache imports and
// exports), on stderr, one whole line at a time from any thread.
builder::MessageSink stderr_lines() {
  auto mu = std::make_shared<std::mutex>();
  return [mu](const std::string& line) {
    std::lock_guard lock(*mu);
    std::fprintf(stderr, "%s\n", line.c_str());
  };
}

struct BuildFlags {
  std::string file;
  std::string context;
  std::vector<std::string> tags;
  std::vector<std::string> build_args;
  std::string target;
  std::vector<std::string> labels;
  bool no_cache = false;
  std::vector<std::string> no_cache_filter;
  std::string progress = "auto";
  bool quiet = false;
  std::vector<std::string> outputs;
  std::string platform;
  std::vector<std::string> build_contexts;
  std::vector<std::string> secrets;
  std::vector<std::string> ssh;
  std::string network = "default";
  std::vector<std::string> allow;
  int jobs = 0;
  std::string iidfile;
  std::string metadata_file;
  std::string report;
  bool pull = false;
  bool push = false;
  std::string snapshotter = "auto";
  std::string isolation = "auto";
  bool check = false;
  std::vector<std::string> cache_from;
  std::vector<std::string> cache_to;
};

// BuildKit's failure excerpt: the lines around the failing one, ">>>" marks it.
void print_excerpt(const std::string& file, const std::vector<std::string>& lines, int line) {
  if (line <= 0 || line > static_cast<int>(lines.size())) {
    return;
  }
  std::fprintf(stderr, "%s:%d\n--------------------\n", file.c_str(), line);
  int from = std::max(1, line - 4);
  int to = std::min(static_cast<int>(lines.size()), line + 2);
  for (int i = from; i <= to; ++i) {
    std::fprintf(stderr, "%4d | %s %s\n", i, i == line ? ">>>" : "   ", lines[static_cast<size_t>(i - 1)].c_str());
  }
  std::fprintf(stderr, "--------------------\n");
}

// One line when RUN steps will not get the namespace sandbox here (root in
// a container without CAP_SYS_ADMIN: chroot isolation), saying what they
// give up. Nothing when the build has no RUN.
void print_isolation_notice(const builder::Plan& plan, const std::string& isolation) {
  bool has_run = false;
  for (const auto& s : plan.stages) {
    for (const auto& ins : s.steps) {
      has_run = has_run || ins.as<parser::RunInstruction>() != nullptr;
    }
  }
  if (!has_run) {
    return;
  }
  auto sb = sandbox::make_sandbox(isolation);
  if (sb && !(*sb)->notice().empty()) {
    std::fprintf(stderr, "%s\n", (*sb)->notice().c_str());
  }
}

void run_build(BuildFlags& f, Context& ctx) {
  auto started = std::chrono::system_clock::now();
  if (f.quiet) {
    f.progress = "quiet";
  }
  // Outputs first: a malformed -o, a destination that is a directory or
  // whose directory is missing fails before any work (util/output.hpp).
  std::vector<builder::Output> outputs;
  for (const auto& o : f.outputs) {
    outputs.push_back(unwrap_message(builder::parse_output(o), 2));
  }
  for (const auto& o : outputs) {
    if (builder::writes_file(o)) {
      unwrap(output::check_destination(o.attrs.at("dest")));
    }
  }
  if (!f.iidfile.empty()) {
    unwrap(output::check_destination(f.iidfile));
  }
  if (!f.metadata_file.empty()) {
    unwrap(output::check_destination(f.metadata_file));
  }
  if (!f.report.empty() && f.report != "-") {
    unwrap(output::check_destination(f.report));
  }

  std::unique_ptr<builder::ProgressSink> progress = make_progress(f.progress);
  auto store = open_store(ctx);

  // The context and the Dockerfile.
  if (f.context == "-" && f.file == "-") {
    throw CommandError{"cannot read both the context and the Dockerfile from stdin", 2};
  }
  builder::ContextOptions copts;
  copts.context = f.context;
  copts.dockerfile = f.file;
  copts.stdin_fd = STDIN_FILENO;
  copts.temp_parent = (store->content().root() / "tmp").string();
  builder::BuildContext context = unwrap(builder::BuildContext::open(copts));
  const std::string& dockerfile_text = context.dockerfile_text();
  std::string dockerfile_name = fsys::path(context.dockerfile_name()).filename().string();
  if (dockerfile_name.empty() || dockerfile_name == "-") {
    dockerfile_name = "Dockerfile";
  }

  // The plan.
  builder::BuildOptions opts;
  opts.dockerfile_name = "Dockerfile";
  for (const auto& a : f.build_args) {
    size_t eq = a.find('=');
    if (eq == std::string::npos) {
      const char* v = std::getenv(a.c_str());
      if (v != nullptr) {
        opts.build_args.emplace_back(a, v);
      }
    } else {
      opts.build_args.emplace_back(a.substr(0, eq), a.substr(eq + 1));
    }
  }
  opts.target = f.target;
  for (const auto& l : f.labels) {
    auto [k, v] = str::key_value(l);
    opts.labels[k] = v;
  }
  opts.no_cache = f.no_cache;
  opts.no_cache_filter = f.no_cache_filter;
  for (const auto& c : f.build_contexts) {
    auto [k, v] = str::key_value(c);
    if (k.empty() || v.empty()) {
      throw CommandError{fmt::format("invalid --build-context {}: expected name=source", str::go_quote(c)), 2};
    }
    opts.named_contexts[k] = v;
  }
  // --platform a,b,…: one plan per target platform (the first one serves
  // the checks and messages), run as one build by execute_platforms.
  std::vector<std::string> platform_list;
  for (const auto& p : str::split(f.platform, ',')) {
    if (!str::trim(p).empty()) {
      platform_list.push_back(std::string(str::trim(p)));
    }
  }
  opts.platform = platform_list.empty() ? "" : platform_list.front();
  Platform onbuild_platform = host_platform();
  for (const auto& p : platform_list) {
    auto parsed = parse_platform(p);
    if (!parsed) {
      throw CommandError{"--platform: " + parsed.error().message, 2};
    }
    if (&p == &platform_list.front()) {
      onbuild_platform = *parsed;
    }
  }
  if (const char* sde = std::getenv("SOURCE_DATE_EPOCH")) {
    opts.source_date_epoch_env = sde;
  }
  // ONBUILD triggers of base images in the store, for the stages they use.
  opts.base_onbuild = [&store, onbuild_platform](const std::string& ref) -> std::optional<std::vector<std::string>> {
    if (ref.starts_with("oci-layout://")) {
      auto img = builder::load_oci_layout_image(*store, ref, onbuild_platform);
      if (!img || !img->config.config) {
        return std::nullopt;
      }
      return img->config.config->on_build;
    }
    auto config = builder::stored_image_config(*store, ref);
    if (!config) {
      return std::nullopt;
    }
    return config->on_build;
  };
  auto plan = builder::make_plan(dockerfile_text, opts);
  if (!plan) {
    const Error& e = plan.error();
    if (e.location && e.location->line > 0) {
      std::vector<std::string> lines = str::split(dockerfile_text, '\n');
      print_excerpt(dockerfile_name, lines, e.location->line);
    }
    throw CommandError{e.message, e.code == Errc::unsupported ? 2 : 1};
  }

  // Build checks: --check runs only them; check=error=true fails the build
  // before it starts; otherwise the warnings follow the build's output.
  builder::BuildCheckInput check_input;
  check_input.dockerfile_text = &dockerfile_text;
  check_input.plan = &*plan;
  for (const auto& [k, v] : opts.build_args) {
    check_input.build_args.push_back(k + "=" + v);
  }
  check_input.target = f.target;
  check_input.store = store.get();
  check_input.context = &context;
  builder::BuildCheckResult checks = unwrap(builder::run_build_checks(check_input));
  if (f.check) {
    std::string text = builder::format_check_details(checks.warnings, dockerfile_name, plan->lines) +
                       builder::format_check_complete(checks.warnings.size());
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (checks.error) {
      throw CommandError{*checks.error, 1};
    }
    ctx.exit_code = checks.warnings.empty() ? 0 : 1;
    return;
  }
  auto print_warnings = [&] {
    if (f.progress == "rawjson") {
      std::fputs(builder::format_check_events(checks.warnings).c_str(), stderr);
    } else if (!f.quiet && f.progress != "quiet") {
      std::fputs(builder::format_check_summary(checks.warnings).c_str(), stderr);
    }
  };
  if (checks.error) {
    print_warnings();
    throw CommandError{*checks.error, 1};
  }

  // Names.
  std::vector<image::Reference> tags;
  for (const auto& t : f.tags) {
    auto ref = image::parse_reference(t);
    if (!ref) {
      throw CommandError{fmt::format("invalid tag {}: {}", str::go_quote(t), ref.error().message), 2};
    }
    tags.push_back(*ref);
  }

  if (f.push) {
    outputs.push_back(builder::Output{"image", {{"push", "true"}}});
  }
  builder::ImageOutputs image_outs = unwrap_message(builder::image_outputs(outputs, tags), 2);
  for (const auto& o : outputs) {
    if (o.type == "docker") {
      // Before building, as buildx refuses it (a store without indexes).
      unwrap(builder::check_docker_output(platform_list.size()));
    }
  }

  builder::ExecuteOptions exec;
  exec.context = &context;
  exec.tags = tags;
  for (const auto& n : image_outs.names) {
    bool known = std::any_of(tags.begin(), tags.end(), [&](const image::Reference& r) { return r.str() == n.str(); });
    if (!known) {
      exec.tags.push_back(n);
    }
  }
  exec.jobs = f.jobs;
  exec.build_identity = build_identity(f.file, f.context, f.target);
  for (const auto& d : ctx.debug) {
    if (d.rfind("cache-keys=", 0) == 0) {
      exec.cache_keys_dir = d.substr(std::strlen("cache-keys="));
    }
  }
  exec.snapshotter = f.snapshotter;
  exec.isolation = f.isolation;
  exec.network = f.network;
  for (const auto& a : f.allow) {
    exec.allow.insert(a);
  }
  for (const auto& s : f.secrets) {
    builder::SecretSource src;
    std::string type;
    for (const auto& part : str::split(s, ',')) {
      auto [k, v] = str::key_value(part);
      if (k == "id") {
        src.id = v;
      } else if (k == "src" || k == "source") {
        src.file = v;
      } else if (k == "env") {
        src.env = v;
      } else if (k == "type") {
        type = v;
      } else {
        throw CommandError{fmt::format("invalid --secret {}: unknown key {}", str::go_quote(s), k), 2};
      }
    }
    if (src.id.empty()) {
      src.id = src.env ? *src.env : (src.file ? fsys::path(*src.file).filename().string() : "");
    }
    if (src.id.empty() || (!src.file && !src.env)) {
      throw CommandError{fmt::format("invalid --secret {}: expected id=ID,src=FILE or id=ID,env=VAR", s), 2};
    }
    if (src.file && type == "env") {
      src.env = src.file;
      src.file.reset();
    }
    exec.secrets[src.id] = src;
  }
  for (const auto& s : f.ssh) {
    auto [k, v] = str::key_value(s);
    if (k != "default") {
      throw CommandError{fmt::format("invalid --ssh {}: only \"default\" is supported", s), 2};
    }
    if (!v.empty()) {
      exec.ssh_socket = v;
    } else if (const char* sock = std::getenv("SSH_AUTH_SOCK")) {
      exec.ssh_socket = sock;
    } else {
      throw CommandError{"--ssh default: SSH_AUTH_SOCK is not set", 2};
    }
  }
  auto since = started.time_since_epoch();
  exec.now_sec = std::chrono::duration_cast<std::chrono::seconds>(since).count();
  exec.now_nsec = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(since).count() %
                                        1000000000LL);

  const builder::MessageSink messages = stderr_lines();
  const builder::MessageSink unless_quiet = f.quiet || f.progress == "quiet" ? nullptr : messages;
  builder::BuildCacheIo cache_io =
      unwrap_message(builder::open_build_cache_io(f.cache_from, f.cache_to, messages), 2);
  exec.cache_io = cache_io.io.get();
  auto resolver = builder::make_pull_resolver(*store, f.pull, messages);
  print_isolation_notice(*plan, f.isolation);
  std::vector<builder::StepRecord> steps_seen;
  exec.steps_seen = &steps_seen;
  std::vector<builder::BuiltImage> per_platform;
  auto built = [&]() -> Result<builder::BuiltImage> {
    if (platform_list.size() <= 1) {
      return builder::execute(*plan, *store, *resolver, exec, *progress);
    }
    std::vector<builder::Plan> plans = {*plan};
    for (size_t i = 1; i < platform_list.size(); ++i) {
      builder::BuildOptions other = opts;
      other.platform = platform_list[i];
      TRY(builder::Plan p, builder::make_plan(dockerfile_text, other));
      plans.push_back(std::move(p));
    }
    TRY(per_platform, builder::execute_platforms(plans, *store, *resolver, exec, *progress));
    return per_platform.front();
  }();
  progress.reset();  // the view ends (tty: its FINISHED line) before what follows
  if (!built) {
    // The summary of a failed build: its time and the steps it finished.
    builder::BuiltImage partial;
    partial.steps = steps_seen;
    double failed_after = std::chrono::duration<double>(std::chrono::system_clock::now() - started).count();
    nlohmann::json summary = builder::build_summary(partial, failed_after, 0);
    summary.erase("image_size");
    summary["failed"] = true;
    if (f.progress == "rawjson") {
      summary["event"] = "summary";
      std::fprintf(stderr, "%s\n", summary.dump().c_str());
    } else if (!f.quiet && f.progress != "quiet") {
      std::fprintf(stderr, "%s\n", summary_line(summary).c_str());
    }
    print_warnings();  // as buildx: after the view, before the failure's excerpt
    const Error& e = built.error();
    if (e.location && e.location->line > 0) {
      print_excerpt(dockerfile_name, plan->lines, e.location->line);
    }
    std::string msg = e.message;
    if (msg.find("did not complete successfully") != std::string::npos) {
      msg = "failed to solve: " + msg;
    }
    if (!f.metadata_file.empty()) {
      auto written = builder::write_failure_metadata(f.metadata_file, e, checks.warnings);
      if (!written) {
        std::fprintf(stderr, "imgbuild: error: %s\n", written.error().to_string().c_str());
      }
    }
    // A full store: Errc::no_space, or a lower layer's own strerror text
    // (a COPY's write) — either way main adds what prune can free.
    bool full = e.code == Errc::no_space || msg.find(std::strerror(ENOSPC)) != std::string::npos;
    throw CommandError{msg, 1, full};
  }
  // Several platforms: one image index over the platform images, under the
  // names; the outputs, pushes and files name the index.
  std::optional<image::ImageRecord> index;
  if (per_platform.size() > 1) {
    std::vector<image::IndexEntry> entries;
    for (const auto& img : per_platform) {
      image::IndexEntry e;
      e.manifest_digest = img.manifest_digest;
      e.media_type = std::string(image::media::oci_manifest);
      e.size = static_cast<int64_t>(img.manifest_bytes.size());
      e.platform = builder::oci_platform(img.platform);
      entries.push_back(std::move(e));
    }
    image::CommittedIndex committed = unwrap(image::commit_index(*store, entries, exec.tags));
    index = unwrap(store->resolve_target(committed.digest));
  }
  // A bad compression= of an archive output is the user's error (status 2);
  // what goes wrong while writing is not.
  for (const auto& o : outputs) {
    if (o.type == "docker" || o.type == "oci") {
      unwrap_message(builder::output_compression(o, o.type == "oci"), 2);
    }
  }
  unwrap(builder::write_outputs(*store, *built, outputs, tags, index ? &*index : nullptr));
  // Every platform's records (mode=min: each platform image's chain).
  const std::span<const builder::BuiltImage> built_images =
      per_platform.empty() ? std::span<const builder::BuiltImage>(&*built, 1)
                            : std::span<const builder::BuiltImage>(per_platform);
  unwrap_message(builder::export_build_cache(cache_io, *store, built_images, unless_quiet), 1);
  // The metadata file names the manifest as pushed (layers compressed); a
  // multi-platform build's is its index, as buildx's containerimage.digest.
  std::optional<image::Descriptor> pushed;
  for (const auto& p : image_outs.pushes) {
    pushed = unwrap_message(
        builder::push_built_image(*store, index ? index->manifest_digest : built->manifest_digest, p, unless_quiet),
        1);
  }
  // The image ID: a multi-platform image's is its index digest (docker's
  // containerd store shows that).
  const std::string image_id = index ? index->manifest_digest : built->config_digest;

  if (!f.iidfile.empty()) {
    unwrap(output::write_file(f.iidfile, image_id));
  }
  double seconds = std::chrono::duration<double>(std::chrono::system_clock::now() - started).count();
  // Every platform's steps; a multi-platform image's size is the index's
  // (its platforms' summed, as `images` shows it).
  nlohmann::json summary =
      builder::build_summary(built_images, seconds, unwrap(store->content_size(index ? *index : built->record)));
  std::optional<nlohmann::json> report;
  if (!f.report.empty()) {
    image::ImageAnalysis analysis = unwrap(image::analyze_image(*store, built->record));
    report = report_model(analysis, built->config_digest, tags.empty() ? "" : tags.front().familiar(), &*built);
    if (f.report == "-") {
      std::string text = report_text(*report);
      std::fputs(text.c_str(), stdout);
      std::fflush(stdout);
    } else {
      unwrap(output::write_file(f.report, report_html(*report)));
    }
  }
  if (!f.metadata_file.empty()) {
    nlohmann::json md =
        unwrap(builder::success_metadata(*store, *built, pushed, tags, summary, report, checks.warnings,
                                         index ? &*index : nullptr));
    unwrap(output::write_file(f.metadata_file, md.dump(2) + "\n"));
  }
  if (f.quiet) {
    std::printf("%s\n", image_id.c_str());
  } else if (f.progress != "quiet" && f.progress != "rawjson") {
    // quiet prints nothing; rawjson's stream stays one JSON event a line.
    std::fprintf(stderr, "writing image %s done\n", image_id.c_str());
    for (const auto& t : tags) {
      std::fprintf(stderr, "naming to %s done\n", t.str().c_str());
    }
    std::fprintf(stderr, "%s\n", summary_line(summary).c_str());
  } else if (f.progress == "rawjson") {
    nlohmann::json ev = summary;
    ev["event"] = "summary";
    std::fprintf(stderr, "%s\n", ev.dump().c_str());
  }
  print_warnings();  // as buildx: last, after the export lines
}

}  // namespace

void register_build_commands(CLI::App& app, Context& ctx) {
  auto flags = std::make_shared<BuildFlags>();
  CLI::App* cmd = app.add_subcommand("build", "Build an image from a Dockerfile");
  cmd->add_option("context", flags->context, "Build context: a directory, or - for a tar on stdin")->required();
  cmd->add_option("-f,--file", flags->file, "Name of the Dockerfile (default: CONTEXT/Dockerfile; - for stdin)");
  cmd->add_option("-t,--tag", flags->tags, "Name and optionally a tag (name:tag)");
  cmd->add_option("--build-arg", flags->build_args, "Set build-time variables");
  cmd->add_option("--target", flags->target, "Set the target build stage to build");
  cmd->add_option("--label", flags->labels, "Set metadata for an image");
  cmd->add_flag("--no-cache", flags->no_cache, "Do not use cache when building the image");
  cmd->add_option("--no-cache-filter", flags->no_cache_filter, "Do not cache specified stages");
  cmd->add_option("--progress", flags->progress, "Progress output: auto, plain, tty, quiet, rawjson");
  cmd->add_flag("-q,--quiet", flags->quiet, "Suppress the build output and print the image ID on success");
  cmd->add_option("-o,--output", flags->outputs, "Output destination (type=docker|oci|local|tar,dest=PATH; type=image|registry,name=REF,push=true)");
  cmd->add_option("--platform", flags->platform, "Target platform(s): os/arch[/variant][,…] (default: the host's)");
  cmd->add_option("--build-context", flags->build_contexts, "Additional build contexts (name=path|docker-image://ref)");
  cmd->add_option("--secret", flags->secrets, "Secret to expose to the build (id=X,src=FILE|env=VAR)");
  cmd->add_option("--ssh", flags->ssh, "SSH agent socket to expose to the build (default)");
  cmd->add_option("--network", flags->network, "Networking mode for RUN: default, none, host");
  cmd->add_option("--allow", flags->allow, "Extra privileged entitlement (security.insecure)");
  cmd->add_option("--jobs", flags->jobs, "Stages built in parallel (default: number of cores)");
  cmd->add_option("--iidfile", flags->iidfile, "Write the image ID to the file");
  cmd->add_option("--metadata-file", flags->metadata_file, "Write build result metadata to the file");
  cmd->add_option("--report", flags->report,
                  "Write the layer report: an HTML page to FILE, or its text form to stdout with -");
  cmd->add_flag("--push", flags->push, "Push the image to the registry (shorthand for -o type=registry)");
  cmd->add_flag("--pull", flags->pull, "Always check the registry for base images (pull even when stored)");
  cmd->add_option("--cache-from", flags->cache_from,
                  "External cache source (type=local,src=DIR | type=registry,ref=REF | REF)");
  cmd->add_option("--cache-to", flags->cache_to,
                  "Cache export destination (type=local,dest=DIR | type=registry,ref=REF; mode=min|max, "
                  "mounts=true, mounts-max-size=SIZE)");
  cmd->add_option("--snapshotter", flags->snapshotter, "Snapshotter: auto, overlay, copy");
  cmd->add_option("--isolation", flags->isolation,
                  "RUN isolation: auto (namespaces where they can be made, else chroot), namespaces, chroot")
      ->check(CLI::IsMember({"auto", "namespaces", "chroot"}));
  cmd->add_flag("--check", flags->check, "Run the build checks only (no build); exit 1 when they warn");
  cmd->callback([flags, &ctx]() {
    static const std::set<std::string> k_networks = {"default", "none", "host"};
    if (k_networks.count(flags->network) == 0) {
      throw CommandError{fmt::format("invalid --network {}: use default, none or host", flags->network), 2};
    }
    run_build(*flags, ctx);
  });
}

}  // namespace imgbuild::cli
