// The docker image commands, daemonless: images / image ls, image inspect /
// inspect, history, tag, rmi / image rm, image prune, and (cmd_image_io.cpp)
// import, save, load. Output follows docker's formats: tables laid out like
// Go's tabwriter(minwidth 10, padding 3), sizes with 3 significant digits,
// times as "N units ago".

#include <fnmatch.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/image_common.hpp"
#include "cli/report.hpp"
#include "image/index.hpp"
#include "image/json.hpp"
#include "image/reference.hpp"
#include "image/store.hpp"
#include "snapshot/layer_dirs.hpp"
#include "util/strings.hpp"

namespace imgbuild::cli {

using image::ImageRecord;
using image::ImageStore;
using image::Reference;
using ojson = nlohmann::ordered_json;

// ---- shared helpers (image_common.hpp) ---------------------------------------

std::unique_ptr<ImageStore> open_store(const Context& ctx, image::StoreUse use) {
  return unwrap(ImageStore::open(image::default_store_root(ctx.root), use));
}

image::RemoveLayerDir layer_dir_remover(const ImageStore& store) {
  auto dirs = std::make_shared<snapshot::LayerDirs>(store.content().root() / "snapshots");
  return [dirs](const std::string& diff_id) { return dirs->remove(diff_id); };
}

std::optional<int64_t> parse_rfc3339(const std::string& s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  int64_t t = static_cast<int64_t>(::timegm(&tm));
  size_t i = static_cast<size_t>(consumed);
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ++i;
    }
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh = 0, om = 0;
    if (std::sscanf(s.c_str() + i + 1, "%2d:%2d", &oh, &om) == 2) {
      int64_t off = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
      t -= off;
    }
  }
  return t;
}

std::string human_duration(int64_t seconds) {
  if (seconds < 1) {
    return "Less than a second";
  }
  if (seconds == 1) {
    return "1 second";
  }
  if (seconds < 60) {
    return fmt::format("{} seconds", seconds);
  }
  int64_t minutes = seconds / 60;
  if (minutes == 1) {
    return "About a minute";
  }
  if (minutes < 60) {
    return fmt::format("{} minutes", minutes);
  }
  int64_t hours = static_cast<int64_t>(static_cast<double>(seconds) / 3600.0 + 0.5);
  if (hours == 1) {
    return "About an hour";
  }
  if (hours < 48) {
    return fmt::format("{} hours", hours);
  }
  if (hours < 24 * 7 * 2) {
    return fmt::format("{} days", hours / 24);
  }
  if (hours < 24 * 30 * 2) {
    return fmt::format("{} weeks", hours / 24 / 7);
  }
  if (hours < 24 * 365 * 2) {
    return fmt::format("{} months", hours / 24 / 30);
  }
  return fmt::format("{} years", hours / 24 / 365);
}

std::string created_since(const std::string& created) {
  std::optional<int64_t> t = parse_rfc3339(created);
  if (!t) {
    return "N/A";
  }
  return human_duration(static_cast<int64_t>(std::time(nullptr)) - *t) + " ago";
}

std::string size3(int64_t bytes) {
  return str::human_size(bytes < 0 ? 0 : static_cast<uint64_t>(bytes), 3);
}

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      if (widths.size() <= c) {
        widths.push_back(0);
      }
      widths[c] = std::max(widths[c], row[c].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) {
        size_t w = std::max<size_t>(widths[c] + 3, 10);
        line.append(w - row[c].size(), ' ');
      }
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  }
  return out;
}

std::string short_id(const std::string& digest) { return digest.substr(7, 12); }

std::optional<image::Platform> platform_flag(const std::string& text) {
  if (text.empty()) {
    return std::nullopt;
  }
  return unwrap(image::parse_platform_text(text));
}

namespace {

// ---- images / image ls -------------------------------------------------------

struct LsOptions {
  bool quiet = false;
  bool digests = false;
  bool no_trunc = false;
  std::string format;
  std::string repository;
  bool all = false;
  bool tree = false;
  std::vector<std::string> filters;
};

// docker's --filter for images: dangling=true|false, reference=<glob>.
struct LsFilter {
  std::optional<bool> dangling;
  std::vector<std::string> reference_globs;

  bool keeps_image(bool has_tags) const { return !dangling || *dangling != has_tags; }
  bool keeps_name(const Reference& n) const {
    if (reference_globs.empty()) {
      return true;
    }
    std::string repo = n.familiar_name();
    std::string tagged = repo + ":" + n.tag;
    for (const auto& g : reference_globs) {
      if (::fnmatch(g.c_str(), repo.c_str(), FNM_PATHNAME) == 0 ||
          ::fnmatch(g.c_str(), tagged.c_str(), FNM_PATHNAME) == 0) {
        return true;
      }
    }
    return false;
  }
};

LsFilter parse_filters(const std::vector<std::string>& filters) {
  LsFilter f;
  for (const auto& text : filters) {
    size_t eq = text.find('=');
    std::string key = str::to_lower(text.substr(0, eq));
    std::string value = eq == std::string::npos ? "" : text.substr(eq + 1);
    if (key == "dangling" && (value == "true" || value == "1")) {
      f.dangling = true;
    } else if (key == "dangling" && (value == "false" || value == "0")) {
      f.dangling = false;
    } else if (key == "reference" && !value.empty()) {
      f.reference_globs.push_back(value);
    } else {
      throw CommandError{fmt::format("invalid filter {} (supported: dangling=true|false, reference=PATTERN)",
                                     str::go_quote(text)),
                         1};
    }
  }
  return f;
}

// One row of `images`.
struct LsRow {
  std::string repo, tag, digest, id, created, size, created_at;
};

// images --tree: each image, and below a multi-platform image every
// platform its index lists, with the platform manifest's short digest and
// content size (0B and "not in the store" for one the store lacks), as
// docker's `image ls --tree` lays them out.
void print_tree(ImageStore& store, const std::vector<LsRow>& rows, bool no_trunc) {
  std::vector<std::vector<std::string>> table{{"IMAGE", "ID", "SIZE", "EXTRA"}};
  for (const auto& r : rows) {
    table.push_back({r.tag == "<none>" ? r.repo : r.repo + ":" + r.tag, r.id, r.size, ""});
    std::optional<ImageRecord> rec = unwrap(store.db().image(r.digest));
    if (!rec || !rec->is_index()) {
      continue;
    }
    image::LoadedIndex idx = unwrap(image::load_index(store, *rec));
    std::vector<std::vector<std::string>> children;
    for (size_t i = 0; i < idx.index.manifests.size(); ++i) {
      const image::Descriptor& d = idx.index.manifests[i];
      if (!d.platform || d.platform->os == "unknown") {
        continue;
      }
      std::string id = no_trunc ? d.digest : short_id(d.digest);
      auto held = std::find_if(idx.children.begin(), idx.children.end(),
                               [&](const image::IndexChildRecord& c) { return static_cast<size_t>(c.position) == i; });
      std::string size = "0B";
      std::string extra = "not in the store";
      if (held != idx.children.end()) {
        std::optional<ImageRecord> child = unwrap(store.db().image(held->manifest_digest));
        if (child) {
          size = size3(unwrap(store.content_size(*child)));
          extra.clear();
        }
      }
      children.push_back({image::platform_text(image::descriptor_platform(d)), id, size, extra});
    }
    for (size_t i = 0; i < children.size(); ++i) {
      children[i][0] = (i + 1 == children.size() ? "└─ " : "├─ ") + children[i][0];
      table.push_back(children[i]);
    }
  }
  // format_table's layout, with widths in characters ("├─" is 6 bytes).
  auto chars = [](const std::string& text) {
    return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
      return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }));
  };
  std::vector<size_t> widths(table.front().size(), 0);
  for (const auto& row : table) {
    for (size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], chars(row[c]));
    }
  }
  std::string out;
  for (const auto& row : table) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) {
        line.append(std::max<size_t>(widths[c] + 3, 10) - chars(row[c]), ' ');
      }
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  }
  std::fputs(out.c_str(), stdout);
}

void run_ls(Context& ctx, const LsOptions& opt) {
  auto store = open_store(ctx);
  std::vector<ImageRecord> images = unwrap(store->db().images());
  using Row = LsRow;
  std::vector<Row> rows;
  std::optional<Reference> filter;
  if (!opt.repository.empty()) {
    filter = unwrap(image::parse_reference(opt.repository, image::DefaultTag::none));
  }
  LsFilter lf = parse_filters(opt.filters);
  for (const auto& rec : images) {
    std::vector<Reference> names = unwrap(store->names_of(rec.manifest_digest));
    // A platform image of a multi-platform image is listed as part of it
    // (one row per index, as docker's containerd store), unless it has a
    // name of its own.
    if (names.empty() && !unwrap(store->db().indexes_of(rec.manifest_digest)).empty()) {
      continue;
    }
    bool has_tags = std::any_of(names.begin(), names.end(), [](const Reference& r) { return !r.tag.empty(); });
    if (!lf.keeps_image(has_tags)) {
      continue;
    }
    bool name_filter = filter.has_value() || !lf.reference_globs.empty();
    std::string id = opt.no_trunc ? rec.config_digest : short_id(rec.config_digest);
    std::string created = created_since(rec.created);
    std::string size = size3(unwrap(store->content_size(rec)));
    auto add = [&](std::string repo, std::string tag) {
      rows.push_back({std::move(repo), std::move(tag), rec.manifest_digest, id, created, size, rec.created});
    };
    bool any = false;
    for (const auto& n : names) {
      if (n.tag.empty()) {
        continue;
      }
      if (filter && (filter->name() != n.name() || (!filter->tag.empty() && filter->tag != n.tag))) {
        continue;
      }
      if (!lf.keeps_name(n)) {
        continue;
      }
      add(n.familiar_name(), n.tag);
      any = true;
    }
    if (names.empty() && !name_filter) {
      add("<none>", "<none>");
    } else if (!any && !name_filter && !has_tags) {
      add(names.front().familiar_name(), "<none>");
    }
  }
  if (opt.tree && !opt.quiet) {
    print_tree(*store, rows, opt.no_trunc);
    return;
  }
  if (opt.quiet) {
    for (const auto& r : rows) {
      std::fputs((r.id + "\n").c_str(), stdout);
    }
    return;
  }
  if (opt.format == "json" || opt.format == "{{json .}}") {
    for (const auto& r : rows) {
      ojson j;
      j["Containers"] = "N/A";
      j["CreatedAt"] = r.created_at;
      j["CreatedSince"] = r.created;
      j["Digest"] = opt.digests ? r.digest : "<none>";
      j["ID"] = r.id;
      j["Repository"] = r.repo;
      j["SharedSize"] = "N/A";
      j["Size"] = r.size;
      j["Tag"] = r.tag;
      j["UniqueSize"] = "N/A";
      j["VirtualSize"] = r.size;
      std::fputs((j.dump() + "\n").c_str(), stdout);
    }
    return;
  }
  if (!opt.format.empty() && opt.format != "table") {
    throw CommandError{fmt::format("unsupported --format {} (use table or json)", str::go_quote(opt.format)), 2};
  }
  std::vector<std::vector<std::string>> table;
  if (opt.digests) {
    table.push_back({"REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"});
  } else {
    table.push_back({"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"});
  }
  for (const auto& r : rows) {
    if (opt.digests) {
      table.push_back({r.repo, r.tag, r.digest, r.id, r.created, r.size});
    } else {
      table.push_back({r.repo, r.tag, r.id, r.created, r.size});
    }
  }
  std::fputs(format_table(table).c_str(), stdout);
}

void add_ls(CLI::App* sub, Context& ctx) {
  auto opt = std::make_shared<LsOptions>();
  sub->add_flag("-q,--quiet", opt->quiet, "Only show image IDs");
  sub->add_flag("--digests", opt->digests, "Show digests");
  sub->add_flag("--no-trunc", opt->no_trunc, "Don't truncate output");
  sub->add_option("--format", opt->format, "Format output: table or json");
  sub->add_option("repository", opt->repository, "Only images of this repository[:tag]");
  sub->add_flag("-a,--all", opt->all, "Show all images (imgbuild keeps no intermediate images)");
  sub->add_option("-f,--filter", opt->filters, "Filter: dangling=true|false, reference=PATTERN");
  sub->add_flag("--tree", opt->tree, "List the platforms of multi-platform images below them");
  sub->callback([&ctx, opt]() { run_ls(ctx, *opt); });
}

// ---- inspect -------------------------------------------------------------------

ojson string_list_or_null(const std::optional<std::vector<std::string>>& v) {
  if (!v) {
    return nullptr;
  }
  return ojson(*v);
}

ojson inspect_config(const image::ImageConfig& cfg) {
  image::ContainerConfig c = cfg.config.value_or(image::ContainerConfig{});
  ojson j;
  j["Hostname"] = "";
  j["Domainname"] = "";
  j["User"] = c.user;
  j["AttachStdin"] = false;
  j["AttachStdout"] = false;
  j["AttachStderr"] = false;
  if (!c.exposed_ports.empty()) {
    ojson ports = ojson::object();
    for (const auto& p : c.exposed_ports) {
      ports[p] = ojson::object();
    }
    j["ExposedPorts"] = ports;
  }
  j["Tty"] = false;
  j["OpenStdin"] = false;
  j["StdinOnce"] = false;
  j["Env"] = c.env.empty() ? ojson(nullptr) : ojson(c.env);
  j["Cmd"] = string_list_or_null(c.cmd);
  if (c.healthcheck) {
    j["Healthcheck"] = ojson::parse(nlohmann::json(*c.healthcheck).dump());
  }
  if (c.args_escaped) {
    j["ArgsEscaped"] = true;
  }
  j["Image"] = "";
  if (c.volumes.empty()) {
    j["Volumes"] = nullptr;
  } else {
    ojson vols = ojson::object();
    for (const auto& v : c.volumes) {
      vols[v] = ojson::object();
    }
    j["Volumes"] = vols;
  }
  j["WorkingDir"] = c.working_dir;
  j["Entrypoint"] = string_list_or_null(c.entrypoint);
  j["OnBuild"] = c.on_build.empty() ? ojson(nullptr) : ojson(c.on_build);
  j["Labels"] = c.labels.empty() ? ojson(nullptr) : ojson(c.labels);
  if (!c.stop_signal.empty()) {
    j["StopSignal"] = c.stop_signal;
  }
  if (!c.shell.empty()) {
    j["Shell"] = c.shell;
  }
  return j;
}

std::string rfc3339_utc(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void run_inspect(Context& ctx, const std::vector<std::string>& args, const std::string& format,
                 const std::string& platform_text) {
  auto store = open_store(ctx);
  std::optional<image::Platform> platform = platform_flag(platform_text);
  ojson out = ojson::array();
  std::vector<std::string> missing;
  for (const auto& arg : args) {
    // A multi-platform image: its ID and names are the index's, the rest
    // is the selected platform's image (the host's unless --platform).
    auto rec = store->resolve_target(arg);
    Result<ImageRecord> selected = rec ? store->select_platform(*rec, platform, arg) : rec;
    if (!selected) {
      missing.push_back(selected.error().to_string());
      continue;
    }
    image::LoadedImage img = unwrap(store->load(*selected));
    std::vector<Reference> names = unwrap(store->names_of(rec->manifest_digest));
    ojson tags = ojson::array();
    ojson digests = ojson::array();
    std::set<std::string> repos;
    // RepoDigests: the digest names (an image pulled through an index is
    // named repository@<index digest>), else repository@<manifest digest>.
    for (const auto& n : names) {
      if (!n.digest.empty() && repos.insert(n.familiar_name()).second) {
        digests.push_back(n.familiar_name() + "@" + n.digest);
      }
    }
    for (const auto& n : names) {
      if (!n.tag.empty()) {
        tags.push_back(n.familiar_name() + ":" + n.tag);
      }
      if (repos.insert(n.familiar_name()).second) {
        digests.push_back(n.familiar_name() + "@" + rec->manifest_digest);
      }
    }
    ojson j;
    j["Id"] = rec->config_digest;
    j["RepoTags"] = tags;
    j["RepoDigests"] = digests;
    j["Parent"] = "";
    std::string comment;
    if (!img.config.history.empty()) {
      comment = img.config.history.back().comment;
    }
    j["Comment"] = comment;
    j["Created"] = img.config.created.empty() ? "0001-01-01T00:00:00Z" : img.config.created;
    j["DockerVersion"] = img.config.extra.value("docker_version", "");
    j["Author"] = img.config.author;
    j["Config"] = inspect_config(img.config);
    j["Architecture"] = img.config.architecture;
    if (!img.config.variant.empty()) {
      j["Variant"] = img.config.variant;
    }
    j["Os"] = img.config.os;
    if (!img.config.os_version.empty()) {
      j["OsVersion"] = img.config.os_version;
    }
    j["Size"] = unwrap(store->content_size(*selected));
    j["GraphDriver"] = {{"Data", nullptr}, {"Name", "imgbuild"}};
    j["RootFS"] = {{"Type", img.config.rootfs.type}, {"Layers", img.config.rootfs.diff_ids}};
    j["Metadata"] = {{"LastTagTime", rfc3339_utc(rec->added_at)}};
    out.push_back(j);
  }
  if (format.empty()) {
    std::fputs((out.dump(4) + "\n").c_str(), stdout);
  } else if (format == "json" || format == "{{json .}}") {
    for (const auto& j : out) {
      std::fputs((j.dump() + "\n").c_str(), stdout);
    }
  } else if (format == "{{.Id}}" || format == "{{.ID}}") {
    for (const auto& j : out) {
      std::fputs((j["Id"].get<std::string>() + "\n").c_str(), stdout);
    }
  } else {
    throw CommandError{fmt::format("unsupported --format {} (use json or {{{{.Id}}}})", str::go_quote(format)), 2};
  }
  if (!missing.empty()) {
    throw CommandError{str::join(missing, "\n"), 1};
  }
}

void add_inspect(CLI::App* sub, Context& ctx) {
  auto args = std::make_shared<std::vector<std::string>>();
  auto format = std::make_shared<std::string>();
  auto platform = std::make_shared<std::string>();
  sub->add_option("image", *args, "Images to inspect")->required();
  sub->add_option("-f,--format", *format, "Output: json (one line per image) or {{.Id}}");
  sub->add_option("--platform", *platform,
                  "Platform of a multi-platform image to inspect (os/arch[/variant]; default the host's)");
  sub->callback([&ctx, args, format, platform]() { run_inspect(ctx, *args, *format, *platform); });
}

// ---- history --------------------------------------------------------------------

void run_history(Context& ctx, const std::string& arg, bool no_trunc, bool quiet, bool human,
                 const std::string& platform) {
  auto store = open_store(ctx);
  ImageRecord rec = unwrap(store->resolve(arg, platform_flag(platform)));
  image::LoadedImage img = unwrap(store->load(rec));
  // Sizes of the non-empty history entries come from the layers, in order:
  // their content sizes, as Docker's.
  std::vector<int64_t> layer_sizes;
  for (const auto& d : img.manifest.layers) {
    layer_sizes.push_back(unwrap(store->layer_content_size(d.digest)));
  }
  struct Row {
    std::string created_at, created_by, comment;
    int64_t size = 0;
  };
  std::vector<Row> rows;
  size_t layer_index = 0;
  for (const auto& h : img.config.history) {
    Row r{h.created, h.created_by, h.comment, 0};
    if (!h.empty_layer && layer_index < layer_sizes.size()) {
      r.size = layer_sizes[layer_index++];
    }
    rows.push_back(std::move(r));
  }
  if (img.config.history.empty()) {
    for (int64_t s : layer_sizes) {
      rows.push_back(Row{img.config.created, "", "", s});
    }
  }
  std::reverse(rows.begin(), rows.end());
  std::string id = no_trunc ? rec.config_digest : short_id(rec.config_digest);
  if (quiet) {
    std::fputs((id + "\n").c_str(), stdout);
    return;
  }
  std::vector<std::vector<std::string>> table{{"IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"}};
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string by = str::replace_all(rows[i].created_by, "\t", " ");
    if (!no_trunc && by.size() > 45) {
      by = by.substr(0, 44) + "…";
    }
    std::string created = human ? created_since(rows[i].created_at) : rows[i].created_at;
    std::string size = human ? size3(rows[i].size) : std::to_string(rows[i].size);
    table.push_back({i == 0 ? id : "<missing>", created, by, size, rows[i].comment});
  }
  std::fputs(format_table(table).c_str(), stdout);
}

// history --analyze: the layer report's text form (cli/report.hpp).
void run_analyze(Context& ctx, const std::string& arg, const std::string& platform) {
  auto store = open_store(ctx);
  ImageRecord rec = unwrap(store->resolve(arg, platform_flag(platform)));
  image::ImageAnalysis analysis = unwrap(image::analyze_image(*store, rec));
  std::string name;
  for (const auto& n : unwrap(store->names_of(rec.manifest_digest))) {
    if (!n.tag.empty()) {
      name = n.familiar_name() + ":" + n.tag;
      break;
    }
  }
  std::string text = report_text(report_model(analysis, rec.config_digest, name, nullptr));
  std::fputs(text.c_str(), stdout);
}

void add_history(CLI::App* sub, Context& ctx) {
  struct Opt {
    std::string image;
    bool no_trunc = false;
    bool quiet = false;
    bool human = true;
    bool analyze = false;
    std::string platform;
  };
  auto opt = std::make_shared<Opt>();
  sub->add_option("image", opt->image, "Image")->required();
  sub->add_flag("--analyze", opt->analyze,
                "Per layer: size, files, wasted bytes, largest and duplicate files, and the efficiency");
  sub->add_flag("--no-trunc", opt->no_trunc, "Don't truncate output");
  sub->add_flag("-q,--quiet", opt->quiet, "Only show image IDs");
  sub->add_option("--platform", opt->platform,
                  "Platform of a multi-platform image (os/arch[/variant]; default the host's)");
  sub->add_option("-H,--human", opt->human, "Print sizes and dates in human readable format")->default_val(true);
  sub->callback([&ctx, opt]() {
    if (opt->analyze) {
      run_analyze(ctx, opt->image, opt->platform);
      return;
    }
    run_history(ctx, opt->image, opt->no_trunc, opt->quiet, opt->human, opt->platform);
  });
}

// ---- tag, rmi, prune ---------------------------------------------------------------

void add_tag(CLI::App* sub, Context& ctx) {
  auto src = std::make_shared<std::string>();
  auto dst = std::make_shared<std::string>();
  sub->add_option("source", *src, "SOURCE_IMAGE[:TAG]")->required();
  sub->add_option("target", *dst, "TARGET_IMAGE[:TAG]")->required();
  sub->callback([&ctx, src, dst]() {
    Reference ref = unwrap(image::parse_reference(*dst));
    if (!ref.digest.empty()) {
      throw CommandError{fmt::format("refusing to create a tag with a digest reference: {}", *dst), 1};
    }
    auto store = open_store(ctx);
    unwrap(store->tag(*src, ref));
  });
}

void add_rmi(CLI::App* sub, Context& ctx) {
  auto args = std::make_shared<std::vector<std::string>>();
  auto force = std::make_shared<bool>(false);
  sub->add_option("image", *args, "Images to remove")->required();
  sub->add_flag("-f,--force", *force, "Force removal of the image");
  sub->add_flag("--no-prune")->description("Accepted for docker compatibility");
  sub->callback([&ctx, args, force]() {
    auto store = open_store(ctx, image::StoreUse::freeing);
    std::vector<std::string> errors;
    image::ImagesInUse in_use = images_in_use(*store);
    for (const auto& arg : *args) {
      auto report = store->remove(arg, *force, in_use, layer_dir_remover(*store));
      if (!report) {
        errors.push_back(report.error().to_string());
        continue;
      }
      for (const auto& u : report->untagged) {
        std::fputs(fmt::format("Untagged: {}\n", u).c_str(), stdout);
      }
      for (const auto& d : report->deleted) {
        std::fputs(fmt::format("Deleted: {}\n", d).c_str(), stdout);
      }
    }
    store->restore_reserve();
    if (!errors.empty()) {
      throw CommandError{str::join(errors, "\n"), 1};
    }
  });
}

void add_prune(CLI::App* sub, Context& ctx) {
  auto all = std::make_shared<bool>(false);
  sub->add_flag("-a,--all", *all, "Remove all unused images, not just dangling ones");
  sub->add_flag("-f,--force")->description("Do not prompt for confirmation (imgbuild never prompts)");
  sub->callback([&ctx, all]() {
    auto store = open_store(ctx, image::StoreUse::freeing);
    image::PruneReport report = unwrap(store->prune(*all, images_in_use(*store), layer_dir_remover(*store)));
    store->restore_reserve();
    if (!report.untagged.empty() || !report.deleted.empty()) {
      std::string out = "Deleted Images:\n";
      for (const auto& u : report.untagged) {
        out += "untagged: " + u + "\n";
      }
      for (const auto& d : report.deleted) {
        out += "deleted: " + d + "\n";
      }
      std::fputs((out + "\n").c_str(), stdout);
    }
    for (const auto& name : report.leased) {
      std::fputs(fmt::format("Kept {}: in use by a running build or container\n", name).c_str(), stdout);
    }
    if (report.leased_blobs > 0) {
      std::fputs(fmt::format("Kept {} unreferenced blobs: in use by a running build or container\n",
                             report.leased_blobs)
                     .c_str(),
                 stdout);
    }
    std::fputs(fmt::format("Total reclaimed space: {}\n", size3(static_cast<int64_t>(report.reclaimed))).c_str(),
               stdout);
  });
}

}  // namespace

void register_image_commands(CLI::App& app, Context& ctx) {
  CLI::App* image_cmd = app.add_subcommand("image", "Manage images");
  image_cmd->require_subcommand(1);

  add_ls(app.add_subcommand("images", "List images"), ctx);
  add_ls(image_cmd->add_subcommand("ls", "List images")->alias("list"), ctx);
  add_inspect(app.add_subcommand("inspect", "Display detailed information on images"), ctx);
  add_inspect(image_cmd->add_subcommand("inspect", "Display detailed information on images"), ctx);
  add_history(app.add_subcommand("history", "Show the history of an image"), ctx);
  add_history(image_cmd->add_subcommand("history", "Show the history of an image"), ctx);
  add_tag(app.add_subcommand("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"), ctx);
  add_tag(image_cmd->add_subcommand("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"), ctx);
  add_rmi(app.add_subcommand("rmi", "Remove one or more images"), ctx);
  add_rmi(image_cmd->add_subcommand("rm", "Remove one or more images")->alias("remove"), ctx);
  add_prune(image_cmd->add_subcommand("prune", "Remove unused images"), ctx);
  register_image_io_commands(app, *image_cmd, ctx);
}

}  // namespace imgbuild::cli
