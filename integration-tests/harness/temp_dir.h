#pragma once

// Temporary directories for tests and the demo. All of them live under one per-process root,
// /tmp/treaty-harness-<pid>, removed at normal exit; a root whose process is gone (a crash, a
// SIGKILL from a timeout) is swept by the next harness that starts.

#include <string>

#include "common/status.h"

namespace treaty::harness {

class TempDir {
 public:
  // Creates a fresh directory named after `prefix`, world-traversable (0755) so that a server run
  // as another user can reach what is below it.
  static Result<TempDir> Create(const std::string& prefix);

  TempDir() = default;
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();  // removes the directory and everything in it

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// The per-process root, created on first use.
const std::string& HarnessRoot();

}  // namespace treaty::harness
