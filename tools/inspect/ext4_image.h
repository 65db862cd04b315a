// A read-only look into the ext4 file system on a volume, through libext2fs: a summary of its
// superblock and the listing of one directory. Nothing is mounted and nothing is written (the
// file system is opened without EXT2_FLAG_RW). libext2fs stays behind this file; the rest of
// enclavefs-inspect sees plain structs.
//
// The file system was written by an enclave, so everything in it is the enclave's choice:
// names are returned as the raw bytes they are, for the caller to make printable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "host-server/volume_file.h"

struct struct_ext2_filsys;  // libext2fs's handle

namespace enclavefs::inspect {

struct Ext4Summary {
  std::string label;
  std::string uuid;
  std::uint32_t blockSize = 0;
  std::uint64_t blocks = 0;
  std::uint64_t freeBlocks = 0;
  std::uint32_t inodes = 0;
  std::uint32_t freeInodes = 0;
  bool clean = false;          // unmounted cleanly and no errors recorded
  bool needsRecovery = false;  // the journal holds changes not yet applied
  std::int64_t lastWritten = 0;
};

struct Ext4Entry {
  std::string name;
  std::uint32_t inode = 0;
  char type = '?';  // as ls -l shows it: '-' file, 'd', 'l', 'c', 'b', 'p', 's'; '?' unknown
  std::uint32_t permissions = 0;  // mode & 07777
  std::uint64_t size = 0;
  std::int64_t mtime = 0;
  std::uint32_t uid = 0, gid = 0;
  std::uint32_t links = 0;
};

// "file", "directory", "symlink", ... for an Ext4Entry::type.
std::string typeName(char type);

class Ext4Image {
 public:
  // Opens the file system in the data area of `volume`, through the volume's own descriptor
  // (so it is the file that was checked, even if the name was replaced since).
  static Result<Ext4Image, std::string> open(const host::VolumeFile& volume);
  Ext4Image(Ext4Image&& other) noexcept;
  Ext4Image& operator=(Ext4Image&&) = delete;
  Ext4Image(const Ext4Image&) = delete;
  ~Ext4Image();

  Ext4Summary summary() const;
  // The entries of directory `dir` (an absolute path; symbolic links are followed inside the
  // file system), without "." and "..", sorted by name. Errors say what `dir` is instead.
  Result<std::vector<Ext4Entry>, std::string> list(const std::string& dir) const;

 private:
  Ext4Image(struct_ext2_filsys* fs, std::string what) : fs_(fs), what_(std::move(what)) {}
  struct_ext2_filsys* fs_;
  std::string what_;  // "the ext4 file system of volume PATH", for errors
};

}  // namespace enclavefs::inspect
