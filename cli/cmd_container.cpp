// Containers: run (an image's command in a snapshot view), commit (a kept
// container's changes as a new image), start/restart (its command again over
// its changes), ps, rm.
//
// A kept container (run without --rm) is a directory <store>/containers/<id>/
// holding container.json (id, name, image ID, command, env, user, workdir,
// network, created, exit code) and upper/, the view's changes in overlayfs
// upper form. rmi and image prune keep the images containers use
// (images_in_use). No metadata schema
// migration: the record file is the whole state.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "builder/config.hpp"
#include "builder/layer_blob.hpp"
#include "cli/commands.hpp"
#include "cli/image_common.hpp"
#include "image/assemble.hpp"
#include "image/change.hpp"
#include "sandbox/sandbox.hpp"
#include "snapshot/copy.hpp"
#include "snapshot/layer_dirs.hpp"
#include "snapshot/snapshotter.hpp"
#include "util/platform.hpp"
#include "util/strings.hpp"

namespace imgbuild::cli {
namespace {

namespace fsys = std::filesystem;

fsys::path store_root(const image::ImageStore& store) { return store.content().root(); }

// The image's layer directories, lowest first, unpacked when needed; a
// directory that occurs twice is kept at its topmost position only.
std::vector<fsys::path> layer_dirs_of(image::ImageStore& store, const image::LoadedImage& img) {
  const auto& diff_ids = img.config.rootfs.diff_ids;
  if (diff_ids.size() != img.manifest.layers.size()) {
    throw CommandError{fmt::format("image {} has {} layers but {} diff_ids", img.record.config_digest,
                                   img.manifest.layers.size(), diff_ids.size()),
                       1};
  }
  unwrap(store.hold(img));  // leased: no prune removes it while the container runs
  snapshot::LayerDirs dirs(store_root(store) / "snapshots");
  std::vector<fsys::path> all;
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    const auto& d = img.manifest.layers[i];
    all.push_back(unwrap(dirs.ensure(store.content().blob_path(d.digest), d.digest, diff_ids[i])));
  }
  std::vector<fsys::path> out;
  std::set<fsys::path> seen;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (seen.insert(*it).second) {
      out.insert(out.begin(), *it);
    }
  }
  return out;
}

std::unique_ptr<snapshot::Snapshotter> open_snapshotter(const image::ImageStore& store, const std::string& kind) {
  snapshot::SnapshotterConfig cfg;
  cfg.work_dir = store_root(store) / "snapshots" / "work";
  cfg.runtime_dir = store_root(store) / "run";
  return unwrap(snapshot::make_snapshotter(kind, cfg));
}

std::string now_rfc3339() { return builder::format_rfc3339(static_cast<int64_t>(std::time(nullptr))); }

fsys::path containers_dir(const image::ImageStore& store) { return store_root(store) / "containers"; }

// Finds a kept container by full id, unique id prefix, or name.
std::pair<fsys::path, nlohmann::json> find_container(const image::ImageStore& store, const std::string& arg) {
  std::vector<std::pair<fsys::path, nlohmann::json>> hits;
  std::error_code ec;
  for (const auto& entry : fsys::directory_iterator(containers_dir(store), ec)) {
    std::ifstream in(entry.path() / "container.json");
    if (!in) {
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      continue;
    }
    std::string id = j.value("id", "");
    if (j.value("name", "") == arg || id == arg) {
      return {entry.path(), j};
    }
    if (!arg.empty() && id.starts_with(arg)) {
      hits.emplace_back(entry.path(), j);
    }
  }
  if (hits.size() == 1) {
    return hits.front();
  }
  if (hits.size() > 1) {
    throw CommandError{fmt::format("container id prefix {} is ambiguous", arg), 1};
  }
  throw CommandError{fmt::format("No such container: {}", arg), 1};
}

// Replaces <dir>/container.json with j (written aside, then renamed).
void write_record(const fsys::path& dir, const nlohmann::json& j) {
  std::ofstream out(dir / "container.json.tmp");
  out << j.dump(2) << "\n";
  out.close();
  if (!out) {
    throw CommandError{fmt::format("cannot write {}", (dir / "container.json").string()), 1};
  }
  std::error_code ec;
  fsys::rename(dir / "container.json.tmp", dir / "container.json", ec);
  if (ec) {
    throw CommandError{fmt::format("cannot write {}: {}", (dir / "container.json").string(), ec.message()), 1};
  }
}

// Runs spec in the view's root; a sandbox failure discards the view and
// exits 125, as docker does when the container cannot start.
sandbox::RunResult run_in_view(sandbox::Sandbox& sb, snapshot::View& view, sandbox::RunSpec& spec) {
  spec.rootfs = view.root();
  std::fflush(stdout);
  std::fflush(stderr);
  auto result = sb.run(spec);
  if (!result) {
    (void)view.remove();
    throw CommandError{result.error().to_string(), 125};
  }
  return *result;
}

// An image of another platform runs through binfmt_misc and qemu, as a RUN
// of a build does; when this host cannot run its binaries, an error naming
// the fix (docker's status for a container that cannot start) before any
// view is made.
void check_runnable(const sandbox::Sandbox& sb, const image::LoadedImage& img, const std::string& image_arg) {
  const image::ImageConfig& c = img.config;
  if (c.architecture.empty()) {
    return;  // no platform recorded: taken as the host's
  }
  auto can = sb.can_run(normalize_platform({c.os, c.architecture, c.variant}));
  if (!can) {
    throw CommandError{fmt::format("image {}: {}", image_arg, can.error().message), 125};
  }
}

// Docker's rule for container names, [a-zA-Z0-9][a-zA-Z0-9_.-]+ (so at
// least two characters), with a length bound Docker leaves to the kernel's
// hostname and file name limits.
constexpr size_t k_max_container_name = 255;

void check_container_name(const std::string& name) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  bool valid = name.size() >= 2 && alnum(name[0]) &&
               std::all_of(name.begin() + 1, name.end(), [&](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
  if (!valid) {
    throw CommandError{fmt::format("invalid container name {}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least "
                                   "two characters",
                                   str::go_quote(name.size() > 64 ? name.substr(0, 64) + "…" : name)),
                       1};
  }
  if (name.size() > k_max_container_name) {
    throw CommandError{fmt::format("invalid container name {}…: longer than {} characters ({})",
                                   name.substr(0, 64), k_max_container_name, name.size()),
                       1};
  }
}

void add_run(CLI::App* sub, Context& ctx) {
  struct Opt {
    bool rm = false;
    std::string name;
    std::vector<std::string> env;
    std::string user;
    std::string workdir;
    std::string network = "host";
    std::optional<std::string> entrypoint;
    std::string snapshotter = "auto";
    std::string isolation = "auto";
    std::string platform;
  };
  auto opt = std::make_shared<Opt>();
  sub->add_flag("--rm", opt->rm, "Remove the container when it exits");
  sub->add_option("--platform", opt->platform,
                  "Platform of a multi-platform image to run (os/arch[/variant]; default the host's)");
  sub->add_option("--snapshotter", opt->snapshotter, "Snapshotter: auto, overlay, copy")
      ->check(CLI::IsMember({"auto", "overlay", "copy"}));
  sub->add_option("--isolation", opt->isolation,
                  "Isolation: auto (namespaces where they can be made, else chroot), namespaces, chroot")
      ->check(CLI::IsMember({"auto", "namespaces", "chroot"}));
  sub->add_option("--name", opt->name, "Name of the container");
  sub->add_option("-e,--env", opt->env, "Set an environment variable (K=V, or K to copy it from here)")
      ->allow_extra_args(false);
  sub->add_option("-u,--user", opt->user, "User (name|uid[:group|gid])");
  sub->add_option("-w,--workdir", opt->workdir, "Working directory inside the container");
  sub->add_option("--network", opt->network, "Network: host or none")->check(CLI::IsMember({"host", "none"}));
  sub->add_option("--entrypoint", opt->entrypoint, "Override the image's ENTRYPOINT");
  sub->prefix_command();
  sub->allow_extras();
  sub->fallthrough(false);
  sub->callback([sub, &ctx, opt]() {
    std::vector<std::string> rest = sub->remaining();
    if (rest.empty()) {
      throw CommandError{"run needs an image", 1};
    }
    if (!opt->name.empty() || sub->count("--name") > 0) {
      check_container_name(opt->name);
    }
    std::string image_arg = rest.front();
    std::vector<std::string> cmd(rest.begin() + 1, rest.end());
    auto store = open_store(ctx);
    if (!opt->rm && !opt->name.empty()) {
      std::error_code ec;
      for (const auto& entry : fsys::directory_iterator(containers_dir(*store), ec)) {
        std::ifstream in(entry.path() / "container.json");
        nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
        if (!j.is_discarded() && j.is_object() && j.value("name", "") == opt->name) {
          throw CommandError{fmt::format("the container name {} is already in use", opt->name), 1};
        }
      }
    }
    image::LoadedImage img = unwrap(store->load(unwrap(store->resolve(image_arg, platform_flag(opt->platform)))));
    image::ContainerConfig cc = img.config.config.value_or(image::ContainerConfig{});

    // docker's rules: --entrypoint replaces the entrypoint and drops the
    // image's Cmd; command arguments replace the Cmd.
    std::vector<std::string> argv;
    std::vector<std::string> image_cmd = cc.cmd.value_or(std::vector<std::string>{});
    if (opt->entrypoint) {
      if (!opt->entrypoint->empty()) {
        argv.push_back(*opt->entrypoint);
      }
      image_cmd.clear();
    } else if (cc.entrypoint) {
      argv = *cc.entrypoint;
    }
    const auto& args = cmd.empty() ? image_cmd : cmd;
    argv.insert(argv.end(), args.begin(), args.end());
    if (argv.empty()) {
      throw CommandError{fmt::format("no command specified for image {}", image_arg), 125};
    }

    sandbox::RunSpec spec;
    spec.env = cc.env;
    for (const auto& e : opt->env) {
      std::string kv = e;
      if (e.find('=') == std::string::npos) {
        const char* v = std::getenv(e.c_str());
        if (v == nullptr) {
          continue;
        }
        kv = e + "=" + v;
      }
      std::string key = kv.substr(0, kv.find('='));
      std::erase_if(spec.env, [&](const std::string& x) { return x.substr(0, x.find('=')) == key; });
      spec.env.push_back(kv);
    }
    spec.argv = argv;
    spec.user = opt->user.empty() ? cc.user : opt->user;
    spec.workdir = !opt->workdir.empty() ? opt->workdir : (cc.working_dir.empty() ? "/" : cc.working_dir);
    if (!spec.workdir.starts_with("/")) {
      throw CommandError{fmt::format("the working directory {} is not absolute", spec.workdir), 125};
    }
    spec.network = opt->network == "none" ? sandbox::NetworkMode::none : sandbox::NetworkMode::host;
    spec.stdio = sandbox::Stdio::inherit;

    std::vector<fsys::path> dirs = layer_dirs_of(*store, img);
    auto snapshotter = open_snapshotter(*store, opt->snapshotter);
    auto sb = unwrap(sandbox::make_sandbox(opt->isolation));
    check_runnable(*sb, img, image_arg);
    if (!sb->notice().empty()) {
      std::fprintf(stderr, "%s\n", sb->notice().c_str());
    }
    auto view = unwrap(snapshotter->prepare(dirs));
    std::string id = snapshot::LayerDirs::random_hex() + snapshot::LayerDirs::random_hex();
    spec.hostname = id.substr(0, 12);
    auto result = run_in_view(*sb, *view, spec);
    if (opt->rm) {
      unwrap(view->remove());
    } else {
      fsys::path dir = containers_dir(*store) / id;
      std::error_code ec;
      fsys::create_directories(dir, ec);
      if (ec) {
        throw CommandError{fmt::format("cannot create {}: {}", dir.string(), ec.message()), 1};
      }
      unwrap(view->commit(dir / "upper"));
      nlohmann::json j;
      j["id"] = id;
      j["name"] = opt->name.empty() ? "c_" + id.substr(0, 12) : opt->name;
      j["image"] = img.record.config_digest;
      j["image_arg"] = image_arg;
      j["command"] = argv;
      j["env"] = spec.env;
      j["user"] = spec.user;
      j["workdir"] = spec.workdir;
      j["network"] = opt->network;
      j["created"] = now_rfc3339();
      j["exit_code"] = result.exit_code;
      write_record(dir, j);
    }
    ctx.exit_code = result.exit_code;
  });
}

void add_commit(CLI::App* sub, Context& ctx) {
  struct Opt {
    std::string container;
    std::string ref;
    std::string message;
    std::string author;
    std::vector<std::string> changes;
  };
  auto opt = std::make_shared<Opt>();
  sub->add_option("container", opt->container, "Container id or name")->required();
  sub->add_option("reference", opt->ref, "REPOSITORY[:TAG] for the new image");
  sub->add_option("-m,--message", opt->message, "Commit message");
  sub->add_option("-a,--author", opt->author, "Author");
  sub->add_option("-c,--change", opt->changes, "Apply a Dockerfile instruction to the image config")
      ->allow_extra_args(false);
  sub->callback([&ctx, opt]() {
    auto store = open_store(ctx);
    auto [dir, rec] = find_container(*store, opt->container);
    std::vector<image::Reference> names;
    if (!opt->ref.empty()) {
      image::Reference r = unwrap(image::parse_reference(opt->ref));
      if (!r.digest.empty()) {
        throw CommandError{fmt::format("cannot commit to a digest reference: {}", opt->ref), 1};
      }
      names.push_back(r);
    }
    image::LoadedImage img = unwrap(store->load(unwrap(store->resolve(rec.value("image", "")))));
    std::vector<fsys::path> dirs = layer_dirs_of(*store, img);
    std::vector<std::string> lowers;
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
      lowers.push_back(it->string());
    }
    image::ImageConfig cfg = img.config;
    image::ContainerConfig cc = cfg.config.value_or(image::ContainerConfig{});
    for (const auto& c : opt->changes) {
      unwrap(image::apply_change(cc, c));
    }
    cfg.config = cc;

    auto staging = unwrap(image::Staging::create(store->content()));
    image::LayerRecord layer =
        unwrap(builder::write_layer_blob(*staging, nullptr, (dir / "upper").string(), lowers));

    std::string created = now_rfc3339();
    cfg.created = created;
    if (!opt->author.empty()) {
      cfg.author = opt->author;
    }
    cfg.rootfs.type = "layers";
    cfg.rootfs.diff_ids.push_back(layer.diff_id);
    image::HistoryEntry h;
    h.created = created;
    h.author = opt->author;
    h.comment = opt->message;
    std::string cmdline;
    for (const auto& a : rec.value("command", std::vector<std::string>{})) {
      cmdline += (cmdline.empty() ? "" : " ") + a;
    }
    h.created_by = cmdline;
    cfg.history.push_back(h);

    // The image's layers as its manifest has them, then the new one.
    std::vector<image::AssembledLayer> layers;
    for (size_t i = 0; i < img.manifest.layers.size(); ++i) {
      image::AssembledLayer al;
      al.descriptor = img.manifest.layers[i];
      auto known = unwrap(store->db().layer(img.manifest.layers[i].digest));
      if (known) {
        al.record = *known;
      } else {
        al.record.blob_digest = img.manifest.layers[i].digest;
        al.record.blob_size = img.manifest.layers[i].size;
        al.record.diff_id = img.config.rootfs.diff_ids[i];
      }
      al.record.media_type = img.manifest.layers[i].media_type;
      layers.push_back(std::move(al));
    }
    image::AssembledLayer added;
    added.descriptor.media_type = layer.media_type;
    added.descriptor.digest = layer.blob_digest;
    added.descriptor.size = layer.blob_size;
    added.record = layer;
    layers.push_back(std::move(added));
    std::string config_digest = unwrap(image::commit_image(*store, *staging, cfg, layers, names)).config_digest;
    std::fputs((config_digest + "\n").c_str(), stdout);
    ctx.exit_code = 0;
  });
}

// docker start / restart of a kept (stopped) container: its command runs
// again, attached, over the image with the container's changes laid on top,
// and the changes of this run are added to them. The snapshotter is run's
// (overlay unless --snapshotter says otherwise): overlay mounts the
// container's upper directory in place as the view's upper, copy merges it
// into a fresh view (Snapshotter::prepare_over); either way the view then
// holds everything the container changed since the image.
void add_start(CLI::App* sub, Context& ctx) {
  auto ids = std::make_shared<std::vector<std::string>>();
  auto kind = std::make_shared<std::string>("auto");
  sub->add_option("container", *ids, "Containers (id, id prefix or name)")->required();
  sub->add_flag("-a,--attach")->description("Accepted for docker compatibility (imgbuild always attaches)");
  sub->add_option("--snapshotter", *kind, "Snapshotter: auto, overlay, copy")
      ->check(CLI::IsMember({"auto", "overlay", "copy"}));
  sub->callback([&ctx, ids, kind]() {
    auto store = open_store(ctx);
    int exit_code = 0;
    for (const auto& arg : *ids) {
      auto [dir, rec] = find_container(*store, arg);
      std::error_code ec;
      if (!fsys::exists(dir / "upper", ec) && fsys::is_directory(dir / "upper.new", ec)) {
        // A start that stopped between its two renames below.
        fsys::rename(dir / "upper.new", dir / "upper", ec);
      }
      if (!fsys::is_directory(dir / "upper", ec)) {
        fsys::create_directory(dir / "upper", ec);  // a container that changed nothing
      }
      image::LoadedImage img = unwrap(store->load(unwrap(store->resolve(rec.value("image", "")))));
      image::ContainerConfig cc = img.config.config.value_or(image::ContainerConfig{});
      sandbox::RunSpec spec;
      spec.argv = rec.value("command", std::vector<std::string>{});
      spec.env = rec.value("env", cc.env);
      spec.user = rec.value("user", cc.user);
      spec.workdir = rec.value("workdir", cc.working_dir.empty() ? std::string("/") : cc.working_dir);
      spec.network = rec.value("network", "host") == "none" ? sandbox::NetworkMode::none : sandbox::NetworkMode::host;
      spec.hostname = rec.value("id", "").substr(0, 12);
      spec.stdio = sandbox::Stdio::inherit;
      if (spec.argv.empty()) {
        throw CommandError{fmt::format("container {} has no command", arg), 1};
      }
      auto snapshotter = open_snapshotter(*store, *kind);
      auto sb = unwrap(sandbox::make_sandbox("auto"));
      check_runnable(*sb, img, rec.value("image_arg", rec.value("image", "")));
      auto view = unwrap(snapshotter->prepare_over(layer_dirs_of(*store, img), dir / "upper"));
      auto result = run_in_view(*sb, *view, spec);
      // The new changes replace the old ones only once they are complete
      // (an overlay view's commit moves the upper itself: nothing is left
      // to set aside then).
      fsys::remove_all(dir / "upper.new", ec);
      unwrap(view->commit(dir / "upper.new"));
      fsys::remove_all(dir / "upper.old", ec);
      ec.clear();
      if (fsys::exists(dir / "upper", ec)) {
        fsys::rename(dir / "upper", dir / "upper.old", ec);
      }
      if (!ec) {
        fsys::rename(dir / "upper.new", dir / "upper", ec);
      }
      if (ec) {
        throw CommandError{fmt::format("cannot replace the changes of container {}: {}", arg, ec.message()), 1};
      }
      fsys::remove_all(dir / "upper.old", ec);
      rec["exit_code"] = result.exit_code;
      write_record(dir, rec);
      exit_code = result.exit_code;
    }
    ctx.exit_code = exit_code;
  });
}

void add_ps(CLI::App* sub, Context& ctx) {
  auto all = std::make_shared<bool>(false);
  sub->add_flag("-a,--all", *all, "Show all containers (every kept container has exited)");
  sub->callback([&ctx, all]() {
    auto store = open_store(ctx);
    std::vector<std::vector<std::string>> rows{{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"}};
    std::vector<nlohmann::json> recs;
    std::error_code ec;
    for (const auto& entry : fsys::directory_iterator(containers_dir(*store), ec)) {
      std::ifstream in(entry.path() / "container.json");
      nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
      if (!j.is_discarded() && j.is_object()) {
        recs.push_back(j);
      }
    }
    std::sort(recs.begin(), recs.end(), [](const auto& a, const auto& b) {
      return std::pair(a.value("created", ""), a.value("id", "")) > std::pair(b.value("created", ""), b.value("id", ""));
    });
    if (*all) {
      for (const auto& j : recs) {
        std::string cmdline;
        for (const auto& a : j.value("command", std::vector<std::string>{})) {
          cmdline += (cmdline.empty() ? "" : " ") + a;
        }
        rows.push_back({j.value("id", "").substr(0, 12), j.value("image_arg", ""), str::go_quote(cmdline),
                        created_since(j.value("created", "")), fmt::format("Exited ({})", j.value("exit_code", 0)),
                        j.value("name", "")});
      }
    }
    std::fputs(format_table(rows).c_str(), stdout);
  });
}

void add_rm(CLI::App* sub, Context& ctx) {
  auto ids = std::make_shared<std::vector<std::string>>();
  sub->add_option("container", *ids, "Containers (id, id prefix or name)")->required();
  sub->callback([&ctx, ids]() {
    auto store = open_store(ctx);
    for (const auto& arg : *ids) {
      auto [dir, rec] = find_container(*store, arg);
      std::error_code ec;
      fsys::remove_all(dir, ec);
      if (ec) {
        throw CommandError{fmt::format("cannot remove container {}: {}", arg, ec.message()), 1};
      }
      std::fputs((arg + "\n").c_str(), stdout);
    }
  });
}

}  // namespace

image::ImagesInUse images_in_use(const image::ImageStore& store) {
  image::ImagesInUse out;
  std::error_code ec;
  for (const auto& entry : fsys::directory_iterator(containers_dir(store), ec)) {
    std::ifstream in(entry.path() / "container.json");
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_discarded() && j.is_object() && !j.value("image", "").empty()) {
      // The smallest container id names the user, whatever the listing order.
      auto [it, fresh] = out.emplace(j.value("image", ""), j.value("id", ""));
      if (!fresh && j.value("id", "") < it->second) {
        it->second = j.value("id", "");
      }
    }
  }
  return out;
}

void register_container_commands(CLI::App& app, Context& ctx) {
  add_run(app.add_subcommand("run", "Run a command in a new container from an image"), ctx);
  add_commit(app.add_subcommand("commit", "Create a new image from a container's changes"), ctx);
  add_start(app.add_subcommand("start", "Run a stopped container's command again"), ctx);
  add_start(app.add_subcommand("restart", "Run a stopped container's command again"), ctx);
  add_ps(app.add_subcommand("ps", "List containers"), ctx);
  add_rm(app.add_subcommand("rm", "Remove containers"), ctx);
}

}  // namespace imgbuild::cli
