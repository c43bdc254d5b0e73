#pragma once

// A child process started by a test or the demo, ended by its pid, never by name.
//
// Children get PR_SET_PDEATHSIG(SIGKILL), so they die with the test process even when it is
// killed; start them from the thread that lives as long as they should (the main thread).
// stdout and stderr go to a log file; the log of every process started is printed when the
// current test has failed (see SetFailureCheck).

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/duration.h"
#include "common/status.h"

namespace treaty::harness {

struct ProcessSpec {
  std::string name;               // for messages and log dumps
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::pair<std::string, std::string>> env;  // added to (or replacing in) ours
  std::string log_path;                                  // stdout and stderr go here (appended)
  std::string cwd;                                       // empty: ours
  std::string run_as;        // a user to switch to; only when we are root
  bool pipe_stdin = false;   // WriteLine() feeds it; otherwise /dev/null
  bool pipe_stdout = false;  // ReadLine() reads it; stderr still goes to the log
};

class Process {
 public:
  static Result<std::unique_ptr<Process>> Start(ProcessSpec spec);

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Stops the process if it still runs (SIGTERM, then SIGKILL) and prints its log when the
  // current test has failed.
  ~Process();

  pid_t pid() const { return pid_; }
  const std::string& name() const { return spec_.name; }
  const std::string& log_path() const { return spec_.log_path; }

  // True while the process has not exited (reaps it when it has).
  bool Running();
  // The exit status once exited: the code, or 128 + signal number.
  std::optional<int> ExitStatus() const { return exit_status_; }

  Status Signal(int sig);
  // Waits for exit; DeadlineExceeded if it is still running after `timeout`.
  Result<int> Wait(Duration timeout);
  // SIGTERM, then SIGKILL after `grace`; returns the exit status.
  Result<int> Stop(Duration grace = std::chrono::seconds(10));
  // SIGKILL and reap.
  Result<int> Kill();

  Status WriteLine(const std::string& line);
  // One line from stdout without its newline; nullopt at timeout or end of file.
  std::optional<std::string> ReadLine(Duration timeout);

  std::string ReadLog() const;

 private:
  explicit Process(ProcessSpec spec) : spec_(std::move(spec)) {}
  void Reaped(int wait_status);

  ProcessSpec spec_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  std::string stdout_buffer_;
};

// Installs the predicate the harness asks, when a process ends, whether to print its log (e.g.
// "the current gtest test has failed").
void SetFailureCheck(std::function<bool()> failed);

// Polls `condition` every `poll` until it holds or `timeout` passes; true if it held.
bool WaitUntil(const std::function<bool()>& condition, Duration timeout,
               Duration poll = std::chrono::milliseconds(20));

// Processes whose working directory or command line lies under `dir`: what a clean stop must
// leave none of.
std::vector<pid_t> ProcessesUsing(const std::string& dir);

// Whether the process is stopped (SIGSTOP): state "T" in /proc/<pid>/stat.
bool IsStopped(pid_t pid);

// A TCP port on 127.0.0.1 that was free a moment ago.
Result<uint16_t> FreePort();

}  // namespace treaty::harness
