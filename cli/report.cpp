#include "cli/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::cli {

namespace {

using nlohmann::json;

constexpr size_t k_listed = 10;         // wasted files, duplicates, largest files listed
constexpr size_t k_treemap_files = 40;  // files per layer drawn in the treemap

std::string size_text(int64_t bytes) { return str::human_size(bytes < 0 ? 0 : static_cast<uint64_t>(bytes), 3); }

std::string percent(double v) { return fmt::format("{:.1f}%", v * 100.0); }

json file_json(const image::AnalyzedFile& f) { return {{"path", f.path}, {"size", f.size}, {"layer", f.layer}}; }

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// One line for a table cell: a heredoc's line breaks shown as "\n".
std::string one_line(const std::string& s) { return str::replace_all(str::replace_all(s, "\n", "\\n"), "\t", " "); }

std::string clip(const std::string& s, size_t n) { return s.size() > n ? s.substr(0, n - 3) + "..." : s; }

// ---- treemap ---------------------------------------------------------------

struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
};

struct Item {
  double weight = 0;
  size_t index = 0;
};

// Lays `items` (weights > 0) out in `r`: the list is split where the two
// halves weigh most nearly the same, along the longer side, recursively.
void split_layout(const std::vector<Item>& items, size_t begin, size_t end, Rect r, std::vector<Rect>& out) {
  if (begin >= end) {
    return;
  }
  if (end - begin == 1) {
    out[items[begin].index] = r;
    return;
  }
  double total = 0;
  for (size_t i = begin; i < end; ++i) {
    total += items[i].weight;
  }
  double acc = 0;
  size_t mid = begin + 1;
  double best = total;
  for (size_t i = begin; i + 1 < end; ++i) {
    acc += items[i].weight;
    double diff = std::abs(total - 2 * acc);
    if (diff < best) {
      best = diff;
      mid = i + 1;
    }
  }
  double left = 0;
  for (size_t i = begin; i < mid; ++i) {
    left += items[i].weight;
  }
  double f = total > 0 ? left / total : 0.5;
  if (r.w >= r.h) {
    split_layout(items, begin, mid, Rect{r.x, r.y, r.w * f, r.h}, out);
    split_layout(items, mid, end, Rect{r.x + r.w * f, r.y, r.w * (1 - f), r.h}, out);
  } else {
    split_layout(items, begin, mid, Rect{r.x, r.y, r.w, r.h * f}, out);
    split_layout(items, mid, end, Rect{r.x, r.y + r.h * f, r.w, r.h * (1 - f)}, out);
  }
}

std::vector<Rect> layout(const std::vector<double>& weights, Rect r) {
  std::vector<Item> items;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] > 0) {
      items.push_back(Item{weights[i], i});
    }
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.weight > b.weight; });
  std::vector<Rect> out(weights.size());
  split_layout(items, 0, items.size(), r, out);
  return out;
}

// The treemap's box, in abstract units; cells are placed in percent of it.
constexpr double k_box_w = 1000;
constexpr double k_box_h = 480;

std::string cell_style(const Rect& r) {
  return fmt::format("left:{:.3f}%;top:{:.3f}%;width:{:.3f}%;height:{:.3f}%", r.x / k_box_w * 100, r.y / k_box_h * 100,
                     r.w / k_box_w * 100, r.h / k_box_h * 100);
}

std::string layer_color(size_t layer, size_t count) {
  size_t hue = count == 0 ? 0 : (layer * 360 / std::max<size_t>(count, 1) + 200) % 360;
  return fmt::format("hsl({},55%,62%)", hue);
}

std::string treemap_html(const json& model) {
  const json& layers = model["layers"];
  const json& files = model["treemap"];
  std::vector<double> weights(layers.size(), 0);
  std::vector<std::vector<json>> per_layer(layers.size());
  for (const auto& f : files) {
    size_t l = f["layer"].get<size_t>();
    if (l < weights.size()) {
      weights[l] += f["size"].get<double>();
      per_layer[l].push_back(f);
    }
  }
  std::vector<Rect> outer = layout(weights, Rect{0, 0, k_box_w, k_box_h});
  std::string out = "<div id=\"treemap\">\n";
  for (size_t l = 0; l < layers.size(); ++l) {
    if (weights[l] <= 0) {
      continue;
    }
    const Rect& lr = outer[l];
    out += fmt::format("<div class=\"layer-box\" data-layer=\"{}\" style=\"{}\" title=\"layer {}: {}\">\n", l,
                       cell_style(lr), l, html_escape(size_text(static_cast<int64_t>(weights[l]))));
    // The layer's biggest files, the rest as one cell.
    std::vector<json>& fl = per_layer[l];
    std::stable_sort(fl.begin(), fl.end(),
                     [](const json& a, const json& b) { return a["size"].get<int64_t>() > b["size"].get<int64_t>(); });
    std::vector<double> fw;
    std::vector<std::string> labels;
    double rest = 0;
    size_t rest_count = 0;
    for (size_t i = 0; i < fl.size(); ++i) {
      if (i < k_treemap_files) {
        fw.push_back(fl[i]["size"].get<double>());
        labels.push_back(fl[i]["path"].get<std::string>());
      } else {
        rest += fl[i]["size"].get<double>();
        ++rest_count;
      }
    }
    if (rest > 0) {
      fw.push_back(rest);
      labels.push_back(fmt::format("{} more files", rest_count));
    }
    std::vector<Rect> inner = layout(fw, lr);
    for (size_t i = 0; i < fw.size(); ++i) {
      if (fw[i] <= 0) {
        continue;
      }
      Rect rel{inner[i].x - lr.x, inner[i].y - lr.y, inner[i].w, inner[i].h};
      // Positions inside the layer box, in percent of it.
      std::string style = fmt::format("left:{:.3f}%;top:{:.3f}%;width:{:.3f}%;height:{:.3f}%;background:{}",
                                      lr.w > 0 ? rel.x / lr.w * 100 : 0, lr.h > 0 ? rel.y / lr.h * 100 : 0,
                                      lr.w > 0 ? rel.w / lr.w * 100 : 0, lr.h > 0 ? rel.h / lr.h * 100 : 0,
                                      layer_color(l, layers.size()));
      std::string title = labels[i] + " (" + size_text(static_cast<int64_t>(fw[i])) + ", layer " + std::to_string(l) + ")";
      bool big = rel.w > 70 && rel.h > 16;
      out += fmt::format("<div class=\"cell\" data-layer=\"{}\" data-bytes=\"{}\" style=\"{}\" title=\"{}\">{}</div>\n",
                         l, static_cast<int64_t>(fw[i]), style, html_escape(title),
                         big ? html_escape(clip(labels[i], 40)) : "");
    }
    out += "</div>\n";
  }
  out += "</div>\n<div id=\"legend\">";
  for (size_t l = 0; l < layers.size(); ++l) {
    out += fmt::format("<span class=\"key\" data-layer=\"{}\"><i style=\"background:{}\"></i>layer {}</span> ", l,
                       layer_color(l, layers.size()), l);
  }
  out += "</div>\n";
  return out;
}

}  // namespace

json critical_path(const builder::BuiltImage& build) {
  std::map<int, const builder::BuiltImage::StageTiming*> by_index;
  for (const auto& s : build.stages) {
    by_index[s.index] = &s;
  }
  std::vector<json> chain;
  std::set<int> seen;
  int at = build.target;
  while (by_index.count(at) != 0 && seen.insert(at).second) {
    const auto* s = by_index[at];
    chain.push_back({{"stage", s->name}, {"seconds", s->finished - s->started}});
    int next = -1;
    double latest = -1;
    for (int n : s->needs) {
      if (by_index.count(n) != 0 && by_index[n]->finished > latest) {
        latest = by_index[n]->finished;
        next = n;
      }
    }
    at = next;
  }
  std::reverse(chain.begin(), chain.end());
  double total = 0;
  for (const auto& c : chain) {
    total += c["seconds"].get<double>();
  }
  return {{"stages", chain}, {"seconds", total}};
}

json report_model(const image::ImageAnalysis& a, const std::string& image_id, const std::string& name,
                  const builder::BuiltImage* build) {
  json m;
  m["image"] = image_id;
  m["name"] = name;
  m["total"] = a.total;
  m["visible"] = a.visible;
  m["wasted"] = a.wasted;
  m["efficiency"] = a.efficiency;
  json layers = json::array();
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const auto& l = a.layers[i];
    json largest = json::array();
    for (const auto& f : l.largest) {
      largest.push_back(file_json(f));
    }
    layers.push_back({{"index", i},
                      {"created_by", l.created_by},
                      {"diff_id", l.diff_id},
                      {"size", l.content_size},
                      {"files", l.files},
                      {"wasted", l.wasted},
                      {"largest", largest}});
  }
  m["layers"] = layers;
  json wasted = json::array();
  for (size_t i = 0; i < a.wasted_files.size() && i < k_listed; ++i) {
    const auto& w = a.wasted_files[i];
    wasted.push_back(
        {{"path", w.path}, {"layer", w.layer}, {"size", w.size}, {"reason", w.reason}, {"by_layer", w.by_layer}});
  }
  m["wasted_files"] = wasted;
  json dups = json::array();
  int64_t dup_bytes = 0;
  for (const auto& d : a.duplicates) {
    dup_bytes += d.extra_bytes();
  }
  for (size_t i = 0; i < a.duplicates.size() && i < k_listed; ++i) {
    const auto& d = a.duplicates[i];
    json copies = json::array();
    for (const auto& c : d.copies) {
      copies.push_back(file_json(c));
    }
    dups.push_back({{"digest", d.digest}, {"size", d.size}, {"extra", d.extra_bytes()}, {"copies", copies}});
  }
  m["duplicates"] = dups;
  m["duplicate_bytes"] = dup_bytes;
  std::vector<image::AnalyzedFile> biggest = a.final_files;
  std::stable_sort(biggest.begin(), biggest.end(),
                   [](const image::AnalyzedFile& x, const image::AnalyzedFile& y) { return x.size > y.size; });
  json largest = json::array();
  for (size_t i = 0; i < biggest.size() && i < k_listed; ++i) {
    largest.push_back(file_json(biggest[i]));
  }
  m["largest_files"] = largest;
  json tree = json::array();
  for (const auto& f : a.final_files) {
    tree.push_back(file_json(f));
  }
  m["treemap"] = tree;
  if (build != nullptr) {
    json steps = json::array();
    for (const auto& s : build->steps) {
      json js = {{"name", s.name}, {"stage", s.stage_name}, {"seconds", s.seconds}, {"cached", s.cached}};
      if (!s.cached) {
        js["cache_reason"] = s.cache_reason;
      }
      steps.push_back(js);
    }
    m["steps"] = steps;
    m["critical_path"] = critical_path(*build);
  }
  return m;
}

std::string report_text(const json& m) {
  std::string out;
  std::string who = m["name"].get<std::string>().empty() ? m["image"].get<std::string>()
                                                         : m["name"].get<std::string>() + " (" +
                                                               m["image"].get<std::string>().substr(0, 19) + ")";
  out += fmt::format("Image {}: {} layers, {} of content, {} shown, {} wasted, efficiency {}\n", who,
                     m["layers"].size(), size_text(m["total"]), size_text(m["visible"]), size_text(m["wasted"]),
                     percent(m["efficiency"].get<double>()));
  out += "\nLAYER   SIZE       FILES    WASTED     CREATED BY\n";
  for (const auto& l : m["layers"]) {
    out += fmt::format("{:<7} {:<10} {:<8} {:<10} {}\n", l["index"].get<size_t>(), size_text(l["size"]),
                       l["files"].get<int64_t>(), size_text(l["wasted"]),
                       clip(one_line(l["created_by"].get<std::string>()), 70));
  }
  if (!m["largest_files"].empty()) {
    out += "\nLargest files:\n";
    for (const auto& f : m["largest_files"]) {
      out += fmt::format("  {:<10} layer {:<3} {}\n", size_text(f["size"]), f["layer"].get<int>(),
                         f["path"].get<std::string>());
    }
  }
  if (!m["wasted_files"].empty()) {
    out += "\nWasted (stored but not shown in the final filesystem):\n";
    for (const auto& w : m["wasted_files"]) {
      out += fmt::format("  {:<10} layer {:<3} {} ({} in layer {})\n", size_text(w["size"]), w["layer"].get<int>(),
                         w["path"].get<std::string>(), w["reason"].get<std::string>(), w["by_layer"].get<int>());
    }
  }
  if (!m["duplicates"].empty()) {
    out += fmt::format("\nDuplicate files across layers ({} extra):\n", size_text(m["duplicate_bytes"]));
    for (const auto& d : m["duplicates"]) {
      std::vector<std::string> where;
      for (const auto& c : d["copies"]) {
        where.push_back(fmt::format("{} (layer {})", c["path"].get<std::string>(), c["layer"].get<int>()));
      }
      out += fmt::format("  {} x {}: {}\n", d["copies"].size(), size_text(d["size"]), str::join(where, ", "));
    }
  }
  if (m.contains("steps")) {
    out += "\nSTEP TIME   CACHE   STEP\n";
    for (const auto& s : m["steps"]) {
      std::string cache = s["cached"].get<bool>() ? "hit" : "miss";
      std::string reason = s.contains("cache_reason") ? " (" + s["cache_reason"].get<std::string>() + ")" : "";
      out += fmt::format("{:<9.1f}  {:<7} {}{}\n", s["seconds"].get<double>(), cache,
                         one_line(s["name"].get<std::string>()), one_line(reason));
    }
    std::vector<std::string> path;
    for (const auto& c : m["critical_path"]["stages"]) {
      path.push_back(fmt::format("{} ({:.1f}s)", c["stage"].get<std::string>(), c["seconds"].get<double>()));
    }
    out += fmt::format("\nCritical path: {} = {:.1f}s\n", str::join(path, " -> "),
                       m["critical_path"]["seconds"].get<double>());
  }
  return out;
}

std::string report_html(const json& m) {
  std::string title = m["name"].get<std::string>().empty() ? m["image"].get<std::string>() : m["name"].get<std::string>();
  std::string out;
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<title>imgbuild report: " + html_escape(title) + "</title>\n";
  out += R"(<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: left; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, monospace; }
#treemap { position: relative; width: 100%; max-width: 1000px; aspect-ratio: 1000 / 480; border: 1px solid #888;
           overflow: hidden; }
.layer-box { position: absolute; box-sizing: border-box; border: 2px solid #fff; }
.cell { position: absolute; box-sizing: border-box; border: 1px solid rgba(255,255,255,.7); overflow: hidden;
        font: 11px ui-monospace, monospace; padding: 1px 3px; white-space: nowrap; color: #111; }
.layer-box.dim .cell { opacity: .25; }
#legend .key { margin-right: 12px; } #legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
tr.layer:hover { background: #f3f3f3; }
.miss { color: #a33; } .hit { color: #282; }
</style>
</head>
<body>
)";
  out += "<h1>imgbuild report: " + html_escape(title) + "</h1>\n";
  out += fmt::format(
      "<p id=\"summary\">Image <code>{}</code>: <span id=\"layer-count\">{}</span> layers, "
      "<span id=\"total\" data-bytes=\"{}\">{}</span> of content, <span id=\"visible\" data-bytes=\"{}\">{}</span> "
      "shown, <span id=\"wasted\" data-bytes=\"{}\">{}</span> wasted, efficiency <span id=\"efficiency\" "
      "data-value=\"{:.6f}\">{}</span>.</p>\n",
      html_escape(m["image"].get<std::string>()), m["layers"].size(), m["total"].get<int64_t>(), size_text(m["total"]),
      m["visible"].get<int64_t>(), size_text(m["visible"]), m["wasted"].get<int64_t>(), size_text(m["wasted"]),
      m["efficiency"].get<double>(), percent(m["efficiency"].get<double>()));
  out += "<h2>Layers</h2>\n<table id=\"layers\">\n<tr><th class=\"num\">Layer</th><th class=\"num\">Size</th>"
         "<th class=\"num\">Files</th><th class=\"num\">Wasted</th><th>Largest files</th><th>Created by</th></tr>\n";
  for (const auto& l : m["layers"]) {
    std::vector<std::string> big;
    for (const auto& f : l["largest"]) {
      big.push_back(html_escape(f["path"].get<std::string>()) + " (" + size_text(f["size"]) + ")");
    }
    out += fmt::format(
        "<tr class=\"layer\" data-layer=\"{0}\"><td class=\"num\">{0}</td><td class=\"num size\" data-bytes=\"{1}\">{2}"
        "</td><td class=\"num files\">{3}</td><td class=\"num wasted\" data-bytes=\"{4}\">{5}</td><td>{6}</td>"
        "<td><code>{7}</code></td></tr>\n",
        l["index"].get<size_t>(), l["size"].get<int64_t>(), size_text(l["size"]), l["files"].get<int64_t>(),
        l["wasted"].get<int64_t>(), size_text(l["wasted"]), str::join(big, "<br>"),
        html_escape(clip(one_line(l["created_by"].get<std::string>()), 160)));
  }
  out += "</table>\n";
  out += "<h2>Final filesystem by layer</h2>\n" + treemap_html(m);
  out += "<h2>Wasted bytes</h2>\n";
  if (m["wasted_files"].empty()) {
    out += "<p id=\"no-waste\">Nothing: every byte a layer stores is in the final filesystem.</p>\n";
  } else {
    out += "<table id=\"wasted-files\">\n<tr><th class=\"num\">Size</th><th class=\"num\">Layer</th><th>Path</th>"
           "<th>Why</th></tr>\n";
    for (const auto& w : m["wasted_files"]) {
      out += fmt::format("<tr><td class=\"num\" data-bytes=\"{}\">{}</td><td class=\"num\">{}</td><td><code>{}</code>"
                         "</td><td>{} in layer {}</td></tr>\n",
                         w["size"].get<int64_t>(), size_text(w["size"]), w["layer"].get<int>(),
                         html_escape(w["path"].get<std::string>()), html_escape(w["reason"].get<std::string>()),
                         w["by_layer"].get<int>());
    }
    out += "</table>\n";
  }
  out += fmt::format("<h2>Duplicate files across layers (<span id=\"duplicate-bytes\" data-bytes=\"{}\">{}</span> "
                     "extra)</h2>\n",
                     m["duplicate_bytes"].get<int64_t>(), size_text(m["duplicate_bytes"]));
  if (!m["duplicates"].empty()) {
    out += "<table id=\"duplicates\">\n<tr><th class=\"num\">Copies</th><th class=\"num\">Size</th><th>Where</th></tr>\n";
    for (const auto& d : m["duplicates"]) {
      std::vector<std::string> where;
      for (const auto& c : d["copies"]) {
        where.push_back(fmt::format("<code>{}</code> (layer {})", html_escape(c["path"].get<std::string>()),
                                    c["layer"].get<int>()));
      }
      out += fmt::format("<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
                         d["copies"].size(), size_text(d["size"]), str::join(where, ", "));
    }
    out += "</table>\n";
  }
  if (m.contains("steps")) {
    out += "<h2>Steps</h2>\n<table id=\"steps\">\n<tr><th class=\"num\">Time</th><th>Cache</th><th>Step</th>"
           "<th>Why it ran</th></tr>\n";
    for (const auto& s : m["steps"]) {
      bool hit = s["cached"].get<bool>();
      out += fmt::format("<tr class=\"step\" data-cached=\"{}\"><td class=\"num\">{:.1f}s</td><td class=\"{}\">{}</td>"
                         "<td><code>{}</code></td><td>{}</td></tr>\n",
                         hit ? "true" : "false", s["seconds"].get<double>(), hit ? "hit" : "miss",
                         hit ? "hit" : "miss", html_escape(one_line(s["name"].get<std::string>())),
                         html_escape(s.value("cache_reason", "")));
    }
    out += "</table>\n<h2>Critical path</h2>\n<ol id=\"critical-path\">\n";
    for (const auto& c : m["critical_path"]["stages"]) {
      out += fmt::format("<li>{} ({:.1f}s)</li>\n", html_escape(c["stage"].get<std::string>()),
                         c["seconds"].get<double>());
    }
    out += fmt::format("</ol>\n<p>Total: {:.1f}s</p>\n", m["critical_path"]["seconds"].get<double>());
  }
  // Hovering a layer's row or legend key dims the other layers' cells.
  out += R"(<script>
(function () {
  var boxes = document.querySelectorAll('.layer-box');
  function focus(layer) {
    boxes.forEach(function (b) { b.classList.toggle('dim', layer !== null && b.dataset.layer !== layer); });
  }
  document.querySelectorAll('tr.layer, #legend .key').forEach(function (el) {
    el.addEventListener('mouseenter', function () { focus(el.dataset.layer); });
    el.addEventListener('mouseleave', function () { focus(null); });
  });
  document.body.dataset.ready = 'true';
})();
</script>
</body>
</html>
)";
  return out;
}

}  // namespace imgbuild::cli
