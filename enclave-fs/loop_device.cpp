#include "enclave-fs/loop_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

namespace enclavefs::enclave {
namespace {

// Another process may take the device LOOP_CTL_GET_FREE offered before we configure it.
constexpr int kAttempts = 8;

UniqueFd openDevice(const std::string& path) {
  // devtmpfs makes the node when the device is added; give it a moment.
  for (int i = 0; i < 100; ++i) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (fd || errno != ENOENT) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return UniqueFd();
}

}  // namespace

LoopDevice::LoopDevice(UniqueFd fd, int number)
    : fd_(std::move(fd)), number_(number), path_("/dev/loop" + std::to_string(number)) {}

Result<LoopDevice, std::string> LoopDevice::attach(const std::string& backingPath,
                                                   std::uint32_t blockSize, bool readOnly) {
  UniqueFd backing(::open(backingPath.c_str(), (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!backing) return Fail{"cannot open " + backingPath + ": " + std::strerror(errno)};
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return Fail{std::string("cannot open /dev/loop-control: ") + std::strerror(errno)};

  loop_config config{};
  config.fd = static_cast<std::uint32_t>(backing.get());
  config.block_size = blockSize;
  config.info.lo_flags = LO_FLAGS_DIRECT_IO | LO_FLAGS_AUTOCLEAR | (readOnly ? LO_FLAGS_READ_ONLY : 0);
  std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), backingPath.c_str(),
               LO_NAME_SIZE - 1);
  int lastError = 0;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) return Fail{std::string("no free loop device: ") + std::strerror(errno)};
    std::string path = "/dev/loop" + std::to_string(number);
    UniqueFd device = openDevice(path);
    if (!device) return Fail{"cannot open " + path + ": " + std::strerror(errno)};
    if (::ioctl(device.get(), LOOP_CONFIGURE, &config) == 0) {
      return LoopDevice(std::move(device), number);
    }
    lastError = errno;
    if (lastError != EBUSY) break;
  }
  return Fail{"cannot attach a loop device to " + backingPath + ": " + std::strerror(lastError)};
}

bool LoopDevice::directIo() const {
  std::ifstream dio("/sys/block/loop" + std::to_string(number_) + "/loop/dio");
  int value = 0;
  return (dio >> value) && value == 1;
}

bool LoopDevice::setReadAhead(std::uint32_t kib) {
  return ::ioctl(fd_.get(), BLKRASET, static_cast<unsigned long>(kib) * 2) == 0;  // 512-byte sectors
}

void LoopDevice::detach() {
  if (fd_) ::ioctl(fd_.get(), LOOP_CLR_FD, 0);
  fd_.reset();
}

}  // namespace enclavefs::enclave
