// Compiled by tests/programs/gxx.sh with g++ running under kalloc, then run
// under kalloc.  Templates, std::map, std::string, iostream; deterministic
// output.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

template <typename T>
struct Matrix {
    std::size_t n;
    std::vector<T> a;
    explicit Matrix(std::size_t n_) : n(n_), a(n_ * n_) {}
    T &operator()(std::size_t i, std::size_t j) { return a[i * n + j]; }
    const T &operator()(std::size_t i, std::size_t j) const { return a[i * n + j]; }
    Matrix operator*(const Matrix &o) const {
        Matrix r(n);
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t k = 0; k < n; ++k)
                for (std::size_t j = 0; j < n; ++j) r(i, j) += (*this)(i, k) * o(k, j);
        return r;
    }
};

template <typename T, typename F>
auto fold(const std::vector<T> &v, F f) {
    using R = decltype(f(T{}, T{}));
    R acc{};
    for (const auto &x : v) acc = f(acc, x);
    return acc;
}

template <typename... Ts>
std::string concat(const Ts &...xs) {
    std::ostringstream os;
    ((os << xs << '/'), ...);
    return os.str();
}

struct Shape {
    virtual ~Shape() = default;
    virtual std::uint64_t area() const = 0;
    virtual std::string name() const = 0;
};
struct Rect : Shape {
    std::uint64_t w, h;
    Rect(std::uint64_t w_, std::uint64_t h_) : w(w_), h(h_) {}
    std::uint64_t area() const override { return w * h; }
    std::string name() const override { return "rect" + std::to_string(w) + "x" + std::to_string(h); }
};
struct Square : Rect {
    explicit Square(std::uint64_t s) : Rect(s, s) {}
    std::string name() const override { return "square" + std::to_string(w); }
};

std::uint64_t fnv(const std::string &s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) { h ^= c; h *= 1099511628211ull; }
    return h;
}

}  // namespace

int main() {
    // std::map with string keys: word frequencies of a generated text.
    std::map<std::string, int> freq;
    std::string text;
    for (int i = 0; i < 200000; ++i) {
        std::string w = "w" + std::to_string((i * 7919) % 5003);
        text += w;
        text += ' ';
        ++freq[w];
    }
    std::cout << "distinct words " << freq.size() << ", text " << text.size() << " bytes\n";
    std::cout << "first " << freq.begin()->first << "=" << freq.begin()->second
              << " last " << freq.rbegin()->first << "=" << freq.rbegin()->second << "\n";

    // Templates: matrix product, fold, variadic concat.
    Matrix<std::uint64_t> m(60);
    for (std::size_t i = 0; i < 60; ++i)
        for (std::size_t j = 0; j < 60; ++j) m(i, j) = (i * 31 + j * 17) % 11;
    auto p = m * m * m;
    std::cout << "matrix trace " << [&] { std::uint64_t t = 0; for (std::size_t i = 0; i < 60; ++i) t += p(i, i); return t; }() << "\n";
    std::vector<int> v(100000);
    std::iota(v.begin(), v.end(), 1);
    std::cout << "fold " << fold(v, [](long long a, int b) { return a + b; }) << "\n";
    std::cout << "concat " << concat(1, "two", 3.5, std::string("four")) << "\n";

    // Polymorphic objects in a list of unique_ptrs, sorted.
    std::vector<std::unique_ptr<Shape>> shapes;
    for (int i = 1; i <= 5000; ++i) {
        if (i % 3 == 0) shapes.push_back(std::make_unique<Square>(i % 97));
        else shapes.push_back(std::make_unique<Rect>(i % 89, i % 13 + 1));
    }
    std::stable_sort(shapes.begin(), shapes.end(),
                     [](const auto &a, const auto &b) { return a->area() < b->area(); });
    std::uint64_t h = 0;
    for (const auto &s : shapes) h = h * 31 + fnv(s->name());
    std::cout << "shapes " << shapes.size() << " smallest " << shapes.front()->name() << " largest "
              << shapes.back()->name() << " hash " << h << "\n";

    // unordered_map / set / list churn.
    std::unordered_map<std::uint64_t, std::string> um;
    std::set<std::string> ordered;
    std::list<std::vector<int>> lists;
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 50000; ++i) um[static_cast<std::uint64_t>(i) * 2654435761u] = std::string(i % 64, 'a' + round);
        for (int i = 0; i < 50000; i += 2) um.erase(static_cast<std::uint64_t>(i) * 2654435761u);
        for (int i = 0; i < 3000; ++i) ordered.insert(std::to_string(i * round));
        lists.emplace_back(1000 * (round + 1), round);
    }
    std::uint64_t sum = 0;
    for (const auto &kv : um) sum += kv.first % 1000 + kv.second.size();
    std::cout << "unordered " << um.size() << " " << sum << " set " << ordered.size() << " "
              << *ordered.begin() << ".." << *ordered.rbegin() << " lists "
              << std::accumulate(lists.begin(), lists.end(), 0ull,
                                 [](unsigned long long a, const std::vector<int> &l) {
                                     return a + std::accumulate(l.begin(), l.end(), 0ull);
                                 })
              << "\n";
    return 0;
}
