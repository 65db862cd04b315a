#include "enclave-fs/reply_check.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "common/hard_limits.h"

namespace enclavefs::enclave {
namespace {

// The kernel's unit of reads and writes through a FUSE file; less would be unworkable.
constexpr std::uint32_t kPageBytes = 4096;

}  // namespace

int acceptableErrno(int error) {
  if (error <= 0 || error >= 4096) return EIO;
  if (error == ENOSYS || error == ENOTCONN) return EIO;
  return error;
}

Check checkAttr(const msg::Attr& a) {
  switch (a.mode & S_IFMT) {
    case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFIFO: case S_IFSOCK: case S_IFCHR:
    case S_IFBLK:
      break;
    default:
      return Fail{"attribute mode " + std::to_string(a.mode) + " has no valid file type"};
  }
  if (a.size > static_cast<std::uint64_t>(INT64_MAX)) return Fail{std::string("file size out of range")};
  if (a.blocks > static_cast<std::uint64_t>(INT64_MAX) / 512) {
    return Fail{std::string("block count out of range")};
  }
  if (a.blksize != 0 && ((a.blksize & (a.blksize - 1)) != 0 || a.blksize > (1u << 24))) {
    return Fail{"block size " + std::to_string(a.blksize) + " is not a power of two"};
  }
  return {};
}

Check checkEntry(const msg::Entry& e) {
  if (e.node == 0) return Fail{std::string("entry has node 0")};
  if (e.node == msg::kRootNode) return Fail{std::string("entry names the root node")};
  return checkAttr(e.attr);
}

Check checkEntryType(const msg::Entry& e, std::uint32_t expectedType) {
  if (auto ok = checkEntry(e); !ok) return ok;
  if ((e.attr.mode & S_IFMT) != expectedType) {
    return Fail{"entry has file type " + std::to_string(e.attr.mode & S_IFMT) + ", expected " +
                std::to_string(expectedType)};
  }
  return {};
}

Check checkName(const std::string& name) {
  if (name.empty()) return Fail{std::string("empty entry name")};
  if (name.size() > limits::kMaxNameBytes) return Fail{std::string("entry name too long")};
  if (name.find('/') != std::string::npos) return Fail{"entry name '" + name + "' contains '/'"};
  return {};
}

Check checkDirEntries(const msg::body::Entries& entries, std::uint64_t requestOffset, bool plus) {
  std::set<std::uint64_t> offsets;
  for (const auto& d : entries.items) {
    if (auto ok = checkName(d.name); !ok) return ok;
    // An offset of 0 or of the request itself would make the kernel list the same entries
    // again and again.
    if (d.nextOffset == 0 || d.nextOffset == requestOffset || !offsets.insert(d.nextOffset).second) {
      return Fail{"directory offset " + std::to_string(d.nextOffset) + " would repeat the listing"};
    }
    if (d.entry) {
      if (!plus) return Fail{std::string("plain readdir reply carries attributes")};
      if (d.name == "." || d.name == "..") return Fail{"'" + d.name + "' carries attributes"};
      if (auto ok = checkEntry(*d.entry); !ok) return ok;
    }
  }
  return {};
}

Check checkHandle(msg::HandleId handle) {
  if (handle == 0) return Fail{std::string("handle 0")};
  return {};
}

Check checkDataSize(std::size_t got, std::size_t asked) {
  if (got > asked) {
    return Fail{"reply carries " + std::to_string(got) + " bytes, " + std::to_string(asked) +
                " were asked for"};
  }
  return {};
}

Check checkLinkTarget(const std::string& target) {
  if (target.empty()) return Fail{std::string("empty link target")};
  if (target.size() >= limits::kMaxPathBytes) return Fail{std::string("link target too long")};
  return {};
}

Check checkLinkStaysInside(const std::string& target) {
  if (target.front() == '/') return Fail{std::string("target is absolute")};
  std::size_t start = 0;
  while (start <= target.size()) {
    std::size_t end = target.find('/', start);
    if (end == std::string::npos) end = target.size();
    if (target.compare(start, end - start, "..") == 0) {
      return Fail{std::string("target climbs with '..'")};
    }
    start = end + 1;
  }
  return {};
}

Check checkLock(const msg::Lock& lock) {
  if (lock.type != F_RDLCK && lock.type != F_WRLCK && lock.type != F_UNLCK) {
    return Fail{"lock type " + std::to_string(lock.type) + " is not a lock type"};
  }
  if (lock.start > static_cast<std::uint64_t>(INT64_MAX)) return Fail{std::string("lock start out of range")};
  return {};
}

Check checkNotify(const msg::Notify& notify) {
  for (const auto& e : notify.entries) {
    if (e.parent == 0) return Fail{std::string("change names node 0")};
    if (auto ok = checkName(e.name); !ok) return ok;
  }
  for (msg::NodeId node : notify.inodes) {
    if (node == 0) return Fail{std::string("change names node 0")};
  }
  return {};
}

Check checkStatFs(const msg::body::StatFs& st) {
  if (st.bsize == 0 || st.frsize == 0) return Fail{std::string("statfs block size 0")};
  if (st.namemax == 0 || st.namemax > limits::kMaxNameBytes) {
    return Fail{"statfs name length " + std::to_string(st.namemax) + " out of range"};
  }
  if (st.bfree > st.blocks || st.bavail > st.blocks || st.ffree > st.files) {
    return Fail{std::string("statfs counts more free than total")};
  }
  return {};
}

Check checkXattrList(std::span<const std::byte> names) {
  if (names.empty()) return {};
  if (names.back() != std::byte{0}) return Fail{std::string("xattr list is not NUL-terminated")};
  const char* p = reinterpret_cast<const char*>(names.data());
  const char* end = p + names.size();
  while (p < end) {
    std::size_t len = std::strlen(p);
    if (len == 0) return Fail{std::string("xattr list has an empty name")};
    if (len > limits::kMaxXattrNameBytes) return Fail{std::string("xattr name too long")};
    p += len + 1;
  }
  return {};
}

Check checkVolumeWelcome(const msg::Welcome& welcome) {
  if (welcome.sectorSize != limits::kSectorBytes) {
    return Fail{"sector size " + std::to_string(welcome.sectorSize) + " (this client speaks " +
                std::to_string(limits::kSectorBytes) + ")"};
  }
  if (welcome.volumeSize % limits::kSectorBytes != 0 ||
      welcome.volumeSize < limits::kMinVolumeBytes ||
      welcome.volumeSize > limits::kMaxVolumeBytes) {
    return Fail{"volume size " + std::to_string(welcome.volumeSize) +
                " is not a whole number of sectors between " +
                std::to_string(limits::kMinVolumeBytes) + " and " +
                std::to_string(limits::kMaxVolumeBytes) + " bytes"};
  }
  if (welcome.maxRead < limits::kSectorBytes || welcome.maxWrite < limits::kSectorBytes) {
    return Fail{"largest read " + std::to_string(welcome.maxRead) + " or write " +
                std::to_string(welcome.maxWrite) + " is smaller than a sector"};
  }
  return {};
}

Check checkExportWelcome(const msg::Welcome& welcome) {
  if (auto valid = checkAttr(welcome.root); !valid) return Fail{"the root: " + valid.error()};
  const auto type = welcome.root.mode & S_IFMT;
  if (type != S_IFDIR && type != S_IFREG) {
    return Fail{"the root is neither a directory nor a regular file (mode " +
                std::to_string(welcome.root.mode) + ")"};
  }
  if (welcome.maxRead < kPageBytes || welcome.maxWrite < kPageBytes) {
    return Fail{"largest read " + std::to_string(welcome.maxRead) + " or write " +
                std::to_string(welcome.maxWrite) + " is smaller than a page"};
  }
  return {};
}

}  // namespace enclavefs::enclave
