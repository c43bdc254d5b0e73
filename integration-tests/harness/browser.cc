#include "integration-tests/harness/browser.h"

#include <Poco/Base64Decoder.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/http/http_client.h"
#include "common/json_text.h"

namespace treaty::harness {
namespace {

// The key W3C WebDriver names an element reference with.
constexpr const char* kElementKey = "element-6066-11e4-a52e-4f735466cecf";

std::string Stringify(const Poco::Dynamic::Var& v) {
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(v, out);
  return out.str();
}

// The "value" of a WebDriver answer, or its error as a Status.
Result<Poco::Dynamic::Var> ValueOf(const http::HttpReply& reply, const std::string& what) {
  try {
    Poco::JSON::Parser parser;
    auto obj = parser.parse(reply.body).extract<Poco::JSON::Object::Ptr>();
    Poco::Dynamic::Var value = obj->get("value");
    if (reply.status != 200) {
      std::string message = reply.body;
      if (value.type() == typeid(Poco::JSON::Object::Ptr)) {
        auto v = value.extract<Poco::JSON::Object::Ptr>();
        message =
            v->optValue<std::string>("error", "") + ": " + v->optValue<std::string>("message", "");
      }
      return Status::Internal(what + ": HTTP " + std::to_string(reply.status) + ": " + message);
    }
    return value;
  } catch (const Poco::Exception& e) {
    return Status::Internal(what + ": unreadable answer: " + e.displayText() + ": " + reply.body);
  }
}

}  // namespace

Result<std::unique_ptr<Browser>> Browser::Start() {
  std::unique_ptr<Browser> b(new Browser());
  auto dir = TempDir::Create("browser");
  if (!dir.ok()) return dir.status();
  b->dir_ = std::move(*dir);
  auto port = FreePort();
  if (!port.ok()) return port.status();
  auto driver = Process::Start(ProcessSpec{
      .name = "chromedriver",
      .argv = {"chromedriver", "--port=" + std::to_string(*port), "--allowed-ips=127.0.0.1"},
      .log_path = b->dir_.File("chromedriver.log"),
  });
  if (!driver.ok()) return driver.status();
  b->driver_ = std::move(*driver);
  b->base_ = "http://127.0.0.1:" + std::to_string(*port);
  bool up = WaitUntil(
      [&] {
        auto r = http::HttpCall("GET", b->base_ + "/status", "", std::chrono::seconds(2));
        return r.ok() && r->status == 200 && r->body.find("\"ready\":true") != std::string::npos;
      },
      std::chrono::seconds(30), std::chrono::milliseconds(100));
  if (!up) return Status::Unavailable("chromedriver did not start: " + b->driver_->ReadLog());

  // As root Chromium needs --no-sandbox. The background-networking flags keep it from dialing
  // Google's services, which this network refuses.
  std::string args;
  for (const char* a :
       {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1400,900"}) {
    args += (args.empty() ? "" : ",") + JsonQuote(a);
  }
  args += "," + JsonQuote("--user-data-dir=" + b->dir_.File("profile"));
  std::string caps = R"({"capabilities":{"alwaysMatch":{"browserName":"chrome",)"
                     R"("goog:chromeOptions":{"binary":"/usr/bin/chromium","args":[)" +
                     args + "]}}}}";
  auto reply = http::HttpCall("POST", b->base_ + "/session", caps, std::chrono::seconds(60));
  if (!reply.ok()) return reply.status();
  auto value = ValueOf(*reply, "new session");
  if (!value.ok()) return value.status();
  try {
    b->session_ =
        "/session/" + value->extract<Poco::JSON::Object::Ptr>()->getValue<std::string>("sessionId");
  } catch (const Poco::Exception& e) {
    return Status::Internal("new session: no session id: " + reply->body);
  }
  return b;
}

Browser::~Browser() {
  if (!session_.empty()) {
    (void)http::HttpCall("DELETE", base_ + session_, "", std::chrono::seconds(10));
  }
  if (driver_) (void)driver_->Stop(std::chrono::seconds(5));
}

Result<std::string> Browser::Command(const std::string& method, const std::string& path,
                                     const std::string& body) {
  auto reply = http::HttpCall(method, base_ + session_ + path, body, std::chrono::seconds(30));
  if (!reply.ok()) return reply.status();
  auto value = ValueOf(*reply, method + " " + path);
  if (!value.ok()) return value.status();
  return Stringify(*value);
}

Status Browser::Navigate(const std::string& url) {
  auto r = Command("POST", "/url", "{\"url\":" + JsonQuote(url) + "}");
  return r.ok() ? Status::Ok() : r.status();
}

Result<std::string> Browser::Run(const std::string& script) {
  return Command("POST", "/execute/sync", "{\"script\":" + JsonQuote(script) + ",\"args\":[]}");
}

Status Browser::WaitFor(const std::string& script, Duration timeout) {
  std::string last;
  bool held = WaitUntil(
      [&] {
        auto r = Run(script);
        last = r.ok() ? *r : r.status().message();
        return r.ok() && *r == "true";
      },
      timeout, std::chrono::milliseconds(100));
  if (held) return Status::Ok();
  return Status::DeadlineExceeded("the page never satisfied: " + script + " (last: " + last + ")");
}

Result<std::string> Browser::FindElement(const std::string& selector) {
  auto r = Command("POST", "/element",
                   "{\"using\":\"css selector\",\"value\":" + JsonQuote(selector) + "}");
  if (!r.ok()) return r.status();
  try {
    Poco::JSON::Parser parser;
    return parser.parse(*r).extract<Poco::JSON::Object::Ptr>()->getValue<std::string>(kElementKey);
  } catch (const Poco::Exception&) {
    return Status::NotFound("no element " + selector + ": " + *r);
  }
}

Status Browser::Click(const std::string& selector) {
  auto id = FindElement(selector);
  if (!id.ok()) return id.status();
  auto r = Command("POST", "/element/" + *id + "/click", "{}");
  return r.ok() ? Status::Ok() : r.status();
}

Status Browser::Type(const std::string& selector, const std::string& text) {
  auto id = FindElement(selector);
  if (!id.ok()) return id.status();
  auto r = Command("POST", "/element/" + *id + "/value", "{\"text\":" + JsonQuote(text) + "}");
  return r.ok() ? Status::Ok() : r.status();
}

Status Browser::Screenshot(const std::string& path) {
  return SavePng(Command("GET", "/screenshot"), path);
}

Status Browser::ScreenshotElement(const std::string& selector, const std::string& path) {
  auto id = FindElement(selector);
  if (!id.ok()) return id.status();
  // Only what is in the viewport is drawn: bring the whole element into it first.
  auto shown = Run("document.querySelector(" + JsonQuote(selector) +
                   ").scrollIntoView({block: 'start'}); return true;");
  if (!shown.ok()) return shown.status();
  return SavePng(Command("GET", "/element/" + *id + "/screenshot"), path);
}

Status Browser::SavePng(const Result<std::string>& r, const std::string& path) {
  if (!r.ok()) return r.status();
  try {
    // A JSON string of base64: only '/' may come escaped.
    std::string text = r->size() >= 2 ? r->substr(1, r->size() - 2) : "";
    text.erase(std::remove(text.begin(), text.end(), '\\'), text.end());
    std::istringstream encoded(text);
    Poco::Base64Decoder decoder(encoded);
    std::ofstream out(path, std::ios::binary);
    out << decoder.rdbuf();
    if (!out) return Status::Internal("cannot write " + path);
  } catch (const Poco::Exception& e) {
    return Status::Internal("screenshot: " + e.displayText());
  }
  return Status::Ok();
}

}  // namespace treaty::harness
