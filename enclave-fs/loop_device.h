// A loop device over the block mount's FUSE file.
//
// It is configured in one LOOP_CONFIGURE call with direct I/O (no second copy of every
// sector in the enclave's page cache), the volume's sector size as its logical block size,
// and autoclear: the kernel detaches it when its last user closes it, which is the moment
// `umount` of the file system on it returns. Nothing in the enclave has to watch for that:
// the FUSE file's last release is the signal (block_fs.h).
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace enclavefs::enclave {

class LoopDevice {
 public:
  // Attaches `backingPath` to a free loop device. Errors say which step failed.
  static Result<LoopDevice, std::string> attach(const std::string& backingPath,
                                                std::uint32_t blockSize, bool readOnly);

  LoopDevice(LoopDevice&&) = default;
  LoopDevice& operator=(LoopDevice&&) = default;
  // Closes the device: with autoclear, a device nothing else holds (no mount) detaches.
  ~LoopDevice() = default;

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  // Whether the kernel uses direct I/O to the backing file (it may decline).
  bool directIo() const;
  // Sets how far the kernel reads ahead of sequential reads of the device; false if it
  // refused (errno says why).
  bool setReadAhead(std::uint32_t kib);
  // Detaches the device (for a setup that failed before anything was mounted on it).
  void detach();

 private:
  LoopDevice(UniqueFd fd, int number);
  UniqueFd fd_;
  int number_ = -1;
  std::string path_;
};

}  // namespace enclavefs::enclave
