#include "integration-tests/harness/temp_dir.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace treaty::harness {
namespace fs = std::filesystem;

namespace {

constexpr const char* kRootPrefix = "treaty-harness-";

void SweepStaleRoots() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(kRootPrefix, 0) != 0) continue;
    char* end = nullptr;
    long pid = std::strtol(name.c_str() + std::strlen(kRootPrefix), &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH)
      fs::remove_all(entry.path(), ec);
  }
}

void RemoveRoot() {
  std::error_code ec;
  fs::remove_all(HarnessRoot(), ec);
}

}  // namespace

const std::string& HarnessRoot() {
  // Never destroyed: RemoveRoot runs at exit, after static destructors may have run.
  static const std::string* root = [] {
    SweepStaleRoots();
    auto* path = new std::string(
        (fs::temp_directory_path() / (kRootPrefix + std::to_string(::getpid()))).string());
    ::mkdir(path->c_str(), 0755);
    ::chmod(path->c_str(), 0755);
    return path;
  }();
  static const bool registered = std::atexit(RemoveRoot) == 0;
  (void)registered;
  return *root;
}

Result<TempDir> TempDir::Create(const std::string& prefix) {
  std::string pattern = HarnessRoot() + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Status::Internal("mkdtemp " + pattern + ": " + std::strerror(errno));
  }
  ::chmod(pattern.c_str(), 0755);
  return TempDir(pattern);
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    this->~TempDir();
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace treaty::harness
