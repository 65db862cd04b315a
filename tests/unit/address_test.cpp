// common/address.h: the text forms of transport addresses, and listening and connecting on
// unix sockets. Nothing here opens a vsock socket: a test host may have no vsock at all.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support/harness.h"
#include "common/address.h"

using namespace enclavefs;
using namespace std::string_literals;

namespace {

using ScratchDir = enclavefs::test::TempDir;

Address unixAddress(const std::string& path) {
  Address a;
  a.family = Address::Family::unix_socket;
  a.path = path;
  return a;
}

bool isSocket(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// The error parseAddress gives for `text`; fails the test if it parses.
std::string parseError(std::string_view text) {
  auto parsed = parseAddress(text);
  REQUIRE_FALSE(parsed.ok());
  return parsed.error();
}

// Leaves a socket file behind, as a server that died without cleaning up would.
void makeStaleSocket(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  // Closed without listen or unlink: the file stays and nobody answers on it.
}

}  // namespace

// ---- parsing --------------------------------------------------------------------------------

TEST_CASE("a unix address keeps everything after 'unix:' as the socket path") {
  auto a = parseAddress("unix:/run/enclavefs/host.sock");
  REQUIRE(a.ok());
  CHECK(a->family == Address::Family::unix_socket);
  CHECK(a->path == "/run/enclavefs/host.sock");
  CHECK(a->toString() == "unix:/run/enclavefs/host.sock");

  auto relative = parseAddress("unix:sock");
  REQUIRE(relative.ok());
  CHECK(relative->path == "sock");

  auto colons = parseAddress("unix:/tmp/a:b");
  REQUIRE(colons.ok());
  CHECK(colons->path == "/tmp/a:b");
}

TEST_CASE("a vsock address gives the CID and port as numbers") {
  auto a = parseAddress("vsock:3:5000");
  REQUIRE(a.ok());
  CHECK(a->family == Address::Family::vsock);
  CHECK(a->cid == 3);
  CHECK(a->port == 5000);
  CHECK(a->toString() == "vsock:3:5000");

  auto max = parseAddress("vsock:4294967295:4294967295");
  REQUIRE(max.ok());
  CHECK(max->cid == 4294967295u);
  CHECK(max->port == 4294967295u);
}

TEST_CASE("an address round-trips through toString and parseAddress") {
  for (const char* text : {"unix:/tmp/x.sock", "vsock:16:1234", "vsock:0:0"}) {
    auto a = parseAddress(text);
    REQUIRE(a.ok());
    CHECK(a->toString() == text);
    auto again = parseAddress(a->toString());
    REQUIRE(again.ok());
    CHECK(again->family == a->family);
    CHECK(again->path == a->path);
    CHECK(again->cid == a->cid);
    CHECK(again->port == a->port);
  }
}

TEST_CASE("an empty unix socket path is refused and the error says so") {
  auto e = parseError("unix:");
  CHECK(e.find("'unix:'") != std::string::npos);
  CHECK(e.find("empty") != std::string::npos);
}

TEST_CASE("a unix socket path that does not fit sun_path is refused, one that does is kept") {
  constexpr std::size_t kMax = sizeof(sockaddr_un{}.sun_path) - 1;  // room for the NUL
  auto fits = parseAddress("unix:/" + std::string(kMax - 1, 'a'));
  REQUIRE(fits.ok());
  CHECK(fits->path.size() == kMax);

  auto e = parseError("unix:/" + std::string(kMax, 'a'));
  CHECK(e.find("longer than " + std::to_string(kMax)) != std::string::npos);
}

TEST_CASE("a unix socket path containing NUL is refused") {
  auto e = parseError("unix:/tmp/a\0b"s);
  CHECK(e.find("NUL") != std::string::npos);
}

TEST_CASE("a vsock address without a port is refused as not CID:PORT") {
  for (const char* text : {"vsock:3", "vsock:", "vsock:35000"}) {
    CAPTURE(text);
    auto e = parseError(text);
    CHECK(e.find("'" + std::string(text) + "'") != std::string::npos);
    CHECK(e.find("vsock:CID:PORT") != std::string::npos);
  }
}

TEST_CASE("a vsock CID that is not a decimal number is refused naming the CID") {
  for (const char* text : {"vsock:x:1", "vsock::1", "vsock:-1:1", "vsock:+3:1", "vsock: 3:1",
                           "vsock:0x3:1", "vsock:4294967296:1", "vsock:3.0:1"}) {
    CAPTURE(text);
    auto e = parseError(text);
    CHECK(e.find("'" + std::string(text) + "'") != std::string::npos);
    CHECK(e.find("CID") != std::string::npos);
  }
}

TEST_CASE("a vsock port that is not a decimal number is refused naming the port") {
  for (const char* text : {"vsock:3:", "vsock:3:x", "vsock:3:-1", "vsock:3:5000 ",
                           "vsock:3:4294967296", "vsock:3:1:2", "vsock:3:1e3"}) {
    CAPTURE(text);
    auto e = parseError(text);
    CHECK(e.find("'" + std::string(text) + "'") != std::string::npos);
    CHECK(e.find("port") != std::string::npos);
  }
}

TEST_CASE("an unknown scheme is refused and the error names the schemes that exist") {
  for (const char* text : {"tcp:1", "", "/tmp/sock", "UNIX:/tmp/sock", "vsock3:1", " unix:/x"}) {
    CAPTURE(text);
    auto e = parseError(text);
    CHECK(e.find("'" + std::string(text) + "'") != std::string::npos);
    CHECK(e.find("unix:") != std::string::npos);
    CHECK(e.find("vsock:") != std::string::npos);
  }
}

// ---- listening and connecting ---------------------------------------------------------------

TEST_CASE("listenOn creates a unix socket that connectTo reaches") {
  ScratchDir dir;
  auto address = unixAddress(dir / "s");
  auto listener = listenOn(address);
  REQUIRE_MESSAGE(listener.ok(), listener.error());
  CHECK(isSocket(dir / "s"));
  CHECK((::fcntl(listener->get(), F_GETFD) & FD_CLOEXEC) != 0);

  auto client = connectTo(address);
  REQUIRE_MESSAGE(client.ok(), client.error());
  CHECK((::fcntl(client->get(), F_GETFD) & FD_CLOEXEC) != 0);
  UniqueFd accepted(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(accepted);
  CHECK(::write(client->get(), "x", 1) == 1);
  char c = 0;
  CHECK(::read(accepted.get(), &c, 1) == 1);
  CHECK(c == 'x');
}

TEST_CASE("connectTo a unix path where nothing exists fails naming the address") {
  ScratchDir dir;
  auto address = unixAddress(dir / "missing");
  auto client = connectTo(address);
  REQUIRE_FALSE(client.ok());
  CHECK(client.error().find("unix:" + (dir / "missing")) != std::string::npos);
  CHECK(client.error().find(std::strerror(ENOENT)) != std::string::npos);
}

TEST_CASE("connectTo a stale socket that nobody listens on fails") {
  ScratchDir dir;
  makeStaleSocket(dir / "stale");
  auto client = connectTo(unixAddress(dir / "stale"));
  REQUIRE_FALSE(client.ok());
  CHECK(client.error().find(dir / "stale") != std::string::npos);
}

TEST_CASE("listenOn replaces a stale socket file left by a dead server") {
  ScratchDir dir;
  makeStaleSocket(dir / "s");
  REQUIRE(isSocket(dir / "s"));
  auto address = unixAddress(dir / "s");
  auto listener = listenOn(address);
  REQUIRE_MESSAGE(listener.ok(), listener.error());
  auto client = connectTo(address);
  CHECK_MESSAGE(client.ok(), (client.ok() ? "" : client.error()));
}

TEST_CASE("listenOn refuses a path that exists and is not a socket, and leaves it alone") {
  ScratchDir dir;
  {
    UniqueFd file(::open((dir / "f").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    REQUIRE(file);
    REQUIRE(::write(file.get(), "keep", 4) == 4);
  }
  REQUIRE(::mkdir((dir / "d").c_str(), 0755) == 0);
  REQUIRE(::symlink((dir / "elsewhere").c_str(), (dir / "l").c_str()) == 0);

  for (const char* name : {"f", "d", "l"}) {
    CAPTURE(name);
    auto listener = listenOn(unixAddress(dir / name));
    REQUIRE_FALSE(listener.ok());
    CHECK(listener.error().find(dir / name) != std::string::npos);
    CHECK(listener.error().find("not a socket") != std::string::npos);
  }
  struct stat st;
  REQUIRE(::lstat((dir / "f").c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK(st.st_size == 4);
  REQUIRE(::lstat((dir / "d").c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  REQUIRE(::lstat((dir / "l").c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK(::lstat((dir / "elsewhere").c_str(), &st) != 0);  // the link was not followed
}

TEST_CASE("listenOn refuses the socket of a live server and the server keeps working") {
  ScratchDir dir;
  auto address = unixAddress(dir / "s");
  auto first = listenOn(address);
  REQUIRE_MESSAGE(first.ok(), first.error());

  auto second = listenOn(address);
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().find(dir / "s") != std::string::npos);
  CHECK(second.error().find("another server is listening") != std::string::npos);

  CHECK(isSocket(dir / "s"));
  auto client = connectTo(address);
  CHECK_MESSAGE(client.ok(), (client.ok() ? "" : client.error()));
}

TEST_CASE("listenOn in a directory that does not exist fails naming the address") {
  ScratchDir dir;
  auto listener = listenOn(unixAddress(dir / "no/such/dir/s"));
  REQUIRE_FALSE(listener.ok());
  CHECK(listener.error().find(dir / "no/such/dir/s") != std::string::npos);
}
