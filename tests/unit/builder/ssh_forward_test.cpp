// The SSH agent relay: its socket's owner and mode, and bytes both ways.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <thread>

#include "builder/ssh_forward.hpp"
#include "support/scratch_dir.hpp"

using imgbuild::builder::SshForwarder;
using imgbuild::test::ScratchDir;

namespace {

int unix_socket_at(const std::filesystem::path& p, bool listen_on_it) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, p.c_str(), sizeof addr.sun_path - 1);
  if (listen_on_it) {
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 4) == 0);
  } else {
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  return fd;
}

}  // namespace

TEST_CASE("ssh forward: the step's socket has the mount's owner and mode and relays both ways", "[builder]") {
  ScratchDir dir;
  std::filesystem::path agent = dir.path() / "agent";
  int listener = unix_socket_at(agent, true);
  // The "agent" answers each request with the bytes reversed.
  std::thread agent_thread([listener] {
    int c = ::accept(listener, nullptr, nullptr);
    char buf[64];
    ssize_t n = ::read(c, buf, sizeof buf);
    std::string reply(buf, static_cast<size_t>(n > 0 ? n : 0));
    std::string reversed(reply.rbegin(), reply.rend());
    (void)::write(c, reversed.data(), reversed.size());
    ::close(c);
  });
  std::filesystem::create_directories(dir.path() / "step");
  {
    bool root = ::geteuid() == 0;
    uid_t uid = root ? 1000 : ::geteuid();
    gid_t gid = root ? 29 : ::getegid();
    auto f = SshForwarder::start(agent, dir.path() / "step", uid, gid, 0640);
    REQUIRE(f);
    struct stat st {};
    REQUIRE(::stat((*f)->path().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(st.st_uid == uid);
    CHECK(st.st_gid == gid);
    int c = unix_socket_at((*f)->path(), false);
    REQUIRE(::write(c, "ping", 4) == 4);
    char buf[16] = {};
    ssize_t n = ::read(c, buf, sizeof buf);
    CHECK(std::string(buf, static_cast<size_t>(n > 0 ? n : 0)) == "gnip");
    ::close(c);
    agent_thread.join();
    std::filesystem::path sock = (*f)->path();
    f->reset();
    CHECK_FALSE(std::filesystem::exists(sock));
  }
  ::close(listener);
}
