#pragma once

// Errors as values. Library exceptions stop at the adapters; everything above them returns a
// Status or a Result<T>. Standard library only: the core domain depends on this header.

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace treaty {

class Status {
 public:
  enum class Code {
    kOk,
    kInvalidArgument,  // the caller's input is wrong; retrying the same input fails again
    kNotFound,
    kConflict,     // the request contradicts state already accepted
    kUnavailable,  // a dependency (database, broker, participant) cannot be reached now
    kDeadlineExceeded,
    kLeaseLost,          // a fenced write found another owner (or an expired lease): stop driving
    kResourceExhausted,  // overloaded: the same request may succeed later (HTTP 503, Retry-After)
    kInternal,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string message) {
    return Status(Code::kInvalidArgument, std::move(message));
  }
  // The caller's input is wrong in one named field (a request's "branches[0].try", say): the
  // REST layer answers 400 naming it.
  static Status InvalidField(std::string field, std::string message) {
    Status s(Code::kInvalidArgument, std::move(message));
    s.field_ = std::move(field);
    return s;
  }
  static Status NotFound(std::string message) {
    return Status(Code::kNotFound, std::move(message));
  }
  static Status Conflict(std::string message) {
    return Status(Code::kConflict, std::move(message));
  }
  static Status Unavailable(std::string message) {
    return Status(Code::kUnavailable, std::move(message));
  }
  static Status DeadlineExceeded(std::string message) {
    return Status(Code::kDeadlineExceeded, std::move(message));
  }
  static Status ResourceExhausted(std::string message) {
    return Status(Code::kResourceExhausted, std::move(message));
  }
  static Status LeaseLost(std::string message) {
    return Status(Code::kLeaseLost, std::move(message));
  }
  static Status Internal(std::string message) {
    return Status(Code::kInternal, std::move(message));
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // The input field an InvalidArgument concerns; empty when it names none.
  const std::string& field() const { return field_; }
  std::string ToString() const;

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code_ = Code::kOk;
  std::string message_;
  std::string field_;
};

const char* CodeName(Status::Code code);

inline std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

inline const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return "OK";
    case Status::Code::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case Status::Code::kNotFound:
      return "NOT_FOUND";
    case Status::Code::kConflict:
      return "CONFLICT";
    case Status::Code::kUnavailable:
      return "UNAVAILABLE";
    case Status::Code::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case Status::Code::kLeaseLost:
      return "LEASE_LOST";
    case Status::Code::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case Status::Code::kInternal:
      return "INTERNAL";
  }
  return "UNKNOWN";
}

// A value or the Status that explains why there is none. A Result built from a Status must
// carry an error: an OK status without a value is a programming error.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace treaty
