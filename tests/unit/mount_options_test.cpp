// enclave-fs/mount_options.h: the -o options of enclavefs-mount. The host chooses every mode
// bit, so a basic mount is nosuid,nodev always and noexec unless asked; options that would
// weaken that are refused, and every refusal names the option.
#include <doctest/doctest.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "enclave-fs/mount_options.h"

using namespace enclavefs::enclave;

namespace {

// The kernel option string as a set of options (libfuse splits on unescaped commas).
std::vector<std::string> splitOptions(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      current += text[++i];
    } else if (text[i] == ',') {
      out.push_back(current);
      current.clear();
    } else {
      current += text[i];
    }
  }
  out.push_back(current);
  return out;
}

std::set<std::string> optionSet(const std::string& text) {
  auto list = splitOptions(text);
  return {list.begin(), list.end()};
}

MountOptions parsed(const std::vector<std::string>& groups) {
  auto r = parseMountOptions(groups);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error()));
  return r.value();
}

std::string refused(const std::vector<std::string>& groups) {
  auto r = parseMountOptions(groups);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

}  // namespace

TEST_CASE("with no options a mount is read-write, nosuid, nodev and noexec") {
  auto o = parsed({});
  CHECK_FALSE(o.readOnly);
  CHECK_FALSE(o.exec.has_value());
  CHECK_FALSE(o.debug);
  CHECK(o.cacheTimeouts(false).entry == 1.0);
  CHECK(o.cacheTimeouts(false).attr == 1.0);
  CHECK(o.cacheTimeouts(true).entry == 30.0);
  CHECK(o.cacheTimeouts(true).attr == 30.0);
  CHECK(o.requestTimeoutSeconds == 60);
  CHECK(o.maxThreads == 4);

  auto kernel = optionSet(o.kernelOptions("data"));
  CHECK(kernel.count("nosuid") == 1);
  CHECK(kernel.count("nodev") == 1);
  CHECK(kernel.count("noexec") == 1);
  CHECK(kernel.count("exec") == 0);
  CHECK(kernel.count("ro") == 0);
  CHECK(kernel.count("default_permissions") == 1);
  CHECK(kernel.count("fsname=enclavefs:data") == 1);
  CHECK(kernel.count("subtype=enclavefs") == 1);
}

TEST_CASE("empty option groups and empty items change nothing") {
  auto o = parsed({"", ",,", ","});
  CHECK_FALSE(o.readOnly);
  CHECK_FALSE(o.exec.has_value());
}

TEST_CASE("exec allows execution but keeps nosuid and nodev") {
  auto o = parsed({"exec"});
  CHECK(o.exec == true);
  auto kernel = optionSet(o.kernelOptions("data"));
  CHECK(kernel.count("exec") == 1);
  CHECK(kernel.count("noexec") == 0);
  CHECK(kernel.count("nosuid") == 1);
  CHECK(kernel.count("nodev") == 1);
}

TEST_CASE("the last of exec and noexec wins") {
  CHECK(parsed({"exec,noexec"}).exec == false);
  CHECK(parsed({"noexec", "exec"}).exec == true);
}

TEST_CASE("ro makes the mount read-only, and rw after it undoes that") {
  auto o = parsed({"ro"});
  CHECK(o.readOnly);
  CHECK(optionSet(o.kernelOptions("data")).count("ro") == 1);
  CHECK_FALSE(parsed({"ro,rw"}).readOnly);
  CHECK(parsed({"rw", "ro"}).readOnly);
}

TEST_CASE("options may come in several groups and combine") {
  auto o = parsed({"ro,exec", "entry_timeout=5", "debug,max_threads=8"});
  CHECK(o.readOnly);
  CHECK(o.exec == true);
  CHECK(o.debug);
  CHECK(o.cacheTimeouts(true).entry == 5.0);
  CHECK(o.maxThreads == 8);
}

TEST_CASE("options only a basic mount understands are named, so a block mount can refuse them") {
  CHECK_FALSE(parsed({"ro,exec,timeout=5,max_threads=2,debug"}).basicOnlyOption.has_value());
  CHECK(parsed({"ro", "symlinks=follow,attr_timeout=3"}).basicOnlyOption == "symlinks=follow");
  CHECK(parsed({"entry_timeout=1"}).basicOnlyOption == "entry_timeout=1");
  CHECK(parsed({"attr_timeout=0"}).basicOnlyOption == "attr_timeout=0");
  CHECK(parsed({"write_through"}).basicOnlyOption == "write_through");
}

TEST_CASE("write_through turns write-behind off; it takes no value") {
  CHECK_FALSE(parsed({"ro"}).writeThrough);
  CHECK(parsed({"write_through"}).writeThrough);
  CHECK_FALSE(parseMountOptions({"write_through=1"}).ok());
}

TEST_CASE("nosuid and nodev are accepted and change nothing") {
  auto o = parsed({"nosuid,nodev"});
  auto kernel = optionSet(o.kernelOptions("x"));
  CHECK(kernel.count("nosuid") == 1);
  CHECK(kernel.count("nodev") == 1);
}

TEST_CASE("suid and dev are refused, naming the option") {
  for (const char* option : {"suid", "dev"}) {
    CAPTURE(option);
    auto e = refused({option});
    CHECK(e.find("'" + std::string(option) + "'") != std::string::npos);
    CHECK(e.find("refused") != std::string::npos);
  }
  CHECK_FALSE(parseMountOptions({"ro,suid"}).ok());
  CHECK_FALSE(parseMountOptions({"ro", "dev"}).ok());
}

TEST_CASE("an unknown option is refused, naming it") {
  for (const char* option : {"bogus", "allow_root", "user_id=0", "ro=1", "exec=yes", "RO",
                             "suid=1"}) {
    CAPTURE(option);
    auto e = refused({std::string("ro,") + option});
    CHECK(e.find("'" + std::string(option) + "'") != std::string::npos);
  }
}

TEST_CASE("cache timeouts take seconds, fractions included") {
  auto o = parsed({"entry_timeout=2.5,attr_timeout=0"});
  CHECK(o.cacheTimeouts(true).entry == 2.5);
  CHECK(o.cacheTimeouts(false).attr == 0.0);
  CHECK(parsed({"attr_timeout=86400"}).cacheTimeouts(false).attr == 86400.0);
}

TEST_CASE("cache timeouts outside 0-86400 seconds or not numbers are refused, naming the option") {
  for (const char* option : {"entry_timeout=-1", "entry_timeout=86401", "entry_timeout=abc",
                             "entry_timeout=", "entry_timeout", "attr_timeout=1s",
                             "attr_timeout=nan", "attr_timeout=inf", "attr_timeout= 1",
                             "attr_timeout=1e9"}) {
    CAPTURE(option);
    auto e = refused({option});
    CHECK(e.find("'" + std::string(option) + "'") != std::string::npos);
  }
}

TEST_CASE("the request timeout is at least one second") {
  CHECK(parsed({"timeout=1"}).requestTimeoutSeconds == 1.0);
  CHECK(parsed({"timeout=30.5"}).requestTimeoutSeconds == 30.5);
  for (const char* option : {"timeout=0", "timeout=0.5", "timeout=-3", "timeout=x", "timeout",
                             "timeout=86401"}) {
    CAPTURE(option);
    auto e = refused({option});
    CHECK(e.find("timeout") != std::string::npos);
  }
}

TEST_CASE("max_threads takes 1 to 64") {
  CHECK(parsed({"max_threads=1"}).maxThreads == 1);
  CHECK(parsed({"max_threads=64"}).maxThreads == 64);
  for (const char* option : {"max_threads=0", "max_threads=65", "max_threads=-1",
                             "max_threads=4x", "max_threads=", "max_threads",
                             "max_threads=99999999999"}) {
    CAPTURE(option);
    auto e = refused({option});
    CHECK(e.find("'" + std::string(option) + "'") != std::string::npos);
  }
}

TEST_CASE("busy_poll takes 0 to 1000 microseconds and defaults to 50") {
  CHECK(parsed({"ro"}).busyPollMicros == 50);
  CHECK(parsed({"busy_poll=0"}).busyPollMicros == 0);
  CHECK(parsed({"busy_poll=1000"}).busyPollMicros == 1000);
  for (const char* option : {"busy_poll=1001", "busy_poll=-1", "busy_poll=5us", "busy_poll=",
                             "busy_poll"}) {
    CAPTURE(option);
    auto e = refused({option});
    CHECK(e.find("'" + std::string(option) + "'") != std::string::npos);
    CHECK(e.find("microseconds") != std::string::npos);
  }
}

TEST_CASE("a comma in the export name cannot add kernel mount options") {
  // The export name is copied into fsname=; unescaped, "x,suid" would become its own option.
  MountOptions o;
  auto kernel = splitOptions(o.kernelOptions("x,suid,dev,exec"));
  for (const auto& option : kernel) {
    CAPTURE(option);
    CHECK(option != "suid");
    CHECK(option != "dev");
    CHECK(option != "exec");
  }
  CHECK(kernel.front() == "fsname=enclavefs:x,suid,dev,exec");
}

TEST_CASE("outward symlinks are refused by default and followed only with symlinks=follow") {
  CHECK_FALSE(parsed({}).policy.followOutwardSymlinks);
  CHECK(parsed({"symlinks=follow"}).policy.followOutwardSymlinks);
  CHECK_FALSE(parsed({"symlinks=follow,symlinks=inside"}).policy.followOutwardSymlinks);
  CHECK(refused({"symlinks=anywhere"}).find("symlinks=anywhere") != std::string::npos);
  CHECK(refused({"symlinks"}).find("symlinks") != std::string::npos);
}
