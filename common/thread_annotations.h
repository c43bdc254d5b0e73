#pragma once

// Clang thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html), as
// abseil's thread_annotations.h defines them: attributes under Clang, nothing elsewhere (g++
// builds ignore them). A Clang build with -Wthread-safety checks them (scripts/test does).
//
// The analysis knows only annotated lock types; libstdc++'s std::mutex is not one, so guarded
// state is locked by treaty::Mutex through treaty::MutexLock:
//
//   Mutex mu_;
//   int count_ GUARDED_BY(mu_) = 0;
//   void Bump() REQUIRES(mu_) { ++count_; }       // called with mu_ held
//   ...
//   MutexLock lock(mu_);
//   cv_.wait(lock.native(), [this]() REQUIRES(mu_) { return count_ > 0; });
//
// A guarded member of a nested struct cannot name the enclosing object's mutex (Clang reads the
// name as the struct's own member): such members say "guarded by" in a comment.

#include <mutex>

#if defined(__clang__)
#define TREATY_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TREATY_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) TREATY_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY TREATY_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) TREATY_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) TREATY_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) TREATY_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) TREATY_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) TREATY_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) TREATY_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) TREATY_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) TREATY_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) TREATY_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) TREATY_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) TREATY_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) TREATY_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS TREATY_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace treaty {

// A std::mutex the analysis knows. lock()/unlock()/try_lock() make it a Lockable (for
// std::condition_variable_any); native() is the std::mutex itself, for MutexLock's
// std::unique_lock and so std::condition_variable.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }

  // Tells the analysis that mu_ is held here (it cannot see through some callbacks); no check.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

  std::mutex& native() RETURN_CAPABILITY(this) { return mu_; }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope, as std::unique_lock does (and through one): Unlock()/Lock() in
// between, and native() for std::condition_variable's waits. A wait releases the mutex and
// holds it again before it returns; to the analysis the mutex is held throughout, which is what
// the code after the wait may rely on.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.native()) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Lock() ACQUIRE() { lock_.lock(); }
  void Unlock() RELEASE() { lock_.unlock(); }

  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

// The reverse: releases a Mutex the caller holds (through a MutexLock up the stack) for its
// scope, and takes it again on the way out, by an exception too, so that the MutexLock owns it
// again. For a method that is called with the mutex held and lets go of it meanwhile.
class SCOPED_CAPABILITY MutexUnlock {
 public:
  explicit MutexUnlock(Mutex& mu) RELEASE(mu) : mu_(mu) { mu_.unlock(); }
  ~MutexUnlock() RELEASE() { mu_.lock(); }
  MutexUnlock(const MutexUnlock&) = delete;
  MutexUnlock& operator=(const MutexUnlock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace treaty
