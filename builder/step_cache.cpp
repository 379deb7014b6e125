#include "builder/step_cache.hpp"

#include <fstream>

#include <fmt/format.h>

namespace imgbuild::builder {

namespace fsys = std::filesystem;

Result<std::unique_ptr<StepCache>> StepCache::open(const fsys::path& meta_db, std::string keys_dir) {
  TRY(auto db, cache::CacheDb::open(meta_db));
  TRY(auto index, cache::StatIndex::load(*db));
  if (!keys_dir.empty()) {
    std::error_code ec;
    fsys::create_directories(keys_dir, ec);
    if (ec) {
      return fail(Errc::io, "cannot create the cache-keys directory " + keys_dir + ": " + ec.message());
    }
  }
  return std::unique_ptr<StepCache>(new StepCache(std::move(db), std::move(index), std::move(keys_dir)));
}

Result<std::optional<cache::CacheRecord>> StepCache::lookup(const std::string& key,
                                                            const std::function<bool(const std::string&)>& has_blob) {
  TRY(auto rec, m_db->get(key));
  if (rec) {
    TRY_VOID(hold(*rec));  // first: a blob still there after this stays
  }
  if (rec && rec->has_layer() && !has_blob(rec->layer.blob_digest)) {
    rec.reset();
  }
  if (!rec && m_io != nullptr && m_content != nullptr) {
    TRY(auto fetched, m_io->fetch(key, *m_content, *m_db));
    if (fetched) {
      TRY_VOID(hold(*fetched));
    }
    return fetched;
  }
  return rec;
}

Result<void> StepCache::hold(const cache::CacheRecord& record) {
  if (m_lease == nullptr) {
    return ok();
  }
  std::vector<image::LeaseEntry> entries = {{image::LeaseKind::record, record.key}};
  if (record.has_layer()) {
    entries.push_back({image::LeaseKind::blob, record.layer.blob_digest});
    entries.push_back({image::LeaseKind::layer, record.layer.diff_id});
  }
  return m_lease->hold(entries);
}

Result<void> StepCache::load_traces(const std::string& identity) {
  m_identity = identity;
  TRY(auto texts, m_db->build_traces(identity));
  for (const auto& t : texts) {
    nlohmann::json j = nlohmann::json::parse(t, nullptr, false);
    if (!j.is_discarded() && j.value("version", 0) == 1 && j.contains("stages") && j["stages"].is_object()) {
      m_traces.push_back(std::move(j));
    }
  }
  return ok();
}

Result<MissReason> StepCache::explain(const std::string& stage, const std::vector<TraceStep>& current,
                                      const std::string& base_reason, const std::set<std::string>& args) {
  if (m_traces.empty()) {
    return MissReason{"first build", true};
  }
  // The closest earlier chain of this stage: the longest common prefix of
  // keys, the newest on a tie.
  const nlohmann::json* best = nullptr;
  size_t best_len = 0;
  for (const auto& t : m_traces) {
    const nlohmann::json& stages = t.at("stages");
    if (!stages.contains(stage) || !stages.at(stage).is_array()) {
      continue;
    }
    const nlohmann::json& steps = stages.at(stage);
    size_t n = 0;
    while (n < steps.size() && n < current.size() && steps[n].value("key", "") == current[n].key &&
           steps[n].value("position", -2) == current[n].position) {
      ++n;
    }
    if (best == nullptr || n > best_len) {
      best = &steps;
      best_len = n;
    }
  }
  if (best == nullptr) {
    return MissReason{fmt::format("stage {} is new since the earlier builds", stage), false};
  }
  if (best_len >= current.size()) {
    return MissReason{"not in the cache", false};
  }
  const TraceStep& cur = current[best_len];
  std::string text = cur.inputs.is_object() ? cur.inputs.value("instruction", "") : "";
  if (cur.position < 0) {
    return MissReason{base_reason.empty() ? "base image changed" : base_reason, false};
  }
  if (best_len >= best->size() || (*best)[best_len].value("position", -2) != cur.position) {
    return MissReason{fmt::format("{}: a step the earlier build did not have", text), false};
  }
  TRY(auto prev, m_db->get((*best)[best_len].value("key", "")));
  if (!prev) {
    return MissReason{fmt::format("{}: inputs changed (the earlier build's record was pruned)", text), false};
  }
  nlohmann::json before = nlohmann::json::parse(prev->inputs, nullptr, false);
  if (before.is_discarded()) {
    return MissReason{"the earlier build's record is unreadable", false};
  }
  return MissReason{explain_miss(before, cur.inputs, args), false};
}

Result<void> StepCache::save_trace(const std::map<std::string, std::vector<TraceStep>>& stages, int64_t now_sec) {
  nlohmann::json j = {{"version", 1}, {"stages", nlohmann::json::object()}};
  for (const auto& [name, steps] : stages) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : steps) {
      list.push_back({{"position", s.position}, {"key", s.key}});
    }
    j["stages"][name] = std::move(list);
  }
  return m_db->put_build_trace(m_identity, now_sec, j.dump(), k_kept_traces);
}

Result<void> StepCache::record(const cache::CacheRecord& record, const std::function<Result<void>()>& publish) {
  TRY_VOID(hold(record));  // outside put()'s write transaction (image/lease.hpp)
  TRY_VOID(m_db->put(record, publish));
  if (m_io != nullptr) {
    m_io->note_key(record.key);
  }
  return ok();
}

void StepCache::used(const std::string& key) {
  if (m_io != nullptr) {
    m_io->note_key(key);
  }
  std::lock_guard lock(m_mu);
  m_used.push_back(key);
}

void StepCache::debug(const std::string& name, const StepKey& step) {
  if (m_keys_dir.empty()) {
    return;
  }
  std::ofstream out(fsys::path(m_keys_dir) / (name + ".txt"), std::ios::binary);
  out << "key: " << step.key << "\n" << step.transcript << "inputs: " << step.inputs.dump(2) << "\n";
}

Result<void> StepCache::finish(int64_t now_sec) {
  std::vector<std::string> used;
  {
    std::lock_guard lock(m_mu);
    used.swap(m_used);
  }
  TRY_VOID(m_db->touch(used, now_sec));
  return m_index.save(*m_db, now_sec * 1'000'000'000);
}

}  // namespace imgbuild::builder
