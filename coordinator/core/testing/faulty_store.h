#pragma once

// A TransactionStore decorator for fault tests: forwards every call to the store it wraps, and
// fails the methods it is told to, with the Status it is told to (Unavailable by default), for
// the next N calls or until cleared. A fault may also let the call through and only then report
// its failure: the write committed but its answer was lost, as when the connection drops
// between the database's COMMIT and its reply (a caller must then find, by reading, that what
// it retries already happened). Counts every call, failed ones included. Thread-safe: faults may
// be set and cleared while other threads call through it.

#include <array>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_annotations.h"
#include "coordinator/core/store.h"

namespace treaty::core::testing {

// TransactionStore's methods, one each.
enum class StoreMethod {
  kCreate,
  kLoad,
  kAddBranch,
  kMarkSubmitted,
  kTransition,
  kRecordOps,
  kSetAttention,
  kReschedule,
  kMakeDue,
  kForce,
  kClaimDue,
  kTryLease,
  kReleaseLeases,
  kList,
  kCountByStatus,
};
inline constexpr size_t kStoreMethods = static_cast<size_t>(StoreMethod::kCountByStatus) + 1;

// The method's name as spelled in store.h ("Create", "ClaimDue", ...).
std::string_view StoreMethodName(StoreMethod method);
// The method named `name`; nullopt when TransactionStore has none by that name.
std::optional<StoreMethod> ParseStoreMethod(std::string_view name);

struct StoreFault {
  Status status = Status::Unavailable("store fault injected (test)");
  // How many calls fail, from the next one; negative: every call until cleared.
  int times = -1;
  // The call goes through to the wrapped store first; then its answer is replaced by `status`.
  bool after_write = false;
};

class FaultyStore : public TransactionStore {
 public:
  // `inner` must outlive this store.
  explicit FaultyStore(TransactionStore& inner) : inner_(inner) {}

  // Sets (replaces) the fault of `method`.
  void Fail(StoreMethod method, StoreFault fault = {});
  // The same by name; false (and nothing set) when there is no such method.
  bool Fail(std::string_view method, StoreFault fault = {});
  // The next call of `method` fails with `status`.
  void FailOnce(StoreMethod method, Status status, bool after_write = false);
  // Every method, each with its own count of `fault.times`: the store is down.
  void FailAll(StoreFault fault = {});
  void Clear(StoreMethod method);
  void ClearAll();

  // Calls of `method` made through this store, failed ones included.
  int Calls(StoreMethod method) const;
  // Calls of `method` answered with an injected failure.
  int Injected(StoreMethod method) const;

  Result<CreateResult> Create(const Transaction& tx, const std::string& owner,
                              Duration lease) override;
  Result<Transaction> Load(const std::string& gid, bool with_log) override;
  Status AddBranch(const std::string& gid, const std::vector<BranchOp>& ops) override;
  Status MarkSubmitted(const std::string& gid, TimePoint now) override;
  Status Transition(const std::string& gid, TxStatus from, TxStatus to, const std::string& reason,
                    TimePoint now, const std::vector<BranchOp>& ops, const Fence* fence) override;
  Status RecordOps(const std::string& gid, const std::vector<BranchOp>& ops, TimePoint now,
                   const Fence& fence) override;
  Status SetAttention(const std::string& gid, const std::string& attention,
                      const Fence* fence) override;
  Status Reschedule(const std::string& gid, const std::string& owner,
                    TimePoint next_attempt_at) override;
  Status MakeDue(const std::string& gid, TimePoint now) override;
  Status Force(const std::string& gid, TxStatus from, TxStatus to, const std::string& reason,
               const std::string& actor, TimePoint now) override;
  Result<std::vector<std::string>> ClaimDue(const std::string& owner, TimePoint now, Duration lease,
                                            int limit) override;
  Result<bool> TryLease(const std::string& gid, const std::string& owner, Duration lease) override;
  Status ReleaseLeases(const std::string& node) override;
  Result<ListPage> List(const ListFilter& filter) override;
  Result<StatusCounts> CountByStatus() override;

 private:
  // Counts a call of `method` and takes one use of its fault, if it has one.
  std::optional<StoreFault> Take(StoreMethod method);
  // Runs `call` (the wrapped store's method) as `method`'s fault says.
  template <typename Answer, typename Call>
  Answer Run(StoreMethod method, Call call) {
    std::optional<StoreFault> fault = Take(method);
    if (!fault) return call();
    if (fault->after_write) static_cast<void>(call());
    return Answer(fault->status);
  }

  TransactionStore& inner_;
  mutable Mutex mu_;
  std::array<std::optional<StoreFault>, kStoreMethods> faults_ GUARDED_BY(mu_);
  std::array<int, kStoreMethods> calls_ GUARDED_BY(mu_){};
  std::array<int, kStoreMethods> injected_ GUARDED_BY(mu_){};
};

}  // namespace treaty::core::testing
