// enclavefs-inspect against a running enclavefs-hostd that serves a real basic mount and a
// real block mount: status shows both and moves when files are written, trace shows the
// operations a test performs in the order it performs them, disconnect ends a client cleanly
// and frees its volume, metrics parse as Prometheus text (from the socket and over HTTP), and
// the control socket answers only root.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A TCP port on the loopback that nothing listens on now.
int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in where{};
  where.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.1", &where.sin_addr);
  socklen_t len = sizeof where;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&where), sizeof where) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&where), &len) == 0);
  ::close(fd);
  return ntohs(where.sin_port);
}

// A host serving an export and a volume with its control socket and metrics endpoint, and an
// enclave with a basic mount (no caching, so every call reaches the host) and a block mount.
struct Rig {
  TempDir dir;
  std::string control = "unix:" + (dir / "control.sock");
  std::string enclave = dir / "enclave";
  std::string basic = dir / "basic";
  std::string block = dir / "block";
  int metricsPort = freePort();
  std::optional<HostServer> server;

  Rig() {
    std::filesystem::create_directories(dir / "export");
    std::filesystem::create_directories(enclave);
    auto made = run({volumeToolPath(), "create", "--size", "64M", "--volume", dir / "db.img"});
    REQUIRE_MESSAGE(made.exitCode == 0, made.output);
    server.emplace(dir / "sock", std::vector<std::string>{
                                     "--export", "data=" + (dir / "export"), "--volume",
                                     "db=" + (dir / "db.img"), "--control", control, "--metrics",
                                     "127.0.0.1:" + std::to_string(metricsPort)});
    auto b = run({mountPath(), "--host", server->address(), "--export", "data", "-o",
                  "attr_timeout=0,entry_timeout=0", basic});
    REQUIRE_MESSAGE(b.exitCode == 0, b.output);
    auto v = run({"/usr/bin/env", "ENCLAVEFS_RUN_DIR=" + enclave, mountPath(), "--host",
                  server->address(), "--volume", "db", block});
    REQUIRE_MESSAGE(v.exitCode == 0, v.output);
  }
  ~Rig() {
    run({"/usr/bin/env", "ENCLAVEFS_RUN_DIR=" + enclave, mountPath(), "--unmount", block});
    run({mountPath(), "--unmount", basic});
  }

  RunResult inspect(std::vector<std::string> args) {
    args.insert(args.begin(), {inspectToolPath(), "--control", control});
    return run(args);
  }
  json status() {
    auto r = inspect({"status", "--json"});
    REQUIRE_MESSAGE(r.exitCode == 0, r.output);
    return json::parse(r.output);
  }
  // The client that mounted `kind` ("export" or "volume").
  json client(const std::string& kind) {
    const json now = status();
    for (const json& c : now["clients"]) {
      if (!c["mount"].is_null() && c["mount"]["kind"] == kind) return c;
    }
    FAIL("no client has a " << kind << " in " << now.dump());
    return {};
  }
};

void writeSynced(const std::string& path, std::size_t bytes) {
  writeFileSynced(path, std::string(bytes, 'w'));
}

// A trace running in the background until it has its `count` events.
class Trace {
 public:
  Trace(Rig& rig, const std::vector<std::string>& args, bool asJson = true) {
    std::vector<std::string> argv = {inspectToolPath(), "--control", rig.control, "trace"};
    if (asJson) argv.push_back("--json");
    argv.insert(argv.end(), args.begin(), args.end());
    output_ = rig.dir / ("trace-" + std::to_string(++counter_) + ".out");
    thread_ = std::thread([this, argv] { result_ = run(argv, 30s); });
    // Tracing has begun once the server says so in its log.
    REQUIRE(waitUntil([&] { return countOf(rig.server->log(), "asked for trace") >= counter_; }, 10s));
  }
  ~Trace() {
    if (thread_.joinable()) thread_.join();
  }
  // The trace as printed for a person.
  std::string text() {
    thread_.join();
    REQUIRE_MESSAGE(result_.exitCode == 0, result_.output);
    return result_.output;
  }
  std::vector<json> events() {
    thread_.join();
    REQUIRE_MESSAGE(result_.exitCode == 0, result_.output);
    std::vector<json> lines;
    std::istringstream in(result_.output);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      json j = json::parse(line, nullptr, false);
      REQUIRE_MESSAGE(!j.is_discarded(), line);
      if (j.contains("op")) lines.push_back(j);
    }
    return lines;
  }

 private:
  static int countOf(const std::string& text, const std::string& needle) {
    int n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }
  static inline int counter_ = 0;
  std::string output_;
  RunResult result_;
  std::thread thread_;
};

std::string httpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in where{};
  where.sin_family = AF_INET;
  where.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &where.sin_addr);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&where), sizeof where) == 0);
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  std::string answer;
  char buffer[65536];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  return answer;
}

// Checks the Prometheus text exposition format line by line; returns each sample's value by
// its full name with labels.
std::map<std::string, double> parsePrometheus(const std::string& text) {
  static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? ([-+]?[0-9.eE+-]+|\+Inf|NaN)$)");
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  std::map<std::string, double> samples;
  std::set<std::string> typed;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    CAPTURE(line);
    std::smatch m;
    if (std::regex_match(line, m, help)) continue;
    if (std::regex_match(line, m, type)) {
      typed.insert(m[1]);
      continue;
    }
    REQUIRE(std::regex_match(line, m, sample));
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (family.ends_with(suffix) && typed.contains(family.substr(0, family.size() - std::strlen(suffix)))) {
        family.resize(family.size() - std::strlen(suffix));
      }
    }
    CHECK_MESSAGE(typed.contains(family), "no TYPE line before " << family);
    samples[m[1].str() + m[2].str()] = std::stod(m[3]);
  }
  return samples;
}

}  // namespace

TEST_CASE("status shows both mounts and the volume's holder, and its counters move with writes") {
  Rig rig;
  json status = rig.status();
  CHECK(status["server"]["pid"] == rig.server->pid());
  REQUIRE(status["exports"].size() == 1);
  CHECK(status["exports"][0]["name"] == "data");
  CHECK(status["exports"][0]["clients"] == 1);
  REQUIRE(status["clients"].size() == 2);
  const json basic = rig.client("export");
  const json block = rig.client("volume");
  CHECK(basic["mount"]["name"] == "data");
  CHECK(block["mount"]["name"] == "db");
  REQUIRE(status["volumes"].size() == 1);
  CHECK(status["volumes"][0]["size"] == 64 << 20);
  CHECK(status["volumes"][0]["holder"]["client"] == block["id"]);

  const std::uint64_t before = basic["totals"]["bytesWritten"];
  writeSynced(rig.basic + "/eight-mib", 8 << 20);
  const json after = rig.client("export");
  CHECK(after["totals"]["bytesWritten"].get<std::uint64_t>() >= before + (8 << 20));
  CHECK(after["writtenBytesPerSecond"].get<double>() > 0);
  bool sawWrite = false;
  for (const json& op : after["latency"]) {
    if (op["op"] == "write") {
      sawWrite = true;
      CHECK(op["count"].get<std::uint64_t>() >= 8);
      CHECK(op["p99Us"].get<std::uint64_t>() >= op["p50Us"].get<std::uint64_t>());
    }
  }
  CHECK(sawWrite);

  writeSynced(rig.block + "/on-the-volume", 4 << 20);
  const json blockAfter = rig.client("volume");
  CHECK(blockAfter["totals"]["bytesWritten"].get<std::uint64_t>() >= 4 << 20);
  const json volume = rig.status()["volumes"][0];
  CHECK(volume["allocated"].get<std::uint64_t>() >= 4 << 20);

  auto table = rig.inspect({"status"});
  REQUIRE_MESSAGE(table.exitCode == 0, table.output);
  CHECK(table.output.find("data") != std::string::npos);
  CHECK(table.output.find("db") != std::string::npos);
  MESSAGE("status:\n" << table.output);
}

TEST_CASE("trace shows the operations a program performs, in order") {
  Rig rig;
  const auto basicClient = rig.client("export")["id"].get<std::uint64_t>();
  {
    Trace trace(rig, {"--client", std::to_string(basicClient), "--op", "mkdir", "--count", "3"});
    for (const char* name : {"first", "second", "third"}) {
      REQUIRE(::mkdir((rig.basic + "/" + name).c_str(), 0755) == 0);
    }
    auto events = trace.events();
    REQUIRE(events.size() == 3);
    CHECK(events[0]["name"] == "first");
    CHECK(events[1]["name"] == "second");
    CHECK(events[2]["name"] == "third");
    for (const json& e : events) {
      CHECK(e["op"] == "mkdir");
      CHECK(e["client"] == basicClient);
      CHECK(e["result"] == "ok");
    }
  }
  {
    // Every operation of the client, unfiltered: a failed lookup, then create, write, fsync.
    Trace trace(rig, {"--client", std::to_string(basicClient), "--count", "12"});
    struct stat st;
    CHECK(::stat((rig.basic + "/missing").c_str(), &st) == -1);
    writeSynced(rig.basic + "/traced", 4096);
    ::unlink((rig.basic + "/traced").c_str());
    for (int i = 0; i < 6; ++i) ::stat((rig.basic + "/missing").c_str(), &st);
    auto events = trace.events();
    std::vector<std::string> ops;
    for (const json& e : events) ops.push_back(e["op"]);
    auto at = [&](const std::string& op, std::size_t from = 0) {
      auto it = std::find(ops.begin() + static_cast<long>(from), ops.end(), op);
      return static_cast<std::size_t>(it - ops.begin());
    };
    CAPTURE(json(ops).dump());
    REQUIRE(ops.size() == 12);
    const std::size_t lookup = at("lookup"), create = at("create"), write = at("write"),
                      fsync = at("fsync");
    REQUIRE(lookup < ops.size());
    CHECK(events[lookup]["name"] == "missing");
    CHECK(events[lookup]["result"] == "ENOENT");
    CHECK(lookup < create);
    CHECK(create < write);
    CHECK(write < fsync);
    CHECK(fsync < ops.size());
    CHECK(events[write]["size"] == 4096);
    CHECK(events[write]["offset"] == 0);
  }
  {
    // The same, as an operator reads it.
    Trace trace(rig, {"--client", std::to_string(basicClient), "--count", "10"}, false);
    writeSynced(rig.basic + "/shown", 4096);
    writeSynced(rig.basic + "/shown-too", 4096);  // more than enough events
    const std::string text = trace.text();
    CHECK(text.find("create") != std::string::npos);
    CHECK(text.find("write") != std::string::npos);
    MESSAGE("trace:\n" << text);
  }
  {
    // An fsync in the enclave's ext4 reaches the host as a flush of the volume.
    const auto blockClient = rig.client("volume")["id"].get<std::uint64_t>();
    Trace trace(rig, {"--client", std::to_string(blockClient), "--op", "sectorFlush", "--count", "1"});
    writeSynced(rig.block + "/durable", 8192);
    auto events = trace.events();
    REQUIRE(events.size() == 1);
    CHECK(events[0]["op"] == "sectorFlush");
    CHECK(events[0]["result"] == "ok");
  }
}

TEST_CASE("disconnect ends a client: its mount fails cleanly and its volume is free") {
  Rig rig;
  const auto blockClient = rig.client("volume")["id"].get<std::uint64_t>();
  const auto basicClient = rig.client("export")["id"].get<std::uint64_t>();
  auto r = rig.inspect({"disconnect", "--client", std::to_string(blockClient)});
  REQUIRE_MESSAGE(r.exitCode == 0, r.output);
  CHECK(r.output.find("disconnected client " + std::to_string(blockClient)) != std::string::npos);
  CHECK(waitUntil([&] { return rig.status()["volumes"][0]["holder"].is_null(); }, 10s));
  auto info = run({volumeToolPath(), "info", rig.dir / "db.img"});
  CHECK(info.output.find("state        free") != std::string::npos);
  // The enclave's file system now gets I/O errors; it still unmounts, and the lease is gone.
  auto down = run({"/usr/bin/env", "ENCLAVEFS_RUN_DIR=" + rig.enclave, mountPath(), "--unmount", rig.block});
  CHECK_MESSAGE(down.exitCode == 0, down.output);

  REQUIRE(rig.inspect({"disconnect", "--client", std::to_string(basicClient)}).exitCode == 0);
  struct stat st;
  CHECK(waitUntil([&] { return ::stat((rig.basic + "/anything").c_str(), &st) == -1 && errno == ENOTCONN; }, 10s));
  auto unknown = rig.inspect({"disconnect", "--client", "999"});
  CHECK(unknown.exitCode == 1);
  CHECK(unknown.output.find("no client 999") != std::string::npos);
  CHECK(rig.server->log().find("disconnects client " + std::to_string(blockClient)) != std::string::npos);
}

TEST_CASE("metrics parse as Prometheus text, from the control socket and over HTTP") {
  Rig rig;
  writeSynced(rig.basic + "/f", 65536);
  auto r = rig.inspect({"metrics"});
  REQUIRE_MESSAGE(r.exitCode == 0, r.output);
  auto samples = parsePrometheus(r.output);
  CHECK(samples.at("enclavefs_clients") == 2);
  CHECK(samples.at("enclavefs_requests_total{op=\"write\"}") >= 1);
  CHECK(samples.at("enclavefs_written_bytes_total") >= 65536);
  CHECK(samples.at("enclavefs_volume_held{volume=\"db\"}") == 1);
  CHECK(samples.at("enclavefs_volume_size_bytes{volume=\"db\"}") == 64 << 20);
  CHECK(samples.at("enclavefs_request_duration_seconds_count{op=\"write\"}") ==
        samples.at("enclavefs_requests_total{op=\"write\"}"));

  std::string http = httpGet(rig.metricsPort, "/metrics");
  REQUIRE(http.starts_with("HTTP/1.1 200 OK\r\n"));
  auto body = http.substr(http.find("\r\n\r\n") + 4);
  auto scraped = parsePrometheus(body);
  CHECK(scraped.at("enclavefs_clients") == 2);
  CHECK(scraped.at("enclavefs_written_bytes_total") >= 65536);
}

TEST_CASE("the control socket is root's alone") {
  Rig rig;
  struct stat st;
  REQUIRE(::stat((rig.dir / "control.sock").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // Even with the mode opened up, a process that is not root gets one refusal.
  REQUIRE(::chmod((rig.dir / "control.sock").c_str(), 0666) == 0);
  ::chmod(rig.dir.path().c_str(), 0755);
  auto r = run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                inspectToolPath(), "--control", rig.control, "status"});
  CHECK(r.exitCode == 1);
  CHECK_MESSAGE(r.output.find("only root may use the control socket") != std::string::npos, r.output);
  CHECK(rig.server->log().find("refused a control connection from uid 65534 pid") != std::string::npos);
}
