// The enclave's table of writes answered before the host did (enclave-fs/write_behind.h).
#include "enclave-fs/write_behind.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <vector>

using enclavefs::enclave::WriteBehind;

TEST_CASE("a close waits for the writes started before it, not for later ones") {
  WriteBehind writes;
  std::vector<int> reported;
  writes.started(7);
  writes.started(7);
  writes.whenSettled(7, [&](int error) { reported.push_back(error); });
  writes.started(7);  // after the close: it must not hold the close back
  writes.finished(7, 0);
  CHECK(reported.empty());
  writes.finished(7, 0);
  CHECK(reported == std::vector<int>{0});
  writes.finished(7, 0);
  CHECK(reported.size() == 1);
}

TEST_CASE("the first error of a node's writes is reported once, by the next close or fsync") {
  WriteBehind writes;
  writes.started(3);
  writes.started(3);
  writes.finished(3, ENOSPC);
  writes.finished(3, EIO);
  int reported = -1;
  writes.whenSettled(3, [&](int error) { reported = error; });
  CHECK(reported == ENOSPC);
  CHECK(writes.takeError(3) == 0);
  writes.started(3);
  writes.finished(3, EIO);
  CHECK(writes.takeError(3) == EIO);
  CHECK(writes.takeError(3) == 0);
  // Another node's writes are its own.
  writes.started(4);
  writes.finished(4, EDQUOT);
  CHECK(writes.takeError(3) == 0);
  CHECK(writes.takeError(4) == EDQUOT);
}

TEST_CASE("with nothing unanswered a close is answered at once") {
  WriteBehind writes;
  int reported = -1;
  writes.whenSettled(9, [&](int error) { reported = error; });
  CHECK(reported == 0);
}
