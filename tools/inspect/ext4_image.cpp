#include "tools/inspect/ext4_image.h"

#include <ext2fs/ext2fs.h>  // also declares the com_err error table of ext2 (ext2_err.h)

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <utility>

namespace enclavefs::inspect {
namespace {

std::string errorText(errcode_t error) {
  return error_message(error);
}

char typeOf(std::uint16_t mode) {
  switch (mode & LINUX_S_IFMT) {
    case LINUX_S_IFREG:
      return '-';
    case LINUX_S_IFDIR:
      return 'd';
    case LINUX_S_IFLNK:
      return 'l';
    case LINUX_S_IFCHR:
      return 'c';
    case LINUX_S_IFBLK:
      return 'b';
    case LINUX_S_IFIFO:
      return 'p';
    case LINUX_S_IFSOCK:
      return 's';
    default:
      return '?';
  }
}

std::string uuidText(const unsigned char (&uuid)[16]) {
  std::string text;
  for (std::size_t i = 0; i < sizeof uuid; ++i) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", uuid[i]);
    text += hex;
    if (i == 3 || i == 5 || i == 7 || i == 9) text += '-';
  }
  return text;
}

// Seconds of a 32-bit inode time, extended by the epoch bits of its "extra" field where the
// inode is large enough to have one (times past 2038).
std::int64_t inodeTime(std::uint32_t seconds, std::uint32_t extra, bool hasExtra) {
  std::int64_t value = static_cast<std::int32_t>(seconds);
  if (hasExtra) value += static_cast<std::int64_t>(extra & EXT4_EPOCH_MASK) << 32;
  return value;
}

struct Found {
  std::string name;
  ext2_ino_t inode;
};

int collect(ext2_ino_t, int, ext2_dir_entry* entry, int, int, char*, void* context) {
  auto* found = static_cast<std::vector<Found>*>(context);
  std::string name(entry->name, static_cast<std::size_t>(ext2fs_dirent_name_len(entry)));
  if (name != "." && name != "..") found->push_back({std::move(name), entry->inode});
  return 0;
}

}  // namespace

std::string typeName(char type) {
  switch (type) {
    case '-':
      return "file";
    case 'd':
      return "directory";
    case 'l':
      return "symlink";
    case 'c':
      return "char-device";
    case 'b':
      return "block-device";
    case 'p':
      return "fifo";
    case 's':
      return "socket";
    default:
      return "unknown";
  }
}

Result<Ext4Image, std::string> Ext4Image::open(const host::VolumeFile& volume) {
  initialize_ext2_error_table();  // idempotent; without it errors read "Unknown code ext2 N"
  const std::string device = "/proc/self/fd/" + std::to_string(volume.fd());
  const std::string options = "offset=" + std::to_string(volume.header().dataOffset);
  ext2_filsys fs = nullptr;
  // Flags without EXT2_FLAG_RW: read-only. 64BITS: file systems with the 64bit feature.
  errcode_t error =
      ext2fs_open2(device.c_str(), options.c_str(), EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
  const std::string what = "the ext4 file system of volume " + volume.path();
  if (error != 0) return Fail{"cannot open " + what + ": " + errorText(error)};
  return Ext4Image(fs, what);
}

Ext4Image::Ext4Image(Ext4Image&& other) noexcept
    : fs_(std::exchange(other.fs_, nullptr)), what_(std::move(other.what_)) {}

Ext4Image::~Ext4Image() {
  if (fs_ != nullptr) ext2fs_close_free(&fs_);
}

Ext4Summary Ext4Image::summary() const {
  const ext2_super_block& sb = *fs_->super;
  Ext4Summary s;
  const char* label = reinterpret_cast<const char*>(sb.s_volume_name);
  s.label.assign(label, strnlen(label, sizeof sb.s_volume_name));
  s.uuid = uuidText(sb.s_uuid);
  s.blockSize = fs_->blocksize;
  s.blocks = ext2fs_blocks_count(fs_->super);
  s.freeBlocks = ext2fs_free_blocks_count(fs_->super);
  s.inodes = sb.s_inodes_count;
  s.freeInodes = sb.s_free_inodes_count;
  s.clean = (sb.s_state & EXT2_VALID_FS) != 0 && (sb.s_state & EXT2_ERROR_FS) == 0;
  s.needsRecovery = ext2fs_has_feature_journal_needs_recovery(fs_->super);
  s.lastWritten =
      static_cast<std::int64_t>(sb.s_wtime) | (static_cast<std::int64_t>(sb.s_wtime_hi) << 32);
  return s;
}

Result<std::vector<Ext4Entry>, std::string> Ext4Image::list(const std::string& dir) const {
  if (!dir.starts_with("/")) {
    return Fail{"'" + dir + "' is not an absolute path inside the file system (as in /var/lib)"};
  }
  ext2_ino_t dirInode = 0;
  errcode_t error = ext2fs_namei_follow(fs_, EXT2_ROOT_INO, EXT2_ROOT_INO, dir.c_str(), &dirInode);
  if (error == EXT2_ET_FILE_NOT_FOUND) return Fail{"there is no " + dir + " in " + what_};
  if (error == EXT2_ET_NO_DIRECTORY) {
    return Fail{"there is no " + dir + " in " + what_ + ": part of the path is not a directory"};
  }
  if (error != 0) return Fail{"cannot look up " + dir + " in " + what_ + ": " + errorText(error)};

  ext2_inode dirAttributes{};
  if ((error = ext2fs_read_inode(fs_, dirInode, &dirAttributes)) != 0) {
    return Fail{"cannot read " + dir + " in " + what_ + ": " + errorText(error)};
  }
  if (!LINUX_S_ISDIR(dirAttributes.i_mode)) {
    return Fail{dir + " in " + what_ + " is not a directory (it is a " +
                typeName(typeOf(dirAttributes.i_mode)) + ")"};
  }

  std::vector<Found> found;
  error = ext2fs_dir_iterate2(fs_, dirInode, 0, nullptr, collect, &found);
  if (error != 0) return Fail{"cannot list " + dir + " in " + what_ + ": " + errorText(error)};

  // Times past 2038 live in the large inode's extra fields, present when i_extra_isize
  // reaches them.
  constexpr std::size_t kMtimeExtraEnd =
      offsetof(ext2_inode_large, i_mtime_extra) + sizeof(ext2_inode_large::i_mtime_extra);
  std::vector<Ext4Entry> entries;
  entries.reserve(found.size());
  for (Found& f : found) {
    ext2_inode_large inode{};
    error =
        ext2fs_read_inode_full(fs_, f.inode, reinterpret_cast<ext2_inode*>(&inode), sizeof inode);
    if (error != 0) {
      return Fail{"cannot read inode " + std::to_string(f.inode) + " of " + dir + " in " + what_ +
                  ": " + errorText(error)};
    }
    Ext4Entry e;
    e.name = std::move(f.name);
    e.inode = f.inode;
    e.type = typeOf(inode.i_mode);
    e.permissions = inode.i_mode & 07777;
    e.size = EXT2_I_SIZE(&inode);
    e.mtime =
        inodeTime(inode.i_mtime, inode.i_mtime_extra,
                  EXT2_GOOD_OLD_INODE_SIZE + std::size_t{inode.i_extra_isize} >= kMtimeExtraEnd);
    e.uid = inode_uid(inode);
    e.gid = inode_gid(inode);
    e.links = inode.i_links_count;
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(),
            [](const Ext4Entry& a, const Ext4Entry& b) { return a.name < b.name; });
  return entries;
}

}  // namespace enclavefs::inspect
