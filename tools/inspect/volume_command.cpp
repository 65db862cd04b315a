#include "tools/inspect/volume_command.h"

#include <cstdio>
#include <utility>
#include <vector>

#include "common/log.h"
#include "host-server/volume_file.h"
#include "tools/inspect/control_client.h"
#include "tools/inspect/ext4_image.h"
#include "tools/inspect/table.h"
#include "tools/inspect/volume_map.h"

namespace enclavefs::inspect {
namespace {

using host::formatBytes;
using host::formatUtc;

constexpr std::size_t kJsonExtents = 10'000;
constexpr std::size_t kTableExtents = 20;
constexpr std::size_t kMaxName = 1024;

// What the data area holds.
struct Content {
  std::string kind;    // "blank", "ext4" or "unknown"
  std::string detail;  // unknown: what is known, if anything
  std::optional<Ext4Image> ext4;
};

Result<Content, std::string> identify(const host::VolumeFile& volume, const ExtentMap& extents) {
  if (extents.dataCount == 0) return Content{"blank", "", std::nullopt};
  auto signature = readSignature(volume);
  if (!signature) return Fail{signature.error()};
  switch (*signature) {
    case Signature::zeros:
      return Content{"blank", "", std::nullopt};
    case Signature::other:
      return Content{"unknown", "", std::nullopt};
    case Signature::ext:
      break;
  }
  auto image = Ext4Image::open(volume);
  if (!image) return Content{"unknown", "an ext4 superblock, but " + image.error(), std::nullopt};
  return Content{"ext4", "", std::move(*image)};
}

// Why --ls cannot list anything on this volume.
std::string noFileSystem(const std::string& path, const Content& content) {
  std::string why = content.kind == "blank"  ? "it is blank"
                    : content.detail.empty() ? "its content is not a file system it knows"
                                             : content.detail;
  return "volume " + path + " holds no ext4 file system to list (" + why + ")";
}

// "0644"
std::string octal(std::uint32_t permissions) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", permissions & 07777);
  return text;
}

// "drwxr-xr-x", as ls -l writes it.
std::string modeString(char type, std::uint32_t p) {
  auto bit = [&](std::uint32_t mask, char c) { return (p & mask) != 0 ? c : '-'; };
  auto special = [&](std::uint32_t exec, std::uint32_t flag, char set, char setNoExec) {
    if ((p & flag) != 0) return (p & exec) != 0 ? set : setNoExec;
    return bit(exec, 'x');
  };
  return {type,
          bit(0400, 'r'),
          bit(0200, 'w'),
          special(0100, 04000, 's', 'S'),
          bit(0040, 'r'),
          bit(0020, 'w'),
          special(0010, 02000, 's', 'S'),
          bit(0004, 'r'),
          bit(0002, 'w'),
          special(0001, 01000, 't', 'T')};
}

Json ext4Json(const Ext4Summary& s) {
  Json json;
  json["label"] = s.label;
  json["uuid"] = s.uuid;
  json["blockSize"] = s.blockSize;
  json["blocks"] = s.blocks;
  json["freeBlocks"] = s.freeBlocks;
  json["inodes"] = s.inodes;
  json["freeInodes"] = s.freeInodes;
  json["clean"] = s.clean;
  json["needsRecovery"] = s.needsRecovery;
  json["lastWritten"] = formatUtc(s.lastWritten);
  return json;
}

Json reportJson(const host::VolumeFile& volume, const ExtentMap& extents, const Content& content,
                const std::optional<std::string>& dir,
                const std::optional<std::vector<Ext4Entry>>& entries) {
  const host::VolumeHeader& header = volume.header();
  Json out;
  out["path"] = volume.path();
  out["header"] = {{"formatVersion", header.version},
                   {"sectorSize", header.sectorSize},
                   {"dataOffset", header.dataOffset},
                   {"size", header.size},
                   {"created", formatUtc(header.created)},
                   {"flags", header.flags},
                   {"encrypted", false}};  // no encryption flag is defined yet
  out["allocated"] = volume.allocatedBytes();
  out["dataBytes"] = extents.dataBytes;
  out["sparseBytes"] = extents.sparseBytes;
  out["rangeCount"] = extents.count;
  out["dataRangeCount"] = extents.dataCount;
  out["rangesTruncated"] = extents.truncated();
  Json ranges = Json::array();
  for (const Extent& e : extents.extents) {
    ranges.push_back(
        {{"offset", e.offset}, {"length", e.length}, {"kind", e.data ? "data" : "sparse"}});
  }
  out["ranges"] = std::move(ranges);
  Json held;
  held["kind"] = content.kind;
  if (!content.detail.empty()) held["detail"] = content.detail;
  if (content.ext4) held["fileSystem"] = ext4Json(content.ext4->summary());
  out["content"] = std::move(held);
  if (dir && entries) {
    Json list = Json::array();
    for (const Ext4Entry& e : *entries) {
      list.push_back({{"name", e.name},
                      {"type", typeName(e.type)},
                      {"mode", octal(e.permissions)},
                      {"size", e.size},
                      {"mtime", formatUtc(e.mtime)},
                      {"inode", e.inode},
                      {"links", e.links},
                      {"uid", e.uid},
                      {"gid", e.gid}});
    }
    out["listing"] = {{"directory", *dir}, {"entries", std::move(list)}};
  }
  return out;
}

std::string ext4Line(const Ext4Summary& s) {
  std::string line = "ext4, ";
  line += s.label.empty() ? "no label" : "label \"" + printable(s.label) + "\"";
  line += ", " + formatBytes(s.blocks * s.blockSize) + " in " + formatBytes(s.blockSize) +
          " blocks, " + formatBytes(s.freeBlocks * s.blockSize) + " free, " +
          std::to_string(s.inodes) + " inodes (" + std::to_string(s.freeInodes) + " free), ";
  line += s.clean ? "clean" : "not clean";
  if (s.needsRecovery) line += ", journal not yet replayed";
  return line;
}

void printReport(const host::VolumeFile& volume, const ExtentMap& extents, const Content& content) {
  const host::VolumeHeader& header = volume.header();
  auto line = [](const char* key, const std::string& value) {
    std::printf("%-11s%s\n", key, value.c_str());
  };
  line("volume", volume.path());
  line("format", "version " + std::to_string(header.version) + ", " +
                     std::to_string(header.sectorSize) + "-byte sectors, data from byte " +
                     std::to_string(header.dataOffset));
  line("size", formatBytes(header.size) + " (" + std::to_string(header.size) + " bytes)");
  line("created", formatUtc(header.created));
  line("flags", header.flags == 0 ? "none" : std::to_string(header.flags));
  line("encrypted", "no");
  line("allocated", formatBytes(volume.allocatedBytes()) + " on the host");
  line("data area", extents.dataCount == 0
                        ? "nothing allocated, " + formatBytes(extents.sparseBytes) + " sparse"
                        : formatBytes(extents.dataBytes) + " allocated in " +
                              std::to_string(extents.dataCount) + " ranges, " +
                              formatBytes(extents.sparseBytes) + " sparse");
  std::string holds = content.kind;
  if (content.ext4) holds = ext4Line(content.ext4->summary());
  if (!content.detail.empty()) holds += " (" + content.detail + ")";
  line("content", holds);

  std::printf("\nRANGES (offsets in the volume, after the %s header)\n",
              formatBytes(header.dataOffset).c_str());
  Table ranges({"KIND", "OFFSET", "END", "LENGTH"});
  for (std::size_t i = 0; i < extents.extents.size() && i < kTableExtents; ++i) {
    const Extent& e = extents.extents[i];
    ranges.add({e.data ? "data" : "sparse", std::to_string(e.offset),
                std::to_string(e.offset + e.length), formatBytes(e.length)});
  }
  ranges.print(stdout, "  ");
  if (extents.count > kTableExtents) {
    std::printf("  ... %llu ranges in all; --json lists them\n",
                static_cast<unsigned long long>(extents.count));
  }
}

void printListing(const std::string& dir, const std::vector<Ext4Entry>& entries,
                  const Ext4Summary& summary) {
  std::printf("\nDIRECTORY %s (read from the ext4 file system, not mounted)\n",
              printable(dir, kMaxName).c_str());
  if (summary.needsRecovery) {
    std::printf("  note: the journal holds changes not yet written in place; they are not shown\n");
  }
  if (entries.empty()) {
    std::printf("  (empty)\n");
    return;
  }
  Table table({"MODE", "LINKS", "UID", "GID", "SIZE", "MODIFIED", "NAME"});
  for (const Ext4Entry& e : entries) {
    table.add({modeString(e.type, e.permissions), std::to_string(e.links), std::to_string(e.uid),
               std::to_string(e.gid), std::to_string(e.size), formatUtc(e.mtime),
               printable(e.name, kMaxName)});
  }
  table.print(stdout, "  ");
}

}  // namespace

Result<void, std::string> inspectVolume(const VolumeRequest& request) {
  auto volume = host::VolumeFile::open(request.path, false);
  if (!volume) return Fail{volume.error()};
  if (auto holder = volume->holder()) {
    return Fail{"volume " + request.path + " is in use by " + holder->describe() +
                "; inspect it when it is free"};
  }
  auto extents = mapExtents(*volume, kJsonExtents);
  if (!extents) return Fail{extents.error()};
  auto content = identify(*volume, *extents);
  if (!content) return Fail{content.error()};

  std::optional<std::vector<Ext4Entry>> entries;
  if (const auto& dir = request.listDirectory) {
    if (!content->ext4) return Fail{noFileSystem(request.path, *content)};
    auto listed = content->ext4->list(*dir);
    if (!listed) return Fail{listed.error()};
    entries = std::move(*listed);
  }

  if (request.json) {
    Json out = reportJson(*volume, *extents, *content, request.listDirectory, entries);
    std::printf("%s\n", out.dump(2, ' ', false, Json::error_handler_t::replace).c_str());
    return {};
  }
  printReport(*volume, *extents, *content);
  if (entries) printListing(*request.listDirectory, *entries, content->ext4->summary());
  return {};
}

}  // namespace enclavefs::inspect
