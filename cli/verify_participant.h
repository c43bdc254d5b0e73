#pragma once

// treatyctl verify-participant: plays the protocol's hard cases against a running participant
// and prints a table of what it answered beside what a correct participant answers.
//
//   treatyctl verify-participant --try URL --confirm URL --cancel URL          (TCC)
//   treatyctl verify-participant --action URL --compensate URL                 (saga step)
//   treatyctl verify-participant --prepare URL --commit URL --abort URL        (2PC)
//       [--payload JSON] [--probe URL] [--gid-prefix P] [--timeout D]
//
// Every case uses gids of its own (<prefix>-<case>), so a participant is verified again without
// a reset; the ops are real: a TCC or 2PC branch confirmed or committed by a case stays so.
// An answer of 5xx or no answer is asked again until --timeout (default 10s), as Treaty would.
//
// What the verifier cannot see by itself is whether an op's effect was applied once: with
// --probe, it GETs that URL (a JSON document whose numbers the ops move, such as a stock row)
// before and after the cases and checks that a repeated or raced op moved them as one op does,
// and that a skipped one moved nothing. Without it, only the answers are checked. The probe
// assumes nothing else changes the participant's state while the verifier runs.

#include <iosfwd>
#include <map>
#include <string>

#include "common/duration.h"
#include "common/status.h"

namespace treaty::cli {

struct VerifyOptions {
  std::string mode;                         // "tcc", "saga" or "2pc"
  std::map<std::string, std::string> urls;  // by op: "try" -> URL, ...
  std::string payload = "{}";               // sent with every op
  std::string probe;                        // optional GET URL
  std::string gid_prefix;                   // default: verify-<time>-<pid>
  Duration timeout = std::chrono::seconds(10);
};

// From treatyctl's flags; InvalidArgument naming the flag when they are not a verification.
Result<VerifyOptions> VerifyOptionsFromFlags(const std::map<std::string, std::string>& flags);

// Runs every case and prints the table to `out`: 0 when all passed, 1 when any failed.
int VerifyParticipant(const VerifyOptions& options, std::ostream& out);

}  // namespace treaty::cli
