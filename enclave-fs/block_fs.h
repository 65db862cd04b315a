// The block-mount FUSE file system: one private directory holding one file, `volume`, whose
// bytes are the sectors of a volume on the host. A loop device attached to that file turns it
// into a disk for the enclave's own ext4 (block_mount.h does that).
//
// Each read, write, fsync and fallocate of the file becomes one sector request, made the way
// the basic file system makes its requests: a FUSE thread sends and returns, the connection's
// receiver thread checks the host's answer and replies. The loop device opens the file for
// direct I/O, so the enclave's page cache sits above ext4 only; below it, the bytes around
// small reads that follow each other are fetched and kept (read_around.h).
//
//   read             -> sectorRead (the answer must carry exactly the bytes asked for), of
//                       the read or of the window around it, or none (read_around.h)
//   write            -> sectorWrite, with FUA for O_DSYNC/O_SYNC writes
//   fsync            -> sectorFlush
//   fallocate        -> sectorTrim (punch hole) or sectorWriteZeroes (zero range)
//
// Like a disk's volatile write cache, a write without FUA is answered once it is on its way
// to the host (when the host runs requests in order, msg::kFeatureOrderedWrites): the host
// runs it before anything sent after it, so later reads see it, and an error it meets is
// reported by the next fsync (a flush), which is where a file system learns that its data
// is safe. Writes with FUA, which promise that at their answer, wait for the host.
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "enclave-fs/connection.h"
#include "enclave-fs/read_around.h"
#include "enclave-fs/write_behind.h"

namespace spdlog {
class logger;
}

namespace enclavefs::enclave {

class BlockFs {
 public:
  static constexpr const char* kFileName = "volume";

  // The volume's size and sector size come from the connection's (checked) welcome.
  BlockFs(Connection& connection, bool readOnly);

  static BlockFs& of(fuse_req_t req) { return *static_cast<BlockFs*>(fuse_req_userdata(req)); }

  Connection& connection() { return connection_; }
  std::uint64_t size() const { return size_; }
  std::uint32_t sectorSize() const { return sectorSize_; }
  // The largest read and write this mount makes: what the host accepts, at most the
  // protocol's limit, in whole sectors.
  std::uint32_t maxRead() const { return maxRead_; }
  std::uint32_t maxWrite() const { return maxWrite_; }
  bool readOnly() const { return readOnly_; }
  ReadAround& readAround() { return readAround_; }
  // Writes are answered before the host's answer (the host keeps them in order).
  bool writesBehind() const { return writesBehind_; }
  WriteBehind& pendingWrites() { return pendingWrites_; }
  spdlog::logger& log() const { return *log_; }
  struct stat statOf(fuse_ino_t ino) const;

  // Logs why a host reply was refused and yields the errno the kernel sees.
  int refuse(const char* op, const std::string& why) const;

  // Open-file accounting. Once armed (after the loop device holds the file and every other
  // descriptor is closed), the release that closes the last open calls `lastReleased`: the
  // loop device has let go, so the mount is over.
  void opened();
  void released();
  void armLastRelease(std::function<void()> lastReleased);

 private:
  Connection& connection_;
  const std::uint64_t size_;
  const std::uint32_t sectorSize_;
  const std::uint32_t maxRead_;
  const std::uint32_t maxWrite_;
  const bool readOnly_;
  const struct timespec mountTime_;
  std::shared_ptr<spdlog::logger> log_;
  ReadAround readAround_;
  const bool writesBehind_;
  WriteBehind pendingWrites_;

  std::mutex openMutex_;
  unsigned openFiles_ = 0;
  std::function<void()> lastReleased_;
};

const fuse_lowlevel_ops& blockOperations();

}  // namespace enclavefs::enclave
