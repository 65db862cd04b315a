// The protocol's messages as plain C++ values. common/wire.cpp converts them to and from
// Cap'n Proto; no other code sees wire types. Bulk bytes (file data, xattr values) are not
// part of these structs: they travel as the frame's raw payload beside them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace enclavefs::msg {

using NodeId = std::uint64_t;
using HandleId = std::uint64_t;

constexpr std::uint32_t kProtocolVersion = 1;

// Feature bits of Hello (what the client understands) and Welcome (what the host does).
// Change notifications: the host pushes notify frames when what a client holds changes.
constexpr std::uint64_t kFeatureChangeNotify = 1u << 0;
// Ordered writes: the host starts each request only after every write the client sent
// before it has finished, so the client may answer a write before the host does.
constexpr std::uint64_t kFeatureOrderedWrites = 1u << 1;
// Set-ID clearing: the host clears a file's set-ID bits before every write, truncate,
// O_TRUNC open and fallocate, so the client may leave them to it. (Hosts before that
// cleared them only where Request.killSetId asked.)
constexpr std::uint64_t kFeatureClearsSetId = 1u << 2;

// The export's root is node 1 on every connection, as it is for the FUSE kernel module.
constexpr NodeId kRootNode = 1;

enum class MountKind : std::uint8_t { basic, block };

struct Timespec {
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;
  bool operator==(const Timespec&) const = default;
};

struct Attr {
  std::uint64_t ino = 0;
  std::uint32_t mode = 0;
  std::uint32_t nlink = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t rdev = 0;
  std::uint64_t size = 0;
  std::uint64_t blocks = 0;
  std::uint32_t blksize = 0;
  Timespec atime, mtime, ctime;
  bool operator==(const Attr&) const = default;
};

struct Entry {
  NodeId node = 0;
  std::uint64_t generation = 0;
  Attr attr;
};

struct Hello {
  std::uint32_t version = 0;
  MountKind kind = MountKind::basic;
  std::string name;
  std::uint64_t features = 0;
};

struct Welcome {
  int error = 0;  // 0 = accepted, else an errno and `message` explains
  std::string message;
  std::uint32_t version = 0;
  std::uint64_t features = 0;
  bool readOnly = false;
  std::uint32_t maxWrite = 0;
  std::uint32_t maxRead = 0;
  Attr root;
  std::uint64_t volumeSize = 0;
  std::uint32_t sectorSize = 0;
};

// A byte-range lock; `end` is inclusive (UINT64_MAX = to the end of file).
struct Lock {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint32_t type = 0;  // F_RDLCK / F_WRLCK / F_UNLCK
  std::uint32_t pid = 0;
  bool operator==(const Lock&) const = default;
};

struct Caller {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
};

// Operations. The order of the alternatives in Op is the order of the schema's union, and
// opName() names them for logs.
namespace op {
struct Lookup {};
struct ForgetItem {
  NodeId node = 0;
  std::uint64_t count = 0;
};
struct Forget {
  std::vector<ForgetItem> items;
};
struct GetAttr {};
// Which SetAttr fields apply.
enum SetAttrValid : std::uint32_t {
  kMode = 1u << 0,
  kUid = 1u << 1,
  kGid = 1u << 2,
  kSize = 1u << 3,
  kAtime = 1u << 4,
  kMtime = 1u << 5,
  kAtimeNow = 1u << 6,
  kMtimeNow = 1u << 7,
  kCtime = 1u << 8,
};
struct SetAttr {
  std::uint32_t valid = 0;
  std::uint32_t mode = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;
  Timespec atime, mtime;
};
struct ReadLink {};
struct MakeNode {
  std::uint32_t mode = 0;
  std::uint32_t rdev = 0;
};
struct MakeDir {
  std::uint32_t mode = 0;
};
struct Unlink {};
struct RemoveDir {};
struct Symlink {
  std::string target;
};
struct Rename {
  NodeId newParent = 0;
  std::string newName;
  std::uint32_t flags = 0;
};
struct Link {
  NodeId newParent = 0;
  std::string newName;
};
struct Open {
  std::uint32_t flags = 0;
};
struct Create {
  std::uint32_t mode = 0;
  std::uint32_t flags = 0;
};
struct Read {
  std::uint64_t offset = 0;
  std::uint32_t size = 0;
};
struct Write {  // the data is the frame payload
  std::uint64_t offset = 0;
  std::uint32_t flags = 0;
};
struct Flush {};
struct Release {};
struct Fsync {
  bool datasync = false;
};
struct Fallocate {
  std::int32_t mode = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};
struct OpenDir {};
struct ReadDir {
  std::uint64_t offset = 0;
  std::uint32_t size = 0;
  bool plus = false;
};
struct ReleaseDir {};
struct FsyncDir {
  bool datasync = false;
};
struct StatFs {};
struct SetXattr {  // the value is the frame payload
  std::uint32_t flags = 0;
};
struct GetXattr {
  std::uint32_t size = 0;
};
struct ListXattr {
  std::uint32_t size = 0;
};
struct RemoveXattr {};
struct Lseek {
  std::uint64_t offset = 0;
  std::uint32_t whence = 0;
};
struct GetLock {
  std::uint64_t owner = 0;
  Lock lock;
};
struct SetLock {
  std::uint64_t owner = 0;
  Lock lock;
  bool wait = false;
};
struct Flock {
  std::uint32_t operation = 0;  // LOCK_SH / LOCK_EX / LOCK_UN | LOCK_NB
};
// Block volumes. Offsets and lengths are bytes, aligned to the volume's sector size.
struct SectorRead {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};
struct SectorWrite {  // the data is the frame payload
  std::uint64_t offset = 0;
  bool fua = false;  // stable before the reply
};
struct SectorFlush {};
struct SectorTrim {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};
struct SectorWriteZeroes {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};
}  // namespace op

using Op = std::variant<op::Lookup, op::Forget, op::GetAttr, op::SetAttr, op::ReadLink,
                        op::MakeNode, op::MakeDir, op::Unlink, op::RemoveDir, op::Symlink,
                        op::Rename, op::Link, op::Open, op::Create, op::Read, op::Write,
                        op::Flush, op::Release, op::Fsync, op::Fallocate, op::OpenDir,
                        op::ReadDir, op::ReleaseDir, op::FsyncDir, op::StatFs, op::SetXattr,
                        op::GetXattr, op::ListXattr, op::RemoveXattr, op::Lseek, op::GetLock,
                        op::SetLock, op::Flock, op::SectorRead, op::SectorWrite,
                        op::SectorFlush, op::SectorTrim, op::SectorWriteZeroes>;

const char* opName(const Op& op);
// Whether the operation's frame may carry a payload: write, setxattr and sectorWrite carry
// their data there. Any other request with one is a protocol fault.
bool takesPayload(const Op& op);
// The same by index in Op, and the index of the operation `name` names.
const char* opName(std::size_t index);
std::optional<std::size_t> opIndex(std::string_view name);

struct Request {
  NodeId node = 0;      // the inode operated on; the parent for operations on a name
  HandleId handle = 0;  // open file or directory, for operations that take one
  std::string name;     // entry name in `node`, for operations on a name
  Caller caller;
  Op op;
  std::uint64_t lockOwner = 0;  // flush: whose POSIX locks the close drops
  std::uint32_t openData = 0;   // open: how many leading file bytes to send with the reply
  bool noAtime = false;         // opendir: leave the directory's access time alone
  // The caller lacks CAP_FSETID (write, truncate, O_TRUNC): asked older hosts to clear the
  // file's set-ID bits first. This host ignores it and always clears them.
  bool killSetId = false;
};

// Reply bodies.
namespace body {
struct None {};
struct Opened {
  HandleId handle = 0;
};
struct Created {
  Entry entry;
  HandleId handle = 0;
};
struct Written {
  std::uint32_t count = 0;
};
struct Data {};  // the bytes are the frame payload
struct Size {
  std::uint32_t size = 0;
};
struct Target {
  std::string path;
};
struct DirEntry {
  std::string name;
  std::uint64_t ino = 0;
  std::uint32_t type = 0;  // DT_*
  std::uint64_t nextOffset = 0;
  std::optional<Entry> entry;  // readdirplus
};
struct Entries {
  std::vector<DirEntry> items;
};
struct StatFs {
  std::uint64_t blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0;
  std::uint32_t bsize = 0, frsize = 0, namemax = 0;
};
struct Offset {
  std::uint64_t offset = 0;
};
}  // namespace body

using Body = std::variant<body::None, Entry, Attr, body::Opened, body::Created, body::Written,
                          body::Data, body::Size, body::Target, body::Entries, body::StatFs,
                          body::Offset, Lock>;

// A node's attributes, as read at one moment.
struct NodeAttr {
  NodeId node = 0;
  Attr attr;
};

struct Reply {
  int error = 0;  // 0 or a positive errno; an error reply has no body
  Body body;
  // The attributes of those of directoriesChanged(request) that are directories, read after
  // it ran.
  std::vector<NodeAttr> dirAttrs;
};

// The nodes that may be directories whose entries or attributes a request changes (at most
// two): the directories where it adds, removes or renames names, and the node whose
// attributes or extended attributes it sets. (A directory moved by a rename also changes,
// its ctime and "..", but the request does not name its node.)
std::vector<NodeId> directoriesChanged(const Request& request);

// Pushed by the host: what the enclave kernel must stop trusting from its caches.
struct Notify {
  struct EntryChange {
    NodeId parent = 0;
    std::string name;
    bool operator==(const EntryChange&) const = default;
  };
  std::vector<EntryChange> entries;
  std::vector<NodeId> inodes;
  // Of `inodes`, the directories: their attributes after the change.
  std::vector<NodeAttr> dirAttrs;
  bool empty() const { return entries.empty() && inodes.empty(); }
};

}  // namespace enclavefs::msg
