// One error currency for the whole project: an operation either yields a value or an errno.
// Errors that need words rather than a number (command lines, configuration, addresses) use
// Result<T, std::string>.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace enclavefs {

struct Errno {
  int value;
};

// An error of type E, spelled at the call site as `return Fail{...}`.
template <class E>
struct Fail {
  E error;
};
template <class E>
Fail(E) -> Fail<E>;

template <class T, class E = Errno>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  template <class F>
  Result(Fail<F> fail) : state_(std::in_place_index<1>, E(std::move(fail.error))) {}
  Result(Errno error) requires std::is_same_v<E, Errno> : state_(std::in_place_index<1>, error) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(state_); }
  const T& value() const& { assert(ok()); return std::get<0>(state_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  const E& error() const { assert(!ok()); return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

template <class E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  template <class F>
  Result(Fail<F> fail) : error_(E(std::move(fail.error))), failed_(true) {}
  Result(Errno error) requires std::is_same_v<E, Errno> : error_(error), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const E& error() const { assert(failed_); return error_; }

 private:
  E error_{};
  bool failed_ = false;
};

// Convenience for the errno currency: the positive errno of a failed Result<T>.
template <class T>
int errnoOf(const Result<T>& r) { return r.ok() ? 0 : r.error().value; }

}  // namespace enclavefs
