// treatyctl: the operator's command line for treatyd.
//
//   treatyctl [--url URL] [--json] status GID          a transaction: branches and decision log
//   treatyctl [--url URL] [--json] list [--status S] [--mode M] [--since T] [--older-than D]
//                                       [--stuck] [--limit N] [--after GID]
//   treatyctl [--url URL] [--json] stats               how many transactions in each status
//   treatyctl [--url URL] retry GID                    skip the backoff of a stuck transaction
//   treatyctl [--url URL] abort GID                    abort one that has no decision yet
//   treatyctl [--url URL] force GID --status committed|aborted --reason TEXT [--dry-run]
//                                                      end a stuck one without the calls due
//                                                      (admin token; prints what is not called)
//   treatyctl [--url URL] sagas                        the loaded saga definitions
//   treatyctl [--url URL] start-saga NAME [--input JSON] [--gid GID]
//   treatyctl check-config FILE                        validate a treaty.yaml and its sagas
//   treatyctl saga plan FILE [--input JSON]            what a saga definition would call, in
//                                                      which order, and how it would compensate
//   treatyctl verify-participant --try U --confirm U --cancel U | --action U --compensate U |
//             --prepare U --commit U --abort U [--payload JSON] [--probe URL] [--timeout D]
//                                                      play the protocol's hard cases against a
//                                                      participant (cli/verify_participant.h)
//   treatyctl barrier install --url postgresql://...   the SQL barrier in a service's database
//   treatyctl barrier sql                              print its SQL (for psql)
//
// --url defaults to $TREATY_URL, then http://127.0.0.1:8420; --token to $TREATY_TOKEN (when
// treatyd has auth tokens); --ca-file verifies an https treatyd. Exit status: 0 done, 1 treatyd
// said no (or could not be reached; verify-participant: a case failed), 2 bad usage or an
// invalid config.

#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>
#include <Poco/URI.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionProcessor.h>
#include <Poco/Util/OptionSet.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <vector>

#include "cli/saga_plan.h"
#include "cli/verify_participant.h"
#include "common/http/http_client.h"
#include "config/treaty_config.h"
#include "coordinator/saga/saga_definition.h"
#include "tcc/barrier_sql.h"

namespace treaty::cli {
namespace {

using Poco::JSON::Object;

constexpr int kOk = 0, kRefused = 1, kUsage = 2;

int Usage() {
  std::cerr
      << "usage: treatyctl [--url URL] [--token T] [--ca-file F] [--json] COMMAND ...\n"
         "  status GID | list [--status S] [--mode M] [--since T] [--older-than D] [--stuck]\n"
         "                    [--limit N] [--after GID] | stats |\n"
         "  retry GID | abort GID | sagas | start-saga NAME[@VERSION] [--input JSON] [--gid GID] "
         "|\n"
         "  force GID --status committed|aborted --reason TEXT [--dry-run] |\n"
         "  check-config FILE | saga plan FILE [--input JSON] |\n"
         "  verify-participant (--try U --confirm U --cancel U | --action U --compensate U |\n"
         "                      --prepare U --commit U --abort U) [--payload JSON] [--probe URL]\n"
         "                     [--timeout D] [--gid-prefix P] |\n"
         "  barrier install --url postgresql://... | barrier sql\n";
  return kUsage;
}

using Reply = http::HttpReply;

// The token (--token or $TREATY_TOKEN) and CA file (--ca-file) for every call.
http::CallOptions g_call_options{.timeout = std::chrono::seconds(30)};

// One call to treatyd; nullopt (after printing why) when it cannot be reached.
std::optional<Reply> Call(const std::string& base, const std::string& method,
                          const std::string& path, const std::string& body = "") {
  auto r = http::HttpCall(method, base + path, body, g_call_options);
  if (!r.ok()) {
    std::cerr << "treatyctl: cannot reach treatyd at " << base << ": " << r.status().message()
              << "\n";
    return std::nullopt;
  }
  return *r;
}

Object::Ptr Parse(const std::string& body) {
  try {
    Poco::JSON::Parser parser;
    return parser.parse(body).extract<Object::Ptr>();
  } catch (const std::exception&) {
    return nullptr;
  }
}

// Prints treatyd's error and returns kRefused.
int Refused(const Reply& r) {
  Object::Ptr o = Parse(r.body);
  std::string message = r.body;
  if (o && o->has("error")) {
    Object::Ptr e = o->getObject("error");
    message = e->optValue<std::string>("message", r.body);
    std::string field = e->optValue<std::string>("field", "");
    if (!field.empty()) message = field + ": " + message;
  }
  std::cerr << "treatyctl: " << r.status << ": " << message << "\n";
  return kRefused;
}

std::string Str(const Object::Ptr& o, const std::string& key) {
  return o && o->has(key) && !o->get(key).isEmpty() ? o->get(key).toString() : "";
}

void PrintStatus(const Object::Ptr& tx) {
  std::printf("%s  %s  %s\n", Str(tx, "gid").c_str(), Str(tx, "mode").c_str(),
              Str(tx, "status").c_str());
  if (!Str(tx, "reason").empty()) std::printf("reason:     %s\n", Str(tx, "reason").c_str());
  if (!Str(tx, "attention").empty()) std::printf("ATTENTION:  %s\n", Str(tx, "attention").c_str());
  if (!Str(tx, "definition").empty())
    std::printf("definition: %s\n", Str(tx, "definition").c_str());
  std::printf("created:    %s   deadline: %s\n", Str(tx, "created_at").c_str(),
              Str(tx, "deadline").c_str());
  auto branches = tx->getArray("branches");
  std::printf("\n%-20s %-10s %-10s %8s  %s\n", "branch", "op", "status", "attempts", "last error");
  for (size_t i = 0; branches && i < branches->size(); ++i) {
    auto b = branches->getObject(i);
    std::printf("%-20s %-10s %-10s %8s  %s\n", Str(b, "id").c_str(), Str(b, "op").c_str(),
                Str(b, "status").c_str(), Str(b, "attempts").c_str(), Str(b, "last_error").c_str());
  }
  // A saga step's answer, which later steps' payloads may name (${steps.<id>.output...}).
  bool outputs = false;
  for (size_t i = 0; branches && i < branches->size(); ++i) {
    auto b = branches->getObject(i);
    if (Str(b, "output").empty()) continue;
    if (!outputs) std::printf("\noutputs\n");
    outputs = true;
    std::ostringstream condensed;
    Poco::JSON::Stringifier::condense(b->get("output"), condensed);
    std::printf("  %-20s %s\n", Str(b, "id").c_str(), condensed.str().c_str());
  }
  auto log = tx->getArray("log");
  std::printf("\ndecision log\n");
  for (size_t i = 0; log && i < log->size(); ++i) {
    auto e = log->getObject(i);
    std::string from = Str(e, "from");
    std::printf("  %s  %s -> %s  %s\n", Str(e, "at").c_str(), from.empty() ? "(new)" : from.c_str(),
                Str(e, "to").c_str(), Str(e, "reason").c_str());
  }
}

// `treatyctl barrier install --url URL`: installs (or updates) the SQL barrier.
int InstallBarrier(const std::string& url) {
  if (url.rfind("postgres://", 0) != 0 && url.rfind("postgresql://", 0) != 0) {
    std::cerr << "treatyctl: --url must be the service's database, postgresql://...\n";
    return kUsage;
  }
  try {
    pqxx::connection c(url);
    pqxx::nontransaction sql(c);
    sql.exec(participant::SqlBarrier::Script());
    std::string version = sql.exec1("SELECT treaty.barrier_version()")[0].as<std::string>();
    std::cout << "barrier installed: treaty.barrier_enter(gid, branch_id, op), version " << version
              << ", table public.treaty_barrier, in database " << c.dbname() << "\n";
    return kOk;
  } catch (const std::exception& e) {
    std::cerr << "treatyctl: barrier install failed: " << e.what() << "\n";
    return kRefused;
  }
}

}  // namespace

int Main(int argc, char** argv) {
  const char* env_url = std::getenv("TREATY_URL");  // NOLINT(concurrency-mt-unsafe)
  std::string url = env_url ? env_url : "http://127.0.0.1:8420";
  bool url_given = false;
  bool json = false;
  std::vector<std::string> words;
  std::map<std::string, std::string> flags;

  using Poco::Util::Option;
  Poco::Util::OptionSet options;
  options.addOption(Option("url", "", "treatyd's base URL").argument("URL"));
  options.addOption(Option("json", "", "print treatyd's JSON as it is"));
  for (const char* f : {"status",  "mode",       "limit",      "after",      "input",  "gid",
                        "since",   "older-than", "token",      "ca-file",    "try",    "confirm",
                        "cancel",  "action",     "compensate", "prepare",    "commit", "abort",
                        "payload", "probe",      "timeout",    "gid-prefix", "reason"}) {
    options.addOption(Option(f, "", f).argument("VALUE"));
  }
  options.addOption(Option("stuck", "", "only stuck transactions"));
  options.addOption(Option("dry-run", "", "say what would happen, change nothing"));
  try {
    Poco::Util::OptionProcessor processor(options);
    processor.setUnixStyle(true);
    for (int i = 1; i < argc; ++i) {
      std::string name, value;
      if (processor.process(argv[i], name, value)) {
        if (name == "url") {
          url = value;
          url_given = true;
        } else if (name == "json") {
          json = true;
        } else if (name == "stuck" || name == "dry-run") {
          flags[name] = "true";
        } else if (!name.empty()) {
          flags[name] = value;
        }
      } else {
        words.emplace_back(argv[i]);
      }
    }
    processor.checkRequired();
  } catch (const Poco::Exception& e) {
    std::cerr << "treatyctl: " << e.displayText() << "\n";
    return Usage();
  }
  const char* env_token = std::getenv("TREATY_TOKEN");  // NOLINT(concurrency-mt-unsafe)
  std::string token = flags.count("token") ? flags["token"] : env_token ? env_token : "";
  g_call_options.WithBearer(token);
  if (flags.count("ca-file")) g_call_options.ca_file = flags["ca-file"];
  if (words.empty()) return Usage();
  const std::string& cmd = words[0];

  if (cmd == "check-config") {
    if (words.size() != 2) return Usage();
    auto config = LoadTreatyConfig(words[1], ProcessEnvironment());
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
      return kUsage;
    }
    size_t slash = words[1].rfind('/');
    auto sagas = saga::LoadSagaDefinitions(
        config->sagas, slash == std::string::npos ? "." : words[1].substr(0, slash),
        ProcessEnvironment());
    if (!sagas.ok()) {
      std::cerr << sagas.status().message() << "\n";
      return kUsage;
    }
    std::cout << words[1] << ": ok (" << sagas->size() << " saga definitions)\n";
    return kOk;
  }

  if (cmd == "saga") {
    if (words.size() != 3 || words[1] != "plan") return Usage();
    return PrintSagaPlan(words[2], flags.count("input") ? flags["input"] : "{}",
                         ProcessEnvironment(), std::cout, std::cerr);
  }

  if (cmd == "verify-participant") {
    if (words.size() != 1) return Usage();
    auto options = VerifyOptionsFromFlags(flags);
    if (!options.ok()) {
      std::cerr << "treatyctl: " << options.status().message() << "\n";
      return kUsage;
    }
    return VerifyParticipant(*options, std::cout) == 0 ? kOk : kRefused;
  }
  if (cmd == "barrier") {
    if (words.size() == 2 && words[1] == "sql") {
      std::cout << participant::SqlBarrier::Script();
      return kOk;
    }
    if (words.size() != 2 || words[1] != "install") return Usage();
    if (!url_given) {
      std::cerr << "treatyctl: barrier install needs --url postgresql://... (the service's "
                   "database)\n";
      return kUsage;
    }
    return InstallBarrier(url);
  }

  std::string method = "GET", path, body;
  if ((cmd == "status" || cmd == "retry" || cmd == "abort") && words.size() == 2) {
    path = "/v1/transactions/" + Poco::URI(words[1]).toString();
    if (cmd != "status") {
      method = "POST";
      path += "/" + cmd;
    }
  } else if (cmd == "force" && words.size() == 2) {
    if (!flags.count("status") || !flags.count("reason")) {
      std::cerr << "treatyctl: force needs --status committed|aborted and --reason TEXT\n";
      return kUsage;
    }
    method = "POST";
    path = "/v1/transactions/" + Poco::URI(words[1]).toString() + "/force";
    Object request;
    request.set("status", flags["status"]);
    request.set("reason", flags["reason"]);
    request.set("dry_run", flags.count("dry-run") > 0);
    std::ostringstream text;
    request.stringify(text);
    body = text.str();
  } else if (cmd == "list" && words.size() == 1) {
    path = "/v1/transactions";
    std::string query;
    // --since: a duration ago ("1h") or an ISO 8601 time.
    for (const char* f : {"status", "mode", "limit", "after", "since", "older-than", "stuck"}) {
      if (!flags.count(f)) continue;
      std::string key = f, value;
      if (key == "older-than") key = "older_than";
      Poco::URI::encode(flags[f], "&=+#?/", value);
      query += (query.empty() ? "?" : "&") + key + "=" + value;
    }
    path += query;
  } else if (cmd == "sagas" && words.size() == 1) {
    path = "/v1/sagas";
  } else if (cmd == "stats" && words.size() == 1) {
    path = "/v1/stats";
  } else if (cmd == "start-saga" && words.size() == 2) {
    method = "POST";
    path = "/v1/sagas/" + words[1];
    body = "{\"wait\":true,\"input\":" + (flags.count("input") ? flags["input"] : "{}") +
           (flags.count("gid") ? ",\"gid\":\"" + flags["gid"] + "\"" : "") + "}";
  } else {
    return Usage();
  }

  auto reply = Call(url, method, path, body);
  if (!reply) return kRefused;
  if (reply->status >= 300) return Refused(*reply);
  if (json) {
    std::cout << reply->body << "\n";
    return kOk;
  }
  Object::Ptr o = Parse(reply->body);
  if (!o) {
    std::cout << reply->body << "\n";
    return kOk;
  }
  if (cmd == "status") {
    PrintStatus(o);
  } else if (cmd == "force") {
    const bool dry_run = o->optValue<bool>("dry_run", false);
    std::printf("%s  %s%s%s\n", Str(o, "gid").c_str(), Str(o, "status").c_str(),
                dry_run ? "  (dry run: nothing changed)" : "  ",
                dry_run ? "" : Str(o, "reason").c_str());
    auto not_called = o->getArray("not_called");
    std::printf("%s\n", not_called && not_called->size() > 0
                            ? (dry_run ? "would not be called:" : "not called:")
                            : "no call was still due");
    for (size_t i = 0; not_called && i < not_called->size(); ++i) {
      auto n = not_called->getObject(i);
      std::printf("  %-20s %-10s %s\n", Str(n, "id").c_str(), Str(n, "op").c_str(),
                  (Str(n, "url") + Str(n, "topic")).c_str());
    }
  } else if (cmd == "list") {
    auto list = o->getArray("transactions");
    std::printf("%-36s %-5s %-11s %s\n", "gid", "mode", "status", "created");
    for (size_t i = 0; list && i < list->size(); ++i) {
      auto t = list->getObject(i);
      std::printf("%-36s %-5s %-11s %s%s\n", Str(t, "gid").c_str(), Str(t, "mode").c_str(),
                  Str(t, "status").c_str(), Str(t, "created_at").c_str(),
                  Str(t, "attention").empty() ? "" : "  ATTENTION");
    }
    if (!Str(o, "next").empty()) std::printf("(more: --after %s)\n", Str(o, "next").c_str());
  } else if (cmd == "stats") {
    auto by = o->getObject("by_status");
    for (const char* st :
         {"active", "prepared", "committing", "aborting", "committed", "aborted"}) {
      std::printf("%-11s %s\n", st, by ? Str(by, st).c_str() : "?");
    }
    std::printf("%-11s %s\n", "total", Str(o, "total").c_str());
  } else if (cmd == "sagas") {
    auto list = o->getArray("sagas");
    for (size_t i = 0; list && i < list->size(); ++i) {
      auto d = list->getObject(i);
      std::printf("%s@%s  %s\n", Str(d, "name").c_str(), Str(d, "version").c_str(),
                  Str(d, "file").c_str());
    }
  } else {
    std::printf("%s  %s%s%s\n", Str(o, "gid").c_str(), Str(o, "status").c_str(),
                Str(o, "reason").empty() ? "" : "  ", Str(o, "reason").c_str());
  }
  return kOk;
}

}  // namespace treaty::cli

int main(int argc, char** argv) { return treaty::cli::Main(argc, argv); }
