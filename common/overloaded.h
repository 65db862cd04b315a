// Visits a std::variant with one lambda per alternative: std::visit(Overloaded{...}, v).
#pragma once

namespace enclavefs {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace enclavefs
