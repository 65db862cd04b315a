// enclavefs-volume: the operator's tool for block-volume image files (format in
// host-server/volume_file.h). It creates, describes, lists, grows and deletes them; resize and
// delete take the same lock enclavefs-hostd holds while a client uses a volume, so neither
// can touch a volume in use. Each command either does all it says or nothing, and every
// failure is one line on stderr and exit status 1.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "host-server/volume_file.h"
#include "tools/cli_tool.h"

namespace enclavefs::host {
namespace {

constexpr const char* kProgram = "enclavefs-volume";

using Status = Result<void, std::string>;
using Json = nlohmann::ordered_json;

int fail(const std::string& message) {
  return cli::fail(kProgram, message);
}

void printJson(const Json& json) {
  std::printf("%s\n", json.dump(2).c_str());
}

// "UID:GID", both numbers; (uid_t)-1 is refused because chown reads it as "leave unchanged".
Result<std::pair<uid_t, gid_t>, std::string> parseUser(const std::string& text) {
  auto number = [](std::string_view part) -> std::optional<std::uint32_t> {
    std::uint32_t value = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size() ||
        value == UINT32_MAX) {
      return std::nullopt;
    }
    return value;
  };
  std::string_view whole = text;
  auto colon = whole.find(':');
  std::optional<std::uint32_t> uid, gid;
  if (colon != std::string_view::npos) {
    uid = number(whole.substr(0, colon));
    gid = number(whole.substr(colon + 1));
  }
  if (!uid || !gid) {
    return Fail{"user '" + text + "' must be UID:GID, two numbers as in 1000:1000"};
  }
  return std::pair{static_cast<uid_t>(*uid), static_cast<gid_t>(*gid)};
}

std::string stateOf(const std::optional<Lease>& holder) {
  return holder ? "in use by " + holder->describe() : "free";
}

Json holderJson(const std::optional<Lease>& holder) {
  if (!holder || holder->empty()) return nullptr;
  Json json;
  if (holder->peer.kind == Peer::Kind::vsock) {
    json["kind"] = "vsock";
    json["cid"] = holder->peer.cid;
  } else {
    json["kind"] = "unix";
    json["uid"] = holder->peer.uid;
    json["gid"] = holder->peer.gid;
    json["pid"] = holder->peer.pid;
  }
  json["since"] = formatUtc(holder->since);
  json["serverPid"] = holder->serverPid;
  json["clientId"] = holder->clientId;
  return json;
}

Status createVolume(const std::string& path, const std::string& sizeText,
                    const std::string& userText) {
  auto size = parseVolumeSize(sizeText);
  if (!size) return Fail{size.error()};
  std::optional<std::pair<uid_t, gid_t>> owner;
  if (!userText.empty()) {
    auto user = parseUser(userText);
    if (!user) return Fail{user.error()};
    owner = *user;
  }
  if (auto created = VolumeFile::create(path, *size, owner); !created) return created;
  auto volume = VolumeFile::open(path, false);
  if (!volume) return Fail{volume.error()};
  std::printf("created volume %s: %s, %s allocated\n", path.c_str(), formatBytes(*size).c_str(),
              formatBytes(volume->allocatedBytes()).c_str());
  return {};
}

Status showInfo(const std::string& path, bool json) {
  auto volume = VolumeFile::open(path, false);
  if (!volume) return Fail{volume.error()};
  const VolumeHeader& header = volume->header();
  std::optional<Lease> holder = volume->holder();
  if (json) {
    Json out;
    out["path"] = path;
    out["size"] = header.size;
    out["sectorSize"] = header.sectorSize;
    out["allocated"] = volume->allocatedBytes();
    out["created"] = formatUtc(header.created);
    out["formatVersion"] = header.version;
    out["encrypted"] = false;  // no encryption flag is defined yet
    out["state"] = holder ? "in use" : "free";
    out["inUseBy"] = holder ? Json(holder->describe()) : Json(nullptr);
    out["holder"] = holderJson(holder);
    printJson(out);
    return {};
  }
  auto line = [](const char* key, const std::string& value) {
    std::printf("%-13s%s\n", key, value.c_str());
  };
  line("volume", path);
  line("size", formatBytes(header.size) + " (" + std::to_string(header.size) + " bytes)");
  line("sector size", std::to_string(header.sectorSize) + " bytes");
  line("allocated", formatBytes(volume->allocatedBytes()) + " on the host");
  line("created", formatUtc(header.created));
  line("format", "version " + std::to_string(header.version));
  line("encrypted", "no");
  line("state", stateOf(holder));
  return {};
}

// One file of a listed directory that carries the volume magic.
struct Listed {
  std::string name;
  std::string path;
  enum class Kind { volume, broken, unreadable } kind = Kind::volume;
  std::uint64_t size = 0;
  std::uint64_t allocated = 0;
  std::optional<Lease> holder;
  std::string problem;  // broken or unreadable: why
};

// Whether the file starts with the volume magic; an error if it cannot be read at all.
Result<bool, std::string> hasVolumeMagic(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Fail{std::string(std::strerror(errno))};
  char magic[kVolumeMagic.size()];
  ssize_t n = ::pread(fd.get(), magic, sizeof magic, 0);
  if (n < 0) return Fail{std::string(std::strerror(errno))};
  return static_cast<std::size_t>(n) == sizeof magic &&
         std::string_view(magic, sizeof magic) == kVolumeMagic;
}

// VolumeFile::open's errors read "volume PATH: what is wrong"; a listing already names the
// file, so it keeps only what is wrong.
std::string withoutPath(const std::string& error, const std::string& path) {
  const std::string prefix = "volume " + path + ": ";
  return error.starts_with(prefix) ? error.substr(prefix.size()) : error;
}

Result<std::vector<Listed>, std::string> scan(const std::string& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return Fail{"cannot list directory " + dir + ": " + ec.message()};
  std::vector<Listed> found;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    // Symbolic links are not followed: only files that live in the directory are listed.
    if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
    Listed entry;
    entry.name = it->path().filename().string();
    entry.path = it->path().string();
    // A file we cannot read may be a volume owned by someone else: worth showing.
    auto magic = hasVolumeMagic(entry.path);
    if (!magic) {
      entry.kind = Listed::Kind::unreadable;
      entry.problem = magic.error();
    } else if (!*magic) {
      continue;
    } else if (auto volume = VolumeFile::open(entry.path, false); !volume) {
      entry.kind = Listed::Kind::broken;
      entry.problem = withoutPath(volume.error(), entry.path);
    } else {
      entry.size = volume->header().size;
      entry.allocated = volume->allocatedBytes();
      entry.holder = volume->holder();
    }
    found.push_back(std::move(entry));
  }
  if (ec) return Fail{"cannot list directory " + dir + ": " + ec.message()};
  std::sort(found.begin(), found.end(),
            [](const Listed& a, const Listed& b) { return a.name < b.name; });
  return found;
}

Status listVolumes(const std::string& dir, bool json) {
  auto found = scan(dir);
  if (!found) return Fail{found.error()};
  if (json) {
    Json out = Json::array();
    for (const Listed& v : *found) {
      Json entry;
      entry["name"] = v.name;
      entry["path"] = v.path;
      switch (v.kind) {
        case Listed::Kind::volume:
          entry["state"] = v.holder ? "in use" : "free";
          entry["size"] = v.size;
          entry["allocated"] = v.allocated;
          entry["inUseBy"] = v.holder ? Json(v.holder->describe()) : Json(nullptr);
          break;
        case Listed::Kind::broken:
          entry["state"] = "broken";
          entry["error"] = v.problem;
          break;
        case Listed::Kind::unreadable:
          entry["state"] = "unreadable";
          entry["error"] = v.problem;
          break;
      }
      out.push_back(std::move(entry));
    }
    printJson(out);
    return {};
  }
  if (found->empty()) {
    std::printf("no volumes in %s\n", dir.c_str());
    return {};
  }
  int width = 4;
  for (const Listed& v : *found) width = std::max(width, static_cast<int>(v.name.size()));
  std::printf("%-*s  %-10s  %-10s  %s\n", width, "NAME", "SIZE", "ALLOCATED", "STATE");
  for (const Listed& v : *found) {
    std::string size = "-", allocated = "-", state;
    switch (v.kind) {
      case Listed::Kind::volume:
        size = formatBytes(v.size);
        allocated = formatBytes(v.allocated);
        state = stateOf(v.holder);
        break;
      case Listed::Kind::broken:
        state = "broken: " + v.problem;
        break;
      case Listed::Kind::unreadable:
        state = "unreadable: " + v.problem;
        break;
    }
    std::printf("%-*s  %-10s  %-10s  %s\n", width, v.name.c_str(), size.c_str(), allocated.c_str(),
                state.c_str());
  }
  return {};
}

Status resizeVolume(const std::string& path, const std::string& sizeText) {
  auto size = parseVolumeSize(sizeText);
  if (!size) return Fail{size.error()};
  auto volume = VolumeFile::open(path, true);
  if (!volume) return Fail{volume.error()};
  if (auto locked = volume->lockForMaintenance("volume " + path); !locked) {
    return Fail{"cannot resize volume " + path + ": " + locked.error()};
  }
  const std::uint64_t before = volume->header().size;
  if (*size == before) {
    std::printf("volume %s is already %s; nothing changed\n", path.c_str(),
                formatBytes(before).c_str());
    return {};
  }
  if (auto grown = volume->grow(*size); !grown) return grown;
  std::printf("resized volume %s from %s to %s\n", path.c_str(), formatBytes(before).c_str(),
              formatBytes(*size).c_str());
  return {};
}

bool sameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

Status deleteVolume(const std::string& path) {
  struct stat named;
  if (::lstat(path.c_str(), &named) == 0 && S_ISLNK(named.st_mode)) {
    return Fail{"cannot delete " + path + ": it is a symbolic link; give the volume's own path"};
  }
  auto volume = VolumeFile::open(path, true);
  if (!volume) return Fail{volume.error()};
  if (auto locked = volume->lockForMaintenance("volume " + path); !locked) {
    return Fail{"cannot delete volume " + path + ": " + locked.error()};
  }
  // The name must still be the file we locked, or we would delete something unchecked.
  struct stat opened;
  if (::fstat(volume->fd(), &opened) != 0 || ::lstat(path.c_str(), &named) != 0 ||
      !sameFile(opened, named)) {
    return Fail{"cannot delete volume " + path +
                ": the file was replaced while it was being checked; nothing deleted"};
  }
  if (::unlink(path.c_str()) != 0) {
    return Fail{"cannot delete volume " + path + ": " + std::strerror(errno)};
  }
  // Make the removal durable; it has happened either way, so a failure here is not reported.
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  UniqueFd dir(::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
  std::printf("deleted volume %s\n", path.c_str());
  return {};
}

int run(int argc, char** argv) {
  CLI::App app{
      "enclavefs volume tool: creates and manages the block-volume image files "
      "that enclavefs-hostd serves to enclaves",
      kProgram};
  app.require_subcommand(0, 1);
  const std::string sizeHelp =
      "volume size: bytes, or a number with K, M, G or T (powers of 1024), as in 512M or 2G";

  std::string path, sizeText, userText;
  bool json = false;

  CLI::App* create = app.add_subcommand("create", "make a new, sparse volume image");
  create->add_option("--size", sizeText, sizeHelp)->required()->type_name("SIZE");
  create->add_option("--volume", path, "the image file to make (it must not exist)")
      ->required()
      ->type_name("PATH");
  create
      ->add_option("--user", userText,
                   "owner of the image file, UID:GID (default: whoever runs this)")
      ->type_name("UID:GID");

  CLI::App* info = app.add_subcommand("info", "describe a volume and who uses it");
  info->add_option("PATH", path, "the volume's image file")->required();
  info->add_flag("--json", json, "print JSON");

  std::string dir;
  CLI::App* list = app.add_subcommand("list", "list the volumes in a directory");
  list->add_option("DIR", dir, "the directory")->required();
  list->add_flag("--json", json, "print JSON");

  CLI::App* resize = app.add_subcommand(
      "resize", "grow a volume that no one is using (the enclave then grows its file system)");
  resize->add_option("--size", sizeText, "new " + sizeHelp)->required()->type_name("SIZE");
  resize->add_option("--volume", path, "the volume's image file")->required()->type_name("PATH");

  CLI::App* remove = app.add_subcommand("delete", "delete a volume that no one is using");
  remove->add_option("PATH", path, "the volume's image file")->required();

  if (auto exit = cli::parse(app, argc, argv)) return *exit;
  if (app.get_subcommands().empty()) {
    return fail("no command given: use create, info, list, resize or delete (see --help)");
  }

  Status done;
  if (*create) {
    done = createVolume(path, sizeText, userText);
  } else if (*info) {
    done = showInfo(path, json);
  } else if (*list) {
    done = listVolumes(dir, json);
  } else if (*resize) {
    done = resizeVolume(path, sizeText);
  } else {
    done = deleteVolume(path);
  }
  return cli::finish(kProgram, done);
}

}  // namespace
}  // namespace enclavefs::host

int main(int argc, char** argv) {
  return enclavefs::cli::guardedMain("enclavefs-volume", enclavefs::host::run, argc, argv);
}
