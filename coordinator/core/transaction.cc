#include "coordinator/core/transaction.h"

#include <algorithm>

namespace treaty::core {

std::string_view ModeName(Mode m) {
  switch (m) {
    case Mode::k2pc:
      return "2pc";
    case Mode::kTcc:
      return "tcc";
    case Mode::kSaga:
      return "saga";
    case Mode::kMsg:
      return "msg";
  }
  return "2pc";
}

std::optional<Mode> ParseMode(std::string_view s) {
  for (Mode m : {Mode::k2pc, Mode::kTcc, Mode::kSaga, Mode::kMsg}) {
    if (ModeName(m) == s) return m;
  }
  return std::nullopt;
}

std::string_view StatusName(TxStatus s) {
  switch (s) {
    case TxStatus::kActive:
      return "active";
    case TxStatus::kPrepared:
      return "prepared";
    case TxStatus::kCommitting:
      return "committing";
    case TxStatus::kCommitted:
      return "committed";
    case TxStatus::kAborting:
      return "aborting";
    case TxStatus::kAborted:
      return "aborted";
  }
  return "active";
}

std::optional<TxStatus> ParseStatus(std::string_view s) {
  for (TxStatus t : {TxStatus::kActive, TxStatus::kPrepared, TxStatus::kCommitting,
                     TxStatus::kCommitted, TxStatus::kAborting, TxStatus::kAborted}) {
    if (StatusName(t) == s) return t;
  }
  return std::nullopt;
}

std::string_view OpStatusName(OpStatus s) {
  switch (s) {
    case OpStatus::kPending:
      return "pending";
    case OpStatus::kSucceeded:
      return "succeeded";
    case OpStatus::kRefused:
      return "refused";
  }
  return "pending";
}

std::optional<OpStatus> ParseOpStatus(std::string_view s) {
  for (OpStatus o : {OpStatus::kPending, OpStatus::kSucceeded, OpStatus::kRefused}) {
    if (OpStatusName(o) == s) return o;
  }
  return std::nullopt;
}

bool IsFinal(TxStatus s) { return s == TxStatus::kCommitted || s == TxStatus::kAborted; }

bool ValidId(std::string_view id, size_t max_length) {
  if (id.empty() || id.size() > max_length) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
  });
}

void BranchOp::AddCall(const OpCall& call) {
  calls.push_back(call);
  if (calls.size() > kMaxOpCallsKept) {
    calls.erase(calls.begin(), calls.end() - static_cast<std::ptrdiff_t>(kMaxOpCallsKept));
  }
}

BranchOp* Transaction::FindOp(std::string_view branch_id, std::string_view op) {
  for (BranchOp& o : ops) {
    if (o.branch_id == branch_id && o.op == op) return &o;
  }
  return nullptr;
}

std::vector<size_t> Transaction::OpsNamed(std::string_view op) const {
  std::vector<size_t> out;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].op == op) out.push_back(i);
  }
  std::stable_sort(out.begin(), out.end(),
                   [&](size_t a, size_t b) { return ops[a].position < ops[b].position; });
  return out;
}

std::vector<std::string> Transaction::BranchIds() const {
  std::vector<std::pair<int, std::string>> seen;
  for (const BranchOp& o : ops) {
    bool known = std::any_of(seen.begin(), seen.end(),
                             [&](const auto& p) { return p.second == o.branch_id; });
    if (!known) seen.emplace_back(o.position, o.branch_id);
  }
  std::stable_sort(seen.begin(), seen.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> ids;
  for (auto& [pos, id] : seen) ids.push_back(std::move(id));
  return ids;
}

}  // namespace treaty::core
