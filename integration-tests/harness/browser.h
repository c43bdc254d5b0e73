#pragma once

// A real headless Chromium, driven over the W3C WebDriver protocol through chromedriver (Debian's
// chromium and chromium-driver packages), for tests of pages treatyd serves. Both run as child
// processes (see process.h); the browser gets a fresh profile and no network beyond what the
// page asks for.

#include <memory>
#include <string>

#include "common/duration.h"
#include "common/status.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"

namespace treaty::harness {

class Browser {
 public:
  // Starts chromedriver on a free port and opens one headless Chromium session.
  static Result<std::unique_ptr<Browser>> Start();
  ~Browser();  // ends the session, then chromedriver

  Status Navigate(const std::string& url);
  // Runs `script` (a function body; `arguments` is empty) in the page and returns what it
  // returned, as JSON text.
  Result<std::string> Run(const std::string& script);
  // Runs `script` until it returns true or `timeout` passes; DeadlineExceeded then, naming it.
  Status WaitFor(const std::string& script, Duration timeout = std::chrono::seconds(20));
  // Clicks the first element matching the CSS `selector`, as a user would.
  Status Click(const std::string& selector);
  // Types `text` into the element matching `selector`.
  Status Type(const std::string& selector, const std::string& text);
  // Saves a PNG of the window to `path`.
  Status Screenshot(const std::string& path);
  // Saves a PNG of the first element matching `selector` to `path`.
  Status ScreenshotElement(const std::string& selector, const std::string& path);

 private:
  Browser() = default;
  // One WebDriver command on the session; returns the JSON text of its "value".
  Result<std::string> Command(const std::string& method, const std::string& path,
                              const std::string& body = "");
  Result<std::string> FindElement(const std::string& selector);
  // Writes the base64 PNG of a screenshot command's answer to `path`.
  static Status SavePng(const Result<std::string>& answer, const std::string& path);

  TempDir dir_;
  std::unique_ptr<Process> driver_;
  std::string base_;     // http://127.0.0.1:<port>
  std::string session_;  // /session/<id>
};

}  // namespace treaty::harness
