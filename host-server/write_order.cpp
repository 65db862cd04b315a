#include "host-server/write_order.h"

namespace enclavefs::host {

bool WriteOrder::mayStart(bool isWrite) {
  if (writing_ || !waiting_.empty()) return false;
  writing_ = isWrite;
  return true;
}

void WriteOrder::finished() {
  writing_ = false;
  // A write resumed below may finish inline and come back here: the outer loop goes on.
  if (resuming_) return;
  resuming_ = true;
  while (!writing_ && !waiting_.empty()) {
    Waiter next = waiting_.front();
    waiting_.pop_front();
    writing_ = next.isWrite;
    next.handle.resume();
  }
  resuming_ = false;
}

}  // namespace enclavefs::host
