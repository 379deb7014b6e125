#pragma once
// FakeSnapshotter: a Snapshotter for hermetic builder tests (no mounts, no
// root). A view is a plain directory holding a copy of its parents, lowest
// first; its changes are the entries that are new or differ from that copy
// (plus the paths note_written names), copied into an upper directory.
// Deletions are not recorded (no whiteouts: those need mknod). It records
// every prepare and counts the views alive, so a test can check ordering and
// that a failed build ends every view.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "snapshot/snapshotter.hpp"

namespace imgbuild::test {

/// A snapshotter over plain directory copies (see the file comment).
class FakeSnapshotter final : public snapshot::Snapshotter {
public:
  /// Views go under `work_dir`.
  explicit FakeSnapshotter(std::filesystem::path work_dir) : m_work(std::move(work_dir)) {
    std::filesystem::create_directories(m_work);
  }

  std::string_view name() const override { return "fake"; }

  Result<std::unique_ptr<snapshot::View>> prepare(const std::vector<std::filesystem::path>& parents) override {
    std::string id;
    {
      std::lock_guard lock(m_mu);
      id = std::to_string(++m_next);
      m_prepared.push_back(parents);
    }
    std::filesystem::path dir = m_work / id;
    std::error_code ec;
    std::filesystem::create_directories(dir / "root", ec);
    for (const auto& p : parents) {
      std::filesystem::copy(p, dir / "root",
                            std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks |
                                std::filesystem::copy_options::overwrite_existing,
                            ec);
      if (ec) {
        return fail(Errc::io, "fake snapshotter: cannot copy " + p.string() + ": " + ec.message());
      }
    }
    return std::unique_ptr<snapshot::View>(new FakeView(*this, id, dir, parents));
  }

  /// The parents of every prepare, in call order.
  std::vector<std::vector<std::filesystem::path>> prepared() const {
    std::lock_guard lock(m_mu);
    return m_prepared;
  }
  /// Views prepared and not yet committed or removed.
  int live() const { return m_live.load(); }

private:
  // path → a description that changes when the entry does.
  static std::map<std::string, std::string> listing(const std::filesystem::path& root) {
    std::map<std::string, std::string> out;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      std::string rel = it->path().lexically_relative(root).string();
      if (it->is_symlink()) {
        out[rel] = "link " + std::filesystem::read_symlink(it->path(), ec).string();
      } else if (it->is_directory()) {
        out[rel] = "dir";
      } else {
        std::ifstream in(it->path(), std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        out[rel] = "file " + ss.str();
      }
    }
    return out;
  }

  class FakeView final : public snapshot::View {
  public:
    FakeView(FakeSnapshotter& owner, std::string id, std::filesystem::path dir,
             std::vector<std::filesystem::path> parents)
        : m_owner(owner), m_id(std::move(id)), m_dir(std::move(dir)), m_root(m_dir / "root"),
          m_parents(std::move(parents)), m_before(listing(m_root)) {
      ++m_owner.m_live;
    }
    ~FakeView() override { (void)remove(); }

    const std::string& id() const override { return m_id; }
    const std::filesystem::path& root() const override { return m_root; }
    const std::vector<std::filesystem::path>& parents() const override { return m_parents; }

    Result<std::filesystem::path> changes() override {
      std::filesystem::path upper = m_dir / "upper";
      std::error_code ec;
      std::filesystem::remove_all(upper, ec);
      std::filesystem::create_directories(upper, ec);
      for (const auto& [rel, desc] : listing(m_root)) {
        auto was = m_before.find(rel);
        if (was != m_before.end() && was->second == desc && written().count(rel) == 0) {
          continue;
        }
        std::filesystem::path to = upper / rel;
        std::filesystem::create_directories(to.parent_path(), ec);
        if (desc == "dir") {
          std::filesystem::create_directories(to, ec);
        } else {
          std::filesystem::copy(m_root / rel, to, std::filesystem::copy_options::copy_symlinks, ec);
        }
        if (ec) {
          return fail(Errc::io, "fake view: cannot copy " + rel + ": " + ec.message());
        }
      }
      return upper;
    }

    Result<void> commit(const std::filesystem::path& layer_dir) override {
      TRY(std::filesystem::path upper, changes());
      std::error_code ec;
      std::filesystem::rename(upper, layer_dir, ec);
      if (ec) {
        return fail(Errc::io, "fake view: cannot commit to " + layer_dir.string() + ": " + ec.message());
      }
      return remove();
    }

    Result<void> remove() override {
      if (!m_ended) {
        m_ended = true;
        std::error_code ec;
        std::filesystem::remove_all(m_dir, ec);
        --m_owner.m_live;
      }
      return ok();
    }

  private:
    FakeSnapshotter& m_owner;
    std::string m_id;
    std::filesystem::path m_dir;
    std::filesystem::path m_root;
    std::vector<std::filesystem::path> m_parents;
    std::map<std::string, std::string> m_before;
    bool m_ended = false;
  };

  std::filesystem::path m_work;
  mutable std::mutex m_mu;
  int m_next = 0;
  std::vector<std::vector<std::filesystem::path>> m_prepared;
  std::atomic<int> m_live{0};
};

}  // namespace imgbuild::test
