#include "cli/verify_participant.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <latch>
#include <ostream>
#include <sstream>
#include <thread>
#include <vector>

#include "common/http/http_client.h"
#include "common/protocol/protocol.h"

namespace treaty::cli {
namespace {

// What one call got: an HTTP status, or 0 with the reason there was none.
struct Answer {
  int status = 0;
  std::string body;
  std::string error;
};

bool Done(const Answer& a) { return a.status >= 200 && a.status < 300; }
bool Refused(const Answer& a) { return a.status == 409; }
bool BadRequest(const Answer& a) { return a.status >= 400 && a.status < 500 && a.status != 409; }

std::string Show(const Answer& a) {
  if (a.status == 0) return "no answer (" + a.error + ")";
  return std::to_string(a.status);
}

// A probe's JSON as leaves by path ("stock.reserved" -> "1"); numbers as numbers.
struct Snapshot {
  bool ok = false;
  std::string error;
  std::map<std::string, Poco::Dynamic::Var> leaves;
};

void Flatten(const Poco::Dynamic::Var& v, const std::string& path,
             std::map<std::string, Poco::Dynamic::Var>& out) {
  if (v.type() == typeid(Poco::JSON::Object::Ptr)) {
    auto o = v.extract<Poco::JSON::Object::Ptr>();
    for (const auto& [key, value] : *o) Flatten(value, path.empty() ? key : path + "." + key, out);
  } else if (v.type() == typeid(Poco::JSON::Array::Ptr)) {
    auto a = v.extract<Poco::JSON::Array::Ptr>();
    for (size_t i = 0; i < a->size(); ++i) {
      Flatten(a->get(i), path + "[" + std::to_string(i) + "]", out);
    }
  } else {
    out[path.empty() ? "." : path] = v;
  }
}

// How the probe moved from `a` to `b`: "reserved +1" per number that changed, "x changed" per
// other leaf; empty when nothing did.
std::map<std::string, std::string> Delta(const Snapshot& a, const Snapshot& b) {
  std::map<std::string, std::string> d;
  auto all = a.leaves;
  all.insert(b.leaves.begin(), b.leaves.end());
  for (const auto& [key, unused] : all) {
    auto x = a.leaves.find(key), y = b.leaves.find(key);
    if (x != a.leaves.end() && y != b.leaves.end() && x->second.isNumeric() &&
        y->second.isNumeric()) {
      double diff = y->second.convert<double>() - x->second.convert<double>();
      if (diff == 0) continue;
      char text[64];
      std::snprintf(text, sizeof text, "%+g", diff);
      d[key] = text;
    } else if (x == a.leaves.end() || y == b.leaves.end() ||
               x->second.toString() != y->second.toString()) {
      d[key] = "changed";
    }
  }
  return d;
}

std::string ShowDelta(const std::map<std::string, std::string>& d) {
  if (d.empty()) return "nothing";
  std::string out;
  for (const auto& [key, how] : d) out += (out.empty() ? "" : ", ") + key + " " + how;
  return out;
}

struct CaseResult {
  std::string name;      // with what is sent
  std::string expected;  // what a correct participant answers
  std::string got;
  bool pass = true;
  std::string why;  // when it failed
};

class Verifier {
 public:
  explicit Verifier(const VerifyOptions& o) : o_(o) {
    if (o.mode == "tcc") {
      fwd_ = protocol::kTry, second_ = protocol::kConfirm, undo_ = protocol::kCancel;
    } else if (o.mode == "saga") {
      fwd_ = protocol::kAction, undo_ = protocol::kCompensate;
    } else {
      fwd_ = protocol::kPrepare, second_ = protocol::kCommit, undo_ = protocol::kAbort;
    }
  }

  std::vector<CaseResult> Run() {
    RepeatedDelivery();
    if (!second_.empty()) RepeatedSecond();
    RepeatedUndo();
    UndoFirst();
    Malformed();
    Race();
    return std::move(results_);
  }

  const std::string& ProbeNote() const { return probe_note_; }

 private:
  // Posts `body` to the URL of `url_op`; asks again while the answer is 5xx or none, as Treaty
  // does, until the timeout.
  Answer Post(const std::string& url_op, const std::string& body, const std::string& gid = "",
              const std::string& op = "") {
    http::CallOptions call{.timeout = o_.timeout};
    call.headers = {{"Content-Type", "application/json"}};
    if (!gid.empty()) {
      call.headers.emplace_back(protocol::kGidHeader, gid);
      call.headers.emplace_back(protocol::kBranchIdHeader, kBranch);
      call.headers.emplace_back(protocol::kOpHeader, op);
    }
    auto deadline = std::chrono::steady_clock::now() + o_.timeout;
    Answer a;
    for (auto pause = std::chrono::milliseconds(50);; pause = std::min(pause * 2, kMaxPause)) {
      auto r = http::HttpCall("POST", o_.urls.at(url_op), body, call);
      a = r.ok() ? Answer{r->status, r->body, ""} : Answer{0, "", r.status().message()};
      if (a.status != 0 && a.status < 500) return a;
      if (std::chrono::steady_clock::now() + pause > deadline) return a;
      std::this_thread::sleep_for(pause);  // the verifier's backoff between two calls
    }
  }

  // The op as Treaty sends it, to its own URL.
  Answer Send(const std::string& op, const std::string& gid) {
    return Post(op, protocol::CallBody(gid, kBranch, op, o_.mode, o_.payload), gid, op);
  }

  Snapshot Probe() {
    Snapshot s;
    if (o_.probe.empty()) return s;
    auto r = http::HttpCall("GET", o_.probe, "", http::CallOptions{.timeout = o_.timeout});
    if (!r.ok()) {
      s.error = "probe: " + r.status().message();
      return s;
    }
    if (r->status != 200) {
      s.error = "probe answered " + std::to_string(r->status);
      return s;
    }
    try {
      Poco::JSON::Parser parser;
      Flatten(parser.parse(r->body), "", s.leaves);
      s.ok = true;
    } catch (const Poco::Exception& e) {
      s.error = "probe's answer is not JSON: " + e.message();
    }
    return s;
  }

  // Checks that the probe moved from `a` to `b` by `want` (nullptr: by nothing).
  void ProbeMoved(CaseResult& c, const Snapshot& a, const Snapshot& b,
                  const std::map<std::string, std::string>* want, const std::string& what) {
    if (o_.probe.empty()) return;
    if (!a.ok || !b.ok) {
      Fail(c, a.ok ? b.error : a.error);
      return;
    }
    static const std::map<std::string, std::string> kNothing;
    auto moved = Delta(a, b);
    if (moved != (want ? *want : kNothing)) {
      Fail(c, what + ": the probe moved " + ShowDelta(moved) + ", expected " +
                  ShowDelta(want ? *want : kNothing));
    }
  }

  static void Fail(CaseResult& c, const std::string& why) {
    c.pass = false;
    if (!c.why.empty()) c.why += "; ";
    c.why += why;
  }

  std::string Gid(const std::string& name) const { return o_.gid_prefix + "-" + name; }

  void Expect(CaseResult& c, bool ok, const std::string& what) {
    if (!ok) Fail(c, what);
  }

  // 1. The op twice: both done, the second changes nothing.
  void RepeatedDelivery() {
    CaseResult c{.name = "repeated " + fwd_ + " (" + fwd_ + " twice, same gid)",
                 .expected = "2xx, 2xx; applied once"};
    std::string gid = Gid("repeat");
    Snapshot s0 = Probe();
    Answer a1 = Send(fwd_, gid);
    Snapshot s1 = Probe();
    Answer a2 = Send(fwd_, gid);
    Snapshot s2 = Probe();
    c.got = Show(a1) + ", " + Show(a2);
    Expect(c, Done(a1) && Done(a2), "both must be 2xx");
    ProbeMoved(c, s1, s2, nullptr, "the second " + fwd_);
    if (s0.ok && s1.ok) {
      one_op_ = Delta(s0, s1);
      if (one_op_.empty() && second_ != protocol::kCommit) {
        probe_note_ = "note: the probe did not move on a " + fwd_ +
                      ": its applied-once checks show nothing about " + fwd_ + ".";
      }
    }
    results_.push_back(c);
  }

  // 2. confirm / commit twice after the try / prepare of case 1.
  void RepeatedSecond() {
    CaseResult c{.name = "repeated " + second_ + " (" + second_ + " twice after the " + fwd_ + ")",
                 .expected = "2xx, 2xx; applied once"};
    std::string gid = Gid("repeat");
    Snapshot s0 = Probe();
    Answer a1 = Send(second_, gid);
    Snapshot s1 = Probe();
    Answer a2 = Send(second_, gid);
    Snapshot s2 = Probe();
    c.got = Show(a1) + ", " + Show(a2);
    Expect(c, Done(a1) && Done(a2), "both must be 2xx");
    ProbeMoved(c, s1, s2, nullptr, "the second " + second_);
    if (second_ == protocol::kCommit && s1.ok) {
      // 2PC's effect shows at commit: one prepare and one commit is "one op" for the race case.
      one_op_ = Delta(s0, s1);
    }
    results_.push_back(c);
  }

  // 3. The undo twice after the op: done, and the state is as before the op.
  void RepeatedUndo() {
    CaseResult c{.name = "repeated " + undo_ + " (" + fwd_ + ", then " + undo_ + " twice)",
                 .expected = "2xx; 2xx, 2xx; undone once"};
    std::string gid = Gid("undo");
    Snapshot s0 = Probe();
    Answer a0 = Send(fwd_, gid);
    Answer a1 = Send(undo_, gid);
    Answer a2 = Send(undo_, gid);
    Snapshot s1 = Probe();
    c.got = Show(a0) + "; " + Show(a1) + ", " + Show(a2);
    Expect(c, Done(a0) && Done(a1) && Done(a2), "all must be 2xx");
    ProbeMoved(c, s0, s1, nullptr, fwd_ + " then " + undo_ + " twice");
    results_.push_back(c);
  }

  // 4-6. The undo of something never done, then the op arriving late (and 2PC's commit).
  void UndoFirst() {
    std::string gid = Gid("late");
    std::string null_name = o_.mode == "2pc" ? "abort of an unknown gid"
                                             : undo_ + " before " + fwd_ + " (null compensation)";
    CaseResult c{.name = null_name, .expected = "2xx; nothing changes"};
    Snapshot s0 = Probe();
    Answer a = Send(undo_, gid);
    Snapshot s1 = Probe();
    c.got = Show(a);
    Expect(c, Done(a), "must be 2xx: there is nothing to undo, and Treaty retries anything else");
    ProbeMoved(c, s0, s1, nullptr, undo_ + " of nothing");
    results_.push_back(c);

    CaseResult late{.name = fwd_ + " after " + undo_ + (o_.mode == "2pc" ? "" : " (hanging)"),
                    .expected = "409; nothing changes"};
    Answer b = Send(fwd_, gid);
    Snapshot s2 = Probe();
    late.got = Show(b);
    Expect(late, Refused(b),
           "must be 409: the transaction is already undone, and what the " + fwd_ +
               " applied would never be undone");
    ProbeMoved(late, s1, s2, nullptr, "the late " + fwd_);
    results_.push_back(late);

    if (o_.mode == "2pc") {
      CaseResult commit{.name = "commit after abort", .expected = "409; nothing changes"};
      Answer d = Send(second_, gid);
      Snapshot s3 = Probe();
      commit.got = Show(d);
      Expect(commit, Refused(d), "must be 409: the branch was aborted");
      ProbeMoved(commit, s2, s3, nullptr, "the commit");
      results_.push_back(commit);
    }
  }

  // 7-9. Requests that are not a valid op: a 4xx (not 409, which is a business "no"), nothing
  // applied.
  void Malformed() {
    struct Bad {
      std::string name, body;
    };
    std::string payload = o_.payload;
    std::vector<Bad> bad = {
        {"unknown op (op \"frobnicate\" to the " + fwd_ + " URL)",
         protocol::CallBody(Gid("unknown-op"), kBranch, "frobnicate", o_.mode, payload)},
        {"malformed body: not JSON (to the " + fwd_ + " URL)", "{\"gid\": not json"},
        {"malformed body: no gid (to the " + fwd_ + " URL)",
         "{\"branch_id\":\"" + std::string(kBranch) + "\",\"op\":\"" + fwd_ + "\",\"mode\":\"" +
             o_.mode + "\",\"payload\":" + payload + "}"},
    };
    for (const auto& b : bad) {
      CaseResult c{.name = b.name, .expected = "4xx other than 409; nothing changes"};
      Snapshot s0 = Probe();
      Answer a = Post(fwd_, b.body);
      Snapshot s1 = Probe();
      c.got = Show(a);
      Expect(c, BadRequest(a),
             Done(a)      ? "a 2xx says it was done"
             : Refused(a) ? "409 is a business refusal, which aborts the transaction"
                          : "must be a 4xx naming what is wrong");
      ProbeMoved(c, s0, s1, nullptr, "the bad request");
      results_.push_back(c);
    }
  }

  // 10. Identical calls at once, as a slow first delivery and its retry racing: each ends 2xx
  // (after any 5xx answers, asked again), and the effect is one op's.
  void Race() {
    constexpr int kRounds = 3, kCalls = 4;
    CaseResult c{.name = "slow duplicate racing the original (" + std::to_string(kCalls) + " " +
                         fwd_ + " at once, " + std::to_string(kRounds) + " gids)",
                 .expected = "2xx each; applied once"};
    std::string got;
    for (int round = 1; round <= kRounds; ++round) {
      std::string gid = Gid("race-" + std::to_string(round));
      Snapshot s0 = Probe();
      std::vector<Answer> answers(kCalls);
      std::latch start(kCalls);
      std::vector<std::thread> calls;
      for (int i = 0; i < kCalls; ++i) {
        calls.emplace_back([&, i] {
          start.arrive_and_wait();
          answers[i] = Send(fwd_, gid);
        });
      }
      for (auto& t : calls) t.join();
      if (second_ == protocol::kCommit) Send(second_, gid);
      Snapshot s1 = Probe();
      std::string line;
      bool all_done = true;
      for (const auto& a : answers) {
        line += (line.empty() ? "" : ",") + Show(a);
        all_done = all_done && Done(a);
      }
      got += (got.empty() ? "" : "; ") + line;
      if (!all_done) Fail(c, "round " + std::to_string(round) + ": every call must end 2xx");
      ProbeMoved(c, s0, s1, &one_op_, "round " + std::to_string(round));
      if (second_ != protocol::kCommit) Send(undo_, gid);  // leave nothing held
    }
    c.got = got;
    results_.push_back(c);
  }

  static constexpr char kBranch[] = "verify";
  static constexpr std::chrono::milliseconds kMaxPause{1000};
  const VerifyOptions& o_;
  std::string fwd_, second_, undo_;
  std::map<std::string, std::string> one_op_;  // how one op moves the probe
  std::string probe_note_;
  std::vector<CaseResult> results_;
};

std::string Fit(const std::string& s, size_t width) {
  if (s.size() <= width) return s + std::string(width - s.size(), ' ');
  return s + "\n" + std::string(width + 8, ' ');
}

}  // namespace

Result<VerifyOptions> VerifyOptionsFromFlags(const std::map<std::string, std::string>& flags) {
  static const std::map<std::string, std::vector<std::string>> kModes = {
      {"tcc", {"try", "confirm", "cancel"}},
      {"saga", {"action", "compensate"}},
      {"2pc", {"prepare", "commit", "abort"}},
  };
  VerifyOptions o;
  for (const auto& [mode, ops] : kModes) {
    for (const auto& op : ops) {
      if (!flags.count(op)) continue;
      if (!o.mode.empty() && o.mode != mode) {
        return Status::InvalidArgument("--" + op + " is a " + mode + " URL, and --" +
                                       o.urls.begin()->first + " a " + o.mode +
                                       " one: verify one mode at a time");
      }
      o.mode = mode;
      o.urls[op] = flags.at(op);
    }
  }
  if (o.mode.empty()) {
    return Status::InvalidArgument(
        "give the participant's URLs: --try --confirm --cancel (TCC), --action --compensate "
        "(saga) or --prepare --commit --abort (2PC)");
  }
  for (const auto& op : kModes.at(o.mode)) {
    if (!o.urls.count(op)) return Status::InvalidArgument("--" + op + " is required");
    const std::string& url = o.urls[op];
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
      return Status::InvalidArgument("--" + op + " must be an http:// or https:// URL");
    }
  }
  if (flags.count("payload")) {
    o.payload = flags.at("payload");
    try {
      Poco::JSON::Parser parser;
      parser.parse(o.payload);
    } catch (const Poco::Exception& e) {
      return Status::InvalidArgument("--payload is not JSON: " + e.message());
    }
  }
  if (flags.count("probe")) o.probe = flags.at("probe");
  if (flags.count("timeout")) {
    auto d = ParseDuration(flags.at("timeout"));
    if (!d || d->count() == 0) {
      return Status::InvalidArgument("--timeout must be a duration such as 10s");
    }
    o.timeout = *d;
  }
  o.gid_prefix = flags.count("gid-prefix") ? flags.at("gid-prefix")
                                           : "verify-" + std::to_string(std::time(nullptr)) + "-" +
                                                 std::to_string(getpid());
  // The gids are <prefix>-<case>: Treaty's id alphabet, and room for the longest case's suffix.
  bool id_chars = std::all_of(o.gid_prefix.begin(), o.gid_prefix.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == ':' ||
           ch == '-';
  });
  if (o.gid_prefix.empty() || o.gid_prefix.size() > 80 || !id_chars) {
    return Status::InvalidArgument(
        "--gid-prefix must be 1 to 80 characters of A-Z a-z 0-9 . _ : -");
  }
  return o;
}

int VerifyParticipant(const VerifyOptions& options, std::ostream& out) {
  Verifier verifier(options);
  const char* first = options.mode == "tcc"    ? protocol::kTry
                      : options.mode == "saga" ? protocol::kAction
                                               : protocol::kPrepare;
  out << "verify-participant: " << options.mode << " participant at " << options.urls.at(first)
      << " (gids " << options.gid_prefix << "-*"
      << (options.probe.empty() ? "; no --probe: applied-once is not checked, only answers"
                                : "; probe " + options.probe)
      << ")\n\n";
  std::vector<CaseResult> results = verifier.Run();
  constexpr size_t kCase = 62, kExpected = 36;
  out << "RESULT  " << Fit("CASE", kCase) << " " << Fit("A CORRECT PARTICIPANT", kExpected)
      << " GOT\n";
  int failed = 0;
  std::string failed_names;
  for (const auto& c : results) {
    out << (c.pass ? "pass    " : "FAIL    ") << Fit(c.name, kCase) << " "
        << Fit(c.expected, kExpected) << " " << c.got << "\n";
    if (!c.pass) {
      out << "        why: " << c.why << "\n";
      ++failed;
      failed_names += (failed_names.empty() ? "" : "; ") + c.name;
    }
  }
  if (!verifier.ProbeNote().empty()) out << "\n" << verifier.ProbeNote() << "\n";
  if (failed == 0) {
    out << "\nverify-participant: all " << results.size() << " cases passed\n";
    return 0;
  }
  out << "\nverify-participant: " << failed << " of " << results.size()
      << " cases FAILED: " << failed_names << "\n";
  return 1;
}

}  // namespace treaty::cli
