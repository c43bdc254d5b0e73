#include "integration-tests/chaos/history.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <chrono>
#include <memory>
#include <sstream>

namespace treaty::chaos {
namespace {

int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string ToJsonLine(const HistoryEvent& e) {
  Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
  o.set("t", e.t_ms);
  o.set("type", e.type);
  auto text = [&](const char* key, const std::string& v) {
    if (!v.empty()) o.set(key, v);
  };
  text("gid", e.gid);
  text("mode", e.mode);
  if (e.node >= 0) o.set("node", e.node);
  text("sku", e.sku);
  if (e.qty != 0) o.set("qty", e.qty);
  text("card", e.card);
  text("action", e.action);
  if (e.type == "answer") o.set("http", e.http);
  text("status", e.status);
  text("error", e.error);
  text("fault", e.fault);
  text("target", e.target);
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(o, out);
  return out.str();
}

Result<HistoryEvent> FromJsonLine(const std::string& line) {
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(line).extract<Poco::JSON::Object::Ptr>();
    HistoryEvent e;
    e.t_ms = o->optValue<int64_t>("t", 0);
    e.type = o->optValue<std::string>("type", "");
    e.gid = o->optValue<std::string>("gid", "");
    e.mode = o->optValue<std::string>("mode", "");
    e.node = o->optValue<int>("node", -1);
    e.sku = o->optValue<std::string>("sku", "");
    e.qty = o->optValue<int64_t>("qty", 0);
    e.card = o->optValue<std::string>("card", "");
    e.action = o->optValue<std::string>("action", "");
    e.http = o->optValue<int>("http", 0);
    e.status = o->optValue<std::string>("status", "");
    e.error = o->optValue<std::string>("error", "");
    e.fault = o->optValue<std::string>("fault", "");
    e.target = o->optValue<std::string>("target", "");
    if (e.type.empty()) return Status::InvalidArgument("no \"type\"");
    return e;
  } catch (const std::exception& ex) {
    return Status::InvalidArgument(ex.what());
  }
}

Result<std::unique_ptr<HistoryWriter>> HistoryWriter::Open(const std::string& path) {
  std::unique_ptr<HistoryWriter> w(new HistoryWriter());
  w->out_.open(path, std::ios::out | std::ios::trunc);
  if (!w->out_) return Status::Unavailable("cannot write " + path);
  w->start_ns_ = MonotonicNs();
  return w;
}

int64_t HistoryWriter::NowMs() const { return (MonotonicNs() - start_ns_) / 1000000; }

void HistoryWriter::Append(HistoryEvent e) {
  if (e.t_ms == 0) e.t_ms = NowMs();
  std::string line = ToJsonLine(e);
  std::lock_guard<std::mutex> lock(mu_);
  out_ << line << '\n';
  out_.flush();
}

Result<std::vector<HistoryEvent>> ReadHistory(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read " + path);
  std::vector<HistoryEvent> events;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.empty()) continue;
    auto e = FromJsonLine(line);
    if (!e.ok()) {
      return Status::InvalidArgument(path + ":" + std::to_string(number) + ": " +
                                     e.status().message());
    }
    events.push_back(std::move(*e));
  }
  return events;
}

}  // namespace treaty::chaos
