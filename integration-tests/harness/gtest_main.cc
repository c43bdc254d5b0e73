// main() for integration tests: the harness prints the log of every process a failed test
// started, before that process's files are removed.

#include <gtest/gtest.h>

#include "integration-tests/harness/process.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  treaty::harness::SetFailureCheck([] { return ::testing::Test::HasFailure(); });
  return RUN_ALL_TESTS();
}
