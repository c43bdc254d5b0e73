#include "integration-tests/harness/process.h"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/thread_annotations.h"

extern char** environ;

namespace treaty::harness {
namespace {

Mutex g_check_mu;
std::function<bool()> g_failed GUARDED_BY(g_check_mu);

bool CurrentTestFailed() {
  MutexLock lock(g_check_mu);
  return g_failed && g_failed();
}

std::string ResolveInPath(const std::string& file) {
  if (file.find('/') != std::string::npos) return file;
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe)
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = dir + "/" + file;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return file;
}

void CloseIfOpen(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

void SetFailureCheck(std::function<bool()> failed) {
  MutexLock lock(g_check_mu);
  g_failed = std::move(failed);
}

bool IsStopped(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'T';
}

bool WaitUntil(const std::function<bool()>& condition, Duration timeout, Duration poll) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

std::vector<pid_t> ProcessesUsing(const std::string& dir) {
  std::vector<pid_t> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::error_code link_ec;
    std::string cwd = std::filesystem::read_symlink(entry.path() / "cwd", link_ec).string();
    std::ifstream cmd_in(entry.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(cmd_in)), std::istreambuf_iterator<char>());
    if ((!link_ec && cwd.rfind(dir, 0) == 0) || cmdline.find(dir) != std::string::npos) {
      found.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return found;
}

Result<uint16_t> FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Internal(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return Status::Internal(std::string("bind: ") + std::strerror(errno));
  }
  ::close(fd);
  return static_cast<uint16_t>(ntohs(addr.sin_port));
}

Result<std::unique_ptr<Process>> Process::Start(ProcessSpec spec) {
  if (spec.argv.empty()) return Status::InvalidArgument("no command to run");
  std::unique_ptr<Process> p(new Process(std::move(spec)));
  const ProcessSpec& s = p->spec_;

  // Everything the child needs is prepared here: after fork() only async-signal-safe calls.
  std::string exe = ResolveInPath(s.argv[0]);
  std::vector<char*> argv;
  for (const std::string& a : s.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    std::string key = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [k, v] : s.env) replaced = replaced || k == key;
    if (!replaced) env_storage.push_back(entry);
  }
  for (const auto& [k, v] : s.env) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool switch_user = !s.run_as.empty() && ::geteuid() == 0;
  if (switch_user) {
    passwd* pw = ::getpwnam(s.run_as.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (pw == nullptr) return Status::InvalidArgument("no such user: " + s.run_as);
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    int n = 32;
    groups.resize(n);
    if (::getgrouplist(s.run_as.c_str(), gid, groups.data(), &n) < 0) groups.resize(n);
    ::getgrouplist(s.run_as.c_str(), gid, groups.data(), &n);
    groups.resize(n);
  }

  int log_fd = ::open(s.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::Internal("open " + s.log_path + ": " + std::strerror(errno));
  if (switch_user && ::fchown(log_fd, uid, gid) != 0) {
    // Not fatal: the child writes through the inherited descriptor.
  }
  int in_pipe[2] = {-1, -1};
  int out_pipe[2] = {-1, -1};
  int exec_pipe[2] = {-1, -1};  // reports a failed exec (errno) to the parent
  if ((s.pipe_stdin && ::pipe2(in_pipe, O_CLOEXEC) != 0) ||
      (s.pipe_stdout && ::pipe2(out_pipe, O_CLOEXEC) != 0) || ::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    ::close(log_fd);
    return Status::Internal(std::string("pipe: ") + std::strerror(errno));
  }
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return Status::Internal(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    auto fail = [&](int err) {
      ssize_t ignored = ::write(exec_pipe[1], &err, sizeof err);
      (void)ignored;
      ::_exit(127);
    };
    ::dup2(s.pipe_stdin ? in_pipe[0] : devnull, STDIN_FILENO);
    ::dup2(s.pipe_stdout ? out_pipe[1] : log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    if (!s.cwd.empty() && ::chdir(s.cwd.c_str()) != 0) fail(errno);
    if (switch_user) {
      if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 ||
          ::setuid(uid) != 0) {
        fail(errno);
      }
    }
    // After the user switch, which clears it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    // Signals blocked in the parent's thread would stay blocked across exec.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(exe.c_str(), argv.data(), envp.data());
    fail(errno);
  }
  p->pid_ = pid;
  ::close(log_fd);
  ::close(devnull);
  ::close(exec_pipe[1]);
  if (s.pipe_stdin) {
    ::close(in_pipe[0]);
    p->stdin_fd_ = in_pipe[1];
  }
  if (s.pipe_stdout) {
    ::close(out_pipe[1]);
    p->stdout_fd_ = out_pipe[0];
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (n > 0) {
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    p->pid_ = -1;
    return Status::Internal("cannot start " + s.name + " (" + exe +
                            "): " + std::strerror(child_errno));
  }
  return p;
}

Process::~Process() {
  if (pid_ > 0 && Running()) {
    Stop(std::chrono::seconds(10));
  }
  CloseIfOpen(stdin_fd_);
  CloseIfOpen(stdout_fd_);
  if (CurrentTestFailed()) {
    std::cerr << "----- log of " << spec_.name << " (pid " << pid_ << ", " << spec_.log_path
              << ") -----\n"
              << ReadLog() << "----- end of " << spec_.name << " -----\n";
  }
}

void Process::Reaped(int ws) {
  exit_status_ = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

bool Process::Running() {
  if (exit_status_ || pid_ <= 0) return false;
  int ws = 0;
  pid_t r = ::waitpid(pid_, &ws, WNOHANG);
  if (r == pid_) {
    Reaped(ws);
    return false;
  }
  return true;
}

Status Process::Signal(int sig) {
  if (!Running()) return Status::NotFound(spec_.name + " is not running");
  if (::kill(pid_, sig) != 0) return Status::Internal(std::string("kill: ") + std::strerror(errno));
  return Status::Ok();
}

Result<int> Process::Wait(Duration timeout) {
  if (!WaitUntil([this] { return !Running(); }, timeout, std::chrono::milliseconds(10))) {
    return Status::DeadlineExceeded(spec_.name + " still runs after " + FormatDuration(timeout));
  }
  if (!exit_status_) return Status::NotFound(spec_.name + " was never started");
  return *exit_status_;
}

Result<int> Process::Stop(Duration grace) {
  if (Running()) {
    ::kill(pid_, SIGTERM);
    auto r = Wait(grace);
    if (r.ok()) return r;
    std::cerr << "harness: " << spec_.name << " ignored SIGTERM for " << FormatDuration(grace)
              << "; killing it\n";
  }
  return Kill();
}

Result<int> Process::Kill() {
  if (Running()) {
    ::kill(pid_, SIGKILL);
    int ws = 0;
    if (::waitpid(pid_, &ws, 0) == pid_) Reaped(ws);
  }
  if (!exit_status_) return Status::NotFound(spec_.name + " was never started");
  return *exit_status_;
}

Status Process::WriteLine(const std::string& line) {
  if (stdin_fd_ < 0) return Status::InvalidArgument(spec_.name + " has no stdin pipe");
  std::string data = line + "\n";
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(stdin_fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Unavailable(spec_.name + ": stdin closed");
    p += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::optional<std::string> Process::ReadLine(Duration timeout) {
  if (stdout_fd_ < 0) return std::nullopt;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    size_t nl = stdout_buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = stdout_buffer_.substr(0, nl);
      stdout_buffer_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd pfd{stdout_fd_, POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[4096];
    ssize_t n = ::read(stdout_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    stdout_buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::string Process::ReadLog() const {
  std::ifstream in(spec_.log_path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace treaty::harness
