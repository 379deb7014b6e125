#include "builder/step_cache.hpp"

#include <fstream>

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

Result<std::string> StepCache::explain(const std::string& parent, int position, const StepKey& step,
                                       const std::set<std::string>& args) {
  TRY(auto prev, m_db->previous(parent, position));
  if (!prev) {
    return std::string();
  }
  nlohmann::json before = nlohmann::json::parse(prev->inputs, nullptr, false);
  if (before.is_discarded()) {
    return std::string("the previous record is unreadable");
  }
  return explain_miss(before, step.inputs, args);
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
