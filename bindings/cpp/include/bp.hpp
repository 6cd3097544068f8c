// bp.hpp: the C++17 binding of backprop, header-only, built on the C API in bp.h alone.
//
//   bp::Graph g;                                   // owns every tensor; move-only, freed by its destructor
//   g.manual_seed(0);
//   bp::Model model;                               // nn.Sequential: 64 -> 128 ReLU -> 10
//   model.add_linear(g, 64, 128).add(bp::Layer::relu).add_linear(g, 128, 10);
//   bp::Optimizer opt = bp::Optimizer::adam(g, model, 1e-3);
//   bp::Loader loader(train.rows(), 32);
//   loader.start_epoch();
//   while (auto batch = loader.next_batch(g, train)) {
//       opt.zero_grad();
//       bp::cross_entropy(model(batch->x), batch->y).backward();
//       opt.step();
//       g.reset();                                 // drops the step's intermediates, keeps parameters
//   }
//
// The engine is there too: tensors with operators (a + b, 2.0 * x, -x), the ops as functions
// (bp::matmul, bp::relu, ...), backward()/grad(), bp::autograd::grad, and bp::NoGradGuard for
// in-place updates (`{ bp::NoGradGuard no_grad(g); w -= lr * w.grad(); }`).
//
// Ownership and lifetimes (docs/BINDINGS.md says more):
//  - Graph owns a bp_graph and every tensor in it. Graph, Dataset, Loader, Model, Optimizer and
//    Schedule are move-only owners; each destructor frees its C object. A Model's parameters live in
//    the Graph given to add_linear & co., an Optimizer steps in the Graph it was made with, a Schedule
//    drives the Optimizer it was made with: those must outlive them (a use after free is detected by
//    the C library and throws Status::invalid_handle).
//  - Tensor is a small value (the C handle plus the graph's C pointer, not a pointer to the Graph
//    object, so moving a Graph keeps its tensors valid). Copy it freely; it owns nothing. A Tensor
//    whose tensor was freed or dropped by Graph::reset() is stale: using it throws bp::Error with
//    Status::invalid_handle, and so does a Tensor whose Graph was destroyed (the C library detects
//    both; a correct program does neither).
//  - Every failure throws bp::Error, which carries the C status code (code()) and the library's message
//    (what()). Destructors never throw.
//  - One graph must be used by one thread at a time; different graphs may be used from different
//    threads at once.
#ifndef BP_HPP
#define BP_HPP

#include <bp.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bp {

/// A status code of the C API (`bp_status`); the numbers are pinned forever.
enum class Status : std::int32_t {
    ok = BP_OK,
    invalid_argument = BP_ERR_INVALID_ARGUMENT,
    shape_mismatch = BP_ERR_SHAPE_MISMATCH,
    invalid_handle = BP_ERR_INVALID_HANDLE,
    out_of_memory = BP_ERR_OUT_OF_MEMORY,
    autograd = BP_ERR_AUTOGRAD,
    dtype = BP_ERR_DTYPE,
    io = BP_ERR_IO,
    format = BP_ERR_FORMAT,
    anomaly = BP_ERR_ANOMALY,
    internal = BP_ERR_INTERNAL,
    unsupported = BP_ERR_UNSUPPORTED,
    collective = BP_ERR_COLLECTIVE,
};

/// The C name of a status ("BP_ERR_SHAPE_MISMATCH"); "BP_ERR_UNKNOWN" for a number that is none.
inline const char *status_name(Status status) noexcept { return bp_status_name(static_cast<bp_status>(status)); }

/// The one exception type of the binding: a failed C call, with its status code and message.
/// Compare code() to a Status; the message text is for people and may change.
class Error : public std::runtime_error {
  public:
    /// An error with the given code; what() reads "BP_ERR_<NAME>: <message>".
    Error(Status code, const std::string &message)
        : std::runtime_error(std::string(status_name(code)) + ": " + message), code_(code), message_(message) {}
    /// The status code of the failed call.
    Status code() const noexcept { return code_; }
    /// The library's message alone, without the status name.
    const std::string &message() const noexcept { return message_; }

  private:
    Status code_;
    std::string message_;
};

namespace detail {
/// Throws bp::Error for a failed status. The thread-local message is copied before any other bp_
/// call can overwrite it.
inline void check(bp_status status) {
    if (status != BP_OK) {
        std::string message = bp_last_error_message();
        throw Error(static_cast<Status>(status), message);
    }
}
}  // namespace detail

/// An element type (`BP_DTYPE_*`).
enum class DType : std::int32_t { f32 = BP_DTYPE_F32, f64 = BP_DTYPE_F64, i64 = BP_DTYPE_I64 };

/// How a loss reduces its per-element values (`BP_REDUCTION_*`).
enum class Reduction : std::int32_t { none = BP_REDUCTION_NONE, mean = BP_REDUCTION_MEAN, sum = BP_REDUCTION_SUM };
/// The activation linear_act applies after a linear layer.
enum class Activation : std::int32_t { relu = BP_ACTIVATION_RELU, sigmoid = BP_ACTIVATION_SIGMOID, tanh = BP_ACTIVATION_TANH };

/// A tensor shape, or a list of dimensions.
using Shape = std::vector<std::int64_t>;

/// The library's version as major·10000 + minor·100 + patch; compare with BP_VERSION_NUMBER.
inline std::uint32_t version() noexcept { return bp_version(); }
/// The library's version as "major.minor.patch".
inline const char *version_string() noexcept { return bp_version_string(); }

/// A handle to a tensor owned by a Graph: copy it freely, it owns nothing. The default-constructed
/// Tensor is the null handle (what grad() returns before any backward).
class Tensor {
  public:
    /// The null handle.
    Tensor() noexcept = default;
    /// Wraps a C handle of the graph `graph` (for mixing with C code).
    Tensor(bp_graph *graph, bp_tensor handle) noexcept : graph_(graph), handle_(handle) {}

    /// The C handle.
    bp_tensor handle() const noexcept { return handle_; }
    /// The C pointer of the graph that owns the tensor (not owned by the Tensor).
    bp_graph *graph() const noexcept { return graph_; }
    /// Whether this is the null handle.
    bool is_null() const noexcept { return bp_tensor_is_null(handle_); }
    /// True unless this is the null handle.
    explicit operator bool() const noexcept { return !is_null(); }

    /// The dimensions.
    Shape shape() const {
        Shape dims(8);
        std::size_t ndim = 0;
        detail::check(bp_tensor_shape(graph_, handle_, dims.data(), dims.size(), &ndim));
        dims.resize(ndim);
        return dims;
    }
    /// The number of dimensions.
    std::size_t ndim() const { return query<std::size_t>(bp_tensor_ndim); }
    /// The number of elements.
    std::size_t numel() const { return query<std::size_t>(bp_tensor_numel); }
    /// The element type.
    DType dtype() const { return static_cast<DType>(query<bp_dtype>(bp_tensor_dtype)); }
    /// The value of a one-element tensor, as double.
    double item() const { return query<double>(bp_tensor_item); }
    /// The version counter, bumped by every in-place write.
    std::uint32_t version() const { return query<std::uint32_t>(bp_tensor_version); }

    /// Whether the tensor takes part in differentiation.
    bool requires_grad() const { return query<bool>(bp_tensor_requires_grad); }
    /// Sets requires_grad on a floating-point leaf; returns *this for chaining.
    Tensor set_requires_grad(bool requires_grad = true) const {
        detail::check(bp_tensor_set_requires_grad(graph_, handle_, requires_grad));
        return *this;
    }
    /// Whether the tensor is a leaf (not made by a recorded op).
    bool is_leaf() const { return query<bool>(bp_tensor_is_leaf); }
    /// The name of the op that made the tensor ("matmul"); nullptr for a leaf. A static string.
    const char *grad_fn() const { return query<const char *>(bp_tensor_grad_fn); }
    /// Keeps this non-leaf's gradient during backward.
    void retain_grad() const { detail::check(bp_tensor_retain_grad(graph_, handle_)); }
    /// Whether the tensor survives Graph::reset().
    bool is_persistent() const { return query<bool>(bp_tensor_is_persistent); }
    /// Makes a leaf survive Graph::reset() (parameters, data) or step-scoped again; returns *this.
    Tensor set_persistent(bool persistent = true) const {
        detail::check(bp_tensor_set_persistent(graph_, handle_, persistent));
        return *this;
    }

    /// Backpropagates from this one-element tensor into the .grad of every leaf that requires grad.
    /// Without retain_graph a second backward through the same ops throws Status::autograd.
    void backward(bool retain_graph = false, bool create_graph = false) const {
        detail::check(bp_backward(graph_, handle_, nullptr, retain_graph, create_graph));
    }
    /// Backpropagates from a tensor of any shape, seeded with `gradient` (of the same shape).
    void backward(const Tensor &gradient, bool retain_graph = false, bool create_graph = false) const {
        bp_tensor seed = gradient.handle_;
        detail::check(bp_backward(graph_, handle_, &seed, retain_graph, create_graph));
    }
    /// The accumulated gradient (torch's .grad); the null Tensor before any backward reached it.
    Tensor grad() const { return Tensor(graph_, query<bp_tensor>(bp_grad)); }
    /// Drops the gradient (torch's zero_grad(set_to_none=True)).
    void zero_grad() const { detail::check(bp_zero_grad(graph_, handle_)); }
    /// A new leaf with a copy of the values, cut from the history.
    Tensor detach() const { return Tensor(graph_, query<bp_tensor>(bp_detach)); }

    /// Copies the elements out, row-major; T is float, double or std::int64_t and must match dtype().
    template <typename T>
    std::vector<T> to_vector() const {
        std::vector<T> out(numel());
        read(out.data(), out.size());
        return out;
    }
    /// Copies the elements into out[0..len] (len must equal numel()).
    void read(float *out, std::size_t len) const { detail::check(bp_tensor_read_f32(graph_, handle_, out, len)); }
    /// Copies the elements into out[0..len] (len must equal numel()).
    void read(double *out, std::size_t len) const { detail::check(bp_tensor_read_f64(graph_, handle_, out, len)); }
    /// Copies the elements into out[0..len] (len must equal numel()).
    void read(std::int64_t *out, std::size_t len) const { detail::check(bp_tensor_read_i64(graph_, handle_, out, len)); }
    /// Overwrites the elements in place (bumps version()); data.size() must equal numel().
    void write(const std::vector<float> &data) const {
        detail::check(bp_tensor_write_f32(graph_, handle_, data.data(), data.size()));
    }
    /// Overwrites the elements in place (bumps version()); data.size() must equal numel().
    void write(const std::vector<double> &data) const {
        detail::check(bp_tensor_write_f64(graph_, handle_, data.data(), data.size()));
    }
    /// Overwrites the elements in place (bumps version()); data.size() must equal numel().
    void write(const std::vector<std::int64_t> &data) const {
        detail::check(bp_tensor_write_i64(graph_, handle_, data.data(), data.size()));
    }
    /// Copies src's values into this tensor in place (same shape and type); records nothing.
    void assign(const Tensor &src) const { detail::check(bp_tensor_assign(graph_, handle_, src.handle_)); }

    /// Frees the tensor now (and its gradient); this and every copy of the handle become stale.
    void free() {
        detail::check(bp_tensor_free(graph_, handle_));
        handle_ = bp_tensor{0, 0, 0};
    }

    /// The Graphviz DOT source of everything this tensor was computed from.
    std::string to_dot() const {
        std::size_t size = 0;
        detail::check(bp_graph_to_dot(graph_, handle_, nullptr, 0, &size));
        std::string dot(size, '\0');
        detail::check(bp_graph_to_dot(graph_, handle_, &dot[0], dot.size(), &size));
        dot.resize(size - 1);  // the C string's terminating NUL
        return dot;
    }

    /// The transpose of the last two dimensions.
    Tensor t() const {
        bp_tensor out;
        detail::check(bp_transpose(graph_, handle_, -2, -1, &out));
        return Tensor(graph_, out);
    }

    /// In place: this = this + rhs (computed with ops, then assigned; records nothing). For updates
    /// under NoGradGuard, as torch's `p -= lr * p.grad`.
    Tensor &operator+=(const Tensor &rhs);
    /// In place: this = this - rhs (see operator+=).
    Tensor &operator-=(const Tensor &rhs);
    /// In place: this = this * rhs (see operator+=).
    Tensor &operator*=(const Tensor &rhs);
    /// In place: this = this / rhs (see operator+=).
    Tensor &operator/=(const Tensor &rhs);
    /// In place: this = this + c (see operator+=).
    Tensor &operator+=(double c);
    /// In place: this = this - c (see operator+=).
    Tensor &operator-=(double c);
    /// In place: this = this * c (see operator+=).
    Tensor &operator*=(double c);
    /// In place: this = this / c (see operator+=).
    Tensor &operator/=(double c);

  private:
    template <typename T, typename F>
    T query(F fn) const {
        T value{};
        detail::check(fn(graph_, handle_, &value));
        return value;
    }

    bp_graph *graph_ = nullptr;
    bp_tensor handle_{0, 0, 0};
};

namespace detail {
inline const std::int64_t *dims_ptr(const Shape &dims) noexcept { return dims.empty() ? nullptr : dims.data(); }

/// Runs a C op that writes one tensor and wraps the result.
template <typename F, typename... Args>
Tensor op(bp_graph *graph, F fn, Args... args) {
    bp_tensor out;
    check(fn(graph, args..., &out));
    return Tensor(graph, out);
}
}  // namespace detail

/// Memory held by a graph: bytes of live tensor data and bytes pooled for reuse.
struct MemoryUsage {
    std::size_t live = 0;    ///< bytes held by live tensors
    std::size_t pooled = 0;  ///< bytes kept in the pool of reusable buffers
};

/// A graph: the arena of tensors and the record of the ops that made them. Move-only; the
/// destructor frees it and every tensor in it.
class Graph {
  public:
    /// A new, empty graph (gradient recording on, generator seeded with 0).
    Graph() { detail::check(bp_graph_new(&graph_)); }
    /// Takes ownership of a graph made by bp_graph_new.
    explicit Graph(bp_graph *adopt) noexcept : graph_(adopt) {}
    Graph(const Graph &) = delete;
    Graph &operator=(const Graph &) = delete;
    /// Moves the graph; `other` is left empty and its destructor does nothing.
    Graph(Graph &&other) noexcept : graph_(std::exchange(other.graph_, nullptr)) {}
    /// Frees this graph, then takes `other`'s.
    Graph &operator=(Graph &&other) noexcept {
        if (this != &other) {
            bp_graph_free(graph_);
            graph_ = std::exchange(other.graph_, nullptr);
        }
        return *this;
    }
    /// Frees the graph; the status is ignored because destructors must not throw.
    ~Graph() { bp_graph_free(graph_); }

    /// The C pointer (still owned by this Graph); nullptr after a move.
    bp_graph *get() const noexcept { return graph_; }
    /// Gives up ownership: the caller must bp_graph_free the result.
    bp_graph *release() noexcept { return std::exchange(graph_, nullptr); }

    /// Drops every non-persistent tensor and every recorded op; call it between training steps.
    void reset() { detail::check(bp_graph_reset(graph_)); }
    /// Reseeds the generator, as torch.manual_seed.
    void manual_seed(std::uint64_t seed) { detail::check(bp_graph_manual_seed(graph_, seed)); }
    /// The whole state of the random generator (BP_GENERATOR_STATE_WORDS words), for checkpoints.
    std::vector<std::uint32_t> generator_state() const {
        std::vector<std::uint32_t> words(BP_GENERATOR_STATE_WORDS);
        detail::check(bp_graph_get_generator_state(graph_, words.data(), words.size()));
        return words;
    }
    /// Restores a state from generator_state(); malformed words throw Status::format and change nothing.
    void set_generator_state(const std::vector<std::uint32_t> &words) {
        detail::check(bp_graph_set_generator_state(graph_, words.data(), words.size()));
    }
    /// Caps the bytes of tensor data (SIZE_MAX: no limit).
    void set_memory_limit(std::size_t bytes) { detail::check(bp_graph_set_memory_limit(graph_, bytes)); }
    /// The memory limit in bytes (SIZE_MAX when unlimited).
    std::size_t memory_limit() const { return query<std::size_t>(bp_graph_memory_limit); }
    /// Bytes held by live tensors and by the pool.
    MemoryUsage memory_used() const {
        MemoryUsage usage;
        detail::check(bp_graph_memory_used(graph_, &usage.live, &usage.pooled));
        return usage;
    }
    /// The number of live tensors.
    std::size_t tensor_count() const { return query<std::size_t>(bp_graph_tensor_count); }
    /// The number of recorded ops.
    std::size_t node_count() const { return query<std::size_t>(bp_graph_node_count); }
    /// Whether ops record for autograd (off inside a NoGradGuard).
    bool is_grad_enabled() const { return query<bool>(bp_graph_is_grad_enabled); }
    /// Turns recording on or off; returns the previous setting. Prefer NoGradGuard.
    bool set_grad_enabled(bool enabled) {
        bool previous = true;
        detail::check(bp_graph_set_grad_enabled(graph_, enabled, &previous));
        return previous;
    }
    /// With it on, a NaN or infinity from an op throws Status::anomaly naming the op.
    void set_anomaly_detection(bool enabled) { detail::check(bp_graph_set_anomaly_detection(graph_, enabled)); }

    /// Zeros of the given shape.
    Tensor zeros(const Shape &shape, DType dtype = DType::f32) {
        return detail::op(graph_, bp_tensor_new, static_cast<bp_dtype>(dtype), detail::dims_ptr(shape), shape.size());
    }
    /// Every element equal to `value`.
    Tensor full(const Shape &shape, double value, DType dtype = DType::f32) {
        return detail::op(graph_, bp_tensor_full, static_cast<bp_dtype>(dtype), detail::dims_ptr(shape), shape.size(), value);
    }
    /// A float32 tensor holding a copy of `data` (row-major; data.size() must match the shape).
    Tensor tensor(const std::vector<float> &data, const Shape &shape) {
        return detail::op(graph_, bp_tensor_from_f32, data.data(), data.size(), detail::dims_ptr(shape), shape.size());
    }
    /// A float64 tensor holding a copy of `data`.
    Tensor tensor(const std::vector<double> &data, const Shape &shape) {
        return detail::op(graph_, bp_tensor_from_f64, data.data(), data.size(), detail::dims_ptr(shape), shape.size());
    }
    /// An int64 tensor (class indices, gather indices) holding a copy of `data`.
    Tensor tensor(const std::vector<std::int64_t> &data, const Shape &shape) {
        return detail::op(graph_, bp_tensor_from_i64, data.data(), data.size(), detail::dims_ptr(shape), shape.size());
    }
    /// start, start + step, … below end (torch.arange).
    Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::f32) {
        return detail::op(graph_, bp_tensor_arange, start, end, step, static_cast<bp_dtype>(dtype));
    }
    /// Uniform on [low, high), exactly as torch's generator after the same manual_seed.
    Tensor rand(const Shape &shape, double low = 0.0, double high = 1.0, DType dtype = DType::f32) {
        return detail::op(graph_, bp_tensor_rand, static_cast<bp_dtype>(dtype), detail::dims_ptr(shape), shape.size(), low, high);
    }
    /// Normal samples (torch.randn(shape) * std + mean).
    Tensor randn(const Shape &shape, double mean = 0.0, double std = 1.0, DType dtype = DType::f32) {
        return detail::op(graph_, bp_tensor_randn, static_cast<bp_dtype>(dtype), detail::dims_ptr(shape), shape.size(), mean, std);
    }
    /// int64 uniform on the integers [low, high) (torch.randint).
    Tensor randint(std::int64_t low, std::int64_t high, const Shape &shape) {
        return detail::op(graph_, bp_tensor_randint, low, high, detail::dims_ptr(shape), shape.size());
    }

  private:
    template <typename T, typename F>
    T query(F fn) const {
        T value{};
        detail::check(fn(graph_, &value));
        return value;
    }

    bp_graph *graph_ = nullptr;
};

/// Turns gradient recording off for its scope and restores the previous setting when it ends
/// (torch.no_grad()). Not copyable or movable: it is a scope.
class NoGradGuard {
  public:
    /// Turns recording off on `graph`.
    explicit NoGradGuard(Graph &graph) : graph_(graph.get()) {
        detail::check(bp_graph_set_grad_enabled(graph_, false, &previous_));
    }
    NoGradGuard(const NoGradGuard &) = delete;
    NoGradGuard &operator=(const NoGradGuard &) = delete;
    /// Restores the previous setting.
    ~NoGradGuard() { bp_graph_set_grad_enabled(graph_, previous_, nullptr); }

  private:
    bp_graph *graph_;
    bool previous_ = true;
};

// ---- elementwise --------------------------------------------------------------------------------

/// -x.
inline Tensor neg(const Tensor &x) { return detail::op(x.graph(), bp_neg, x.handle()); }
/// e^x.
inline Tensor exp(const Tensor &x) { return detail::op(x.graph(), bp_exp, x.handle()); }
/// ln x.
inline Tensor log(const Tensor &x) { return detail::op(x.graph(), bp_log, x.handle()); }
/// √x.
inline Tensor sqrt(const Tensor &x) { return detail::op(x.graph(), bp_sqrt, x.handle()); }
/// |x|.
inline Tensor abs(const Tensor &x) { return detail::op(x.graph(), bp_abs, x.handle()); }
/// max(x, 0).
inline Tensor relu(const Tensor &x) { return detail::op(x.graph(), bp_relu, x.handle()); }
/// 1 / (1 + e^-x).
inline Tensor sigmoid(const Tensor &x) { return detail::op(x.graph(), bp_sigmoid, x.handle()); }
/// tanh x.
inline Tensor tanh(const Tensor &x) { return detail::op(x.graph(), bp_tanh, x.handle()); }
/// The exact (erf) GELU.
inline Tensor gelu(const Tensor &x) { return detail::op(x.graph(), bp_gelu, x.handle()); }
/// x for x > 0, slope·x otherwise.
inline Tensor leaky_relu(const Tensor &x, double slope = 0.01) { return detail::op(x.graph(), bp_leaky_relu, x.handle(), slope); }
/// x^exponent.
inline Tensor pow(const Tensor &x, double exponent) { return detail::op(x.graph(), bp_pow, x.handle(), exponent); }

/// a + b, broadcasting.
inline Tensor operator+(const Tensor &a, const Tensor &b) { return detail::op(a.graph(), bp_add, a.handle(), b.handle()); }
/// a - b, broadcasting.
inline Tensor operator-(const Tensor &a, const Tensor &b) { return detail::op(a.graph(), bp_sub, a.handle(), b.handle()); }
/// a · b elementwise, broadcasting.
inline Tensor operator*(const Tensor &a, const Tensor &b) { return detail::op(a.graph(), bp_mul, a.handle(), b.handle()); }
/// a / b elementwise, broadcasting.
inline Tensor operator/(const Tensor &a, const Tensor &b) { return detail::op(a.graph(), bp_div, a.handle(), b.handle()); }
/// -x.
inline Tensor operator-(const Tensor &x) { return neg(x); }
/// x + c.
inline Tensor operator+(const Tensor &x, double c) { return detail::op(x.graph(), bp_add_scalar, x.handle(), c); }
/// c + x.
inline Tensor operator+(double c, const Tensor &x) { return x + c; }
/// x - c.
inline Tensor operator-(const Tensor &x, double c) { return x + (-c); }
/// c - x.
inline Tensor operator-(double c, const Tensor &x) { return neg(x) + c; }
/// x · c.
inline Tensor operator*(const Tensor &x, double c) { return detail::op(x.graph(), bp_mul_scalar, x.handle(), c); }
/// c · x.
inline Tensor operator*(double c, const Tensor &x) { return x * c; }
/// x / c.
inline Tensor operator/(const Tensor &x, double c) { return x * (1.0 / c); }
/// c / x.
inline Tensor operator/(double c, const Tensor &x) { return pow(x, -1.0) * c; }

inline Tensor &Tensor::operator+=(const Tensor &rhs) { assign(*this + rhs); return *this; }
inline Tensor &Tensor::operator-=(const Tensor &rhs) { assign(*this - rhs); return *this; }
inline Tensor &Tensor::operator*=(const Tensor &rhs) { assign(*this * rhs); return *this; }
inline Tensor &Tensor::operator/=(const Tensor &rhs) { assign(*this / rhs); return *this; }
inline Tensor &Tensor::operator+=(double c) { assign(*this + c); return *this; }
inline Tensor &Tensor::operator-=(double c) { assign(*this - c); return *this; }
inline Tensor &Tensor::operator*=(double c) { assign(*this * c); return *this; }
inline Tensor &Tensor::operator/=(double c) { assign(*this / c); return *this; }

// ---- reductions ---------------------------------------------------------------------------------

/// The sum over `dims` (all of them when empty; negative count from the end).
inline Tensor sum(const Tensor &x, const Shape &dims = {}, bool keepdim = false) {
    return detail::op(x.graph(), bp_sum, x.handle(), detail::dims_ptr(dims), dims.size(), keepdim);
}
/// The mean over `dims` (all of them when empty).
inline Tensor mean(const Tensor &x, const Shape &dims = {}, bool keepdim = false) {
    return detail::op(x.graph(), bp_mean, x.handle(), detail::dims_ptr(dims), dims.size(), keepdim);
}
/// The maximum over `dims` (all of them when empty); ties share the gradient (torch.amax).
inline Tensor max(const Tensor &x, const Shape &dims = {}, bool keepdim = false) {
    return detail::op(x.graph(), bp_max, x.handle(), detail::dims_ptr(dims), dims.size(), keepdim);
}
/// Softmax over `dim`.
inline Tensor softmax(const Tensor &x, std::int64_t dim) { return detail::op(x.graph(), bp_softmax, x.handle(), dim); }
/// Log-softmax over `dim`, computed stably.
inline Tensor log_softmax(const Tensor &x, std::int64_t dim) { return detail::op(x.graph(), bp_log_softmax, x.handle(), dim); }

// ---- shapes -------------------------------------------------------------------------------------

/// The same elements in a new shape (one dimension may be -1).
inline Tensor reshape(const Tensor &x, const Shape &shape) {
    return detail::op(x.graph(), bp_reshape, x.handle(), detail::dims_ptr(shape), shape.size());
}
/// Output dimension i is input dimension perm[i].
inline Tensor permute(const Tensor &x, const Shape &perm) {
    return detail::op(x.graph(), bp_permute, x.handle(), detail::dims_ptr(perm), perm.size());
}
/// Swaps two dimensions.
inline Tensor transpose(const Tensor &x, std::int64_t dim0, std::int64_t dim1) {
    return detail::op(x.graph(), bp_transpose, x.handle(), dim0, dim1);
}
/// Broadcasts to `shape` (torch.broadcast_to).
inline Tensor expand(const Tensor &x, const Shape &shape) {
    return detail::op(x.graph(), bp_expand, x.handle(), detail::dims_ptr(shape), shape.size());
}
/// Sums down to `shape` (the adjoint of expand).
inline Tensor sum_to(const Tensor &x, const Shape &shape) {
    return detail::op(x.graph(), bp_sum_to, x.handle(), detail::dims_ptr(shape), shape.size());
}
/// Joins tensors along `dim`.
inline Tensor concat(const std::vector<Tensor> &xs, std::int64_t dim) {
    std::vector<bp_tensor> handles;
    handles.reserve(xs.size());
    for (const Tensor &x : xs) handles.push_back(x.handle());
    bp_graph *graph = xs.empty() ? nullptr : xs.front().graph();
    return detail::op(graph, bp_concat, handles.empty() ? nullptr : handles.data(), handles.size(), dim);
}
/// x[..., start:end:step] along `dim` (Python's bounds rules).
inline Tensor slice(const Tensor &x, std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step = 1) {
    return detail::op(x.graph(), bp_slice, x.handle(), dim, start, end, step);
}
/// Zeros of `shape` with x written at start, start + step, … along `dim` (the adjoint of slice).
inline Tensor slice_scatter(const Tensor &x, const Shape &shape, std::int64_t dim, std::int64_t start, std::int64_t step = 1) {
    return detail::op(x.graph(), bp_slice_scatter, x.handle(), detail::dims_ptr(shape), shape.size(), dim, start, step);
}
/// The slices index[k] of x along `dim` (index: 1-D int64).
inline Tensor index_select(const Tensor &x, std::int64_t dim, const Tensor &index) {
    return detail::op(x.graph(), bp_index_select, x.handle(), dim, index.handle());
}
/// Zeros with `size` entries along `dim`, then out[index[k]] += x[k] (the adjoint of index_select).
inline Tensor index_add(const Tensor &x, std::int64_t dim, const Tensor &index, std::int64_t size) {
    return detail::op(x.graph(), bp_index_add, x.handle(), dim, index.handle(), size);
}
/// torch.gather.
inline Tensor gather(const Tensor &x, std::int64_t dim, const Tensor &index) {
    return detail::op(x.graph(), bp_gather, x.handle(), dim, index.handle());
}
/// Zeros of `shape`, then out[..index..] += x along `dim` (the adjoint of gather).
inline Tensor scatter_add(const Tensor &x, std::int64_t dim, const Tensor &index, const Shape &shape) {
    return detail::op(x.graph(), bp_scatter_add, x.handle(), dim, index.handle(), detail::dims_ptr(shape), shape.size());
}

// ---- linear algebra, layers, losses -------------------------------------------------------------

/// The matrix product, batched over leading dimensions.
inline Tensor matmul(const Tensor &a, const Tensor &b) { return detail::op(a.graph(), bp_matmul, a.handle(), b.handle()); }
/// op(a)·op(b), op transposing the last two dimensions when asked (no copy).
inline Tensor matmul_t(const Tensor &a, const Tensor &b, bool transpose_a, bool transpose_b) {
    return detail::op(a.graph(), bp_matmul_t, a.handle(), b.handle(), transpose_a, transpose_b);
}
/// x·Wᵀ (weight [out, in], PyTorch's layout).
inline Tensor linear(const Tensor &x, const Tensor &weight) {
    return detail::op(x.graph(), bp_linear, x.handle(), weight.handle(), static_cast<const bp_tensor *>(nullptr));
}
/// x·Wᵀ + b.
inline Tensor linear(const Tensor &x, const Tensor &weight, const Tensor &bias) {
    bp_tensor b = bias.handle();
    return detail::op(x.graph(), bp_linear, x.handle(), weight.handle(), static_cast<const bp_tensor *>(&b));
}
/// act(x·Wᵀ): a linear layer and its activation as one op (the values and gradients of linear
/// followed by relu, sigmoid or tanh, without the pre-activation tensor).
inline Tensor linear_act(const Tensor &x, const Tensor &weight, Activation activation) {
    return detail::op(x.graph(), bp_linear_act, x.handle(), weight.handle(), static_cast<const bp_tensor *>(nullptr),
                      static_cast<bp_activation>(activation));
}
/// act(x·Wᵀ + b).
inline Tensor linear_act(const Tensor &x, const Tensor &weight, const Tensor &bias, Activation activation) {
    bp_tensor b = bias.handle();
    return detail::op(x.graph(), bp_linear_act, x.handle(), weight.handle(), static_cast<const bp_tensor *>(&b),
                      static_cast<bp_activation>(activation));
}
/// Mean squared error.
inline Tensor mse_loss(const Tensor &a, const Tensor &b, Reduction reduction = Reduction::mean) {
    return detail::op(a.graph(), bp_mse_loss, a.handle(), b.handle(), static_cast<bp_reduction>(reduction));
}
/// Cross-entropy of logits [N, C] against int64 classes [N], mean over samples.
inline Tensor cross_entropy(const Tensor &logits, const Tensor &target) {
    return detail::op(logits.graph(), bp_cross_entropy, logits.handle(), target.handle());
}
/// Cross-entropy with PyTorch's options (ignore_index -100 is PyTorch's default).
inline Tensor cross_entropy(const Tensor &logits, const Tensor &target, Reduction reduction, double label_smoothing = 0.0,
                            std::int64_t ignore_index = -100) {
    return detail::op(logits.graph(), bp_cross_entropy_ex, logits.handle(), target.handle(), static_cast<bp_reduction>(reduction),
                      label_smoothing, ignore_index);
}
/// Binary cross-entropy of logits against probabilities, computed stably.
inline Tensor binary_cross_entropy_with_logits(const Tensor &x, const Tensor &target, Reduction reduction = Reduction::mean) {
    return detail::op(x.graph(), bp_binary_cross_entropy_with_logits, x.handle(), target.handle(), static_cast<bp_reduction>(reduction));
}
/// Dropout with probability p when training (x itself otherwise).
inline Tensor dropout(const Tensor &x, double p, bool training = true) {
    return detail::op(x.graph(), bp_dropout, x.handle(), p, training);
}

namespace autograd {
/// torch.autograd.grad: d(Σ outputs·grad_outputs)/d inputs, without touching any .grad.
/// `grad_outputs` may be empty when every output has one element; a null Tensor in it means "seed
/// with 1". With create_graph the results are differentiable.
inline std::vector<Tensor> grad(const std::vector<Tensor> &outputs, const std::vector<Tensor> &inputs,
                                const std::vector<Tensor> &grad_outputs = {}, bool retain_graph = false,
                                bool create_graph = false) {
    auto handles = [](const std::vector<Tensor> &ts) {
        std::vector<bp_tensor> hs;
        hs.reserve(ts.size());
        for (const Tensor &t : ts) hs.push_back(t.handle());
        return hs;
    };
    std::vector<bp_tensor> outs = handles(outputs), ins = handles(inputs), seeds = handles(grad_outputs);
    std::vector<bp_tensor> grads(inputs.size());
    bp_graph *graph = outputs.empty() ? nullptr : outputs.front().graph();
    detail::check(bp_grad_of(graph, outs.empty() ? nullptr : outs.data(), outs.size(), ins.empty() ? nullptr : ins.data(),
                             ins.size(), seeds.empty() ? nullptr : seeds.data(), seeds.size(), retain_graph, create_graph,
                             grads.empty() ? nullptr : grads.data(), grads.size()));
    std::vector<Tensor> result;
    result.reserve(grads.size());
    for (const bp_tensor &g : grads) result.emplace_back(graph, g);
    return result;
}
}  // namespace autograd

namespace debug {
/// Makes the library panic on purpose; always throws bp::Error with Status::internal. For testing
/// the handling of internal errors.
inline void trigger_panic() { detail::check(bp_debug_trigger_panic()); }
}  // namespace debug


// ---- the training toolkit: data, models, optimizers, schedules, checkpoints ---------------------

namespace detail {
/// A move-only owner of a C object released by `Free` (which accepts NULL). The base of Dataset,
/// Loader, Model, Optimizer and Schedule.
template <typename T, bp_status (*Free)(T *)>
class Owner {
  public:
    Owner(const Owner &) = delete;
    Owner &operator=(const Owner &) = delete;
    Owner(Owner &&other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
    Owner &operator=(Owner &&other) noexcept {
        if (this != &other) {
            Free(ptr_);
            ptr_ = std::exchange(other.ptr_, nullptr);
        }
        return *this;
    }
    /// Frees the object; the status is ignored because destructors must not throw.
    ~Owner() { Free(ptr_); }
    /// The C pointer (still owned); nullptr after a move.
    T *get() const noexcept { return ptr_; }
    /// Gives up ownership: the caller must free the result.
    T *release() noexcept { return std::exchange(ptr_, nullptr); }

  protected:
    Owner() noexcept = default;
    explicit Owner(T *adopt) noexcept : ptr_(adopt) {}
    T *ptr_ = nullptr;
};

inline const char *c_name(const std::string &name) noexcept { return name.empty() ? nullptr : name.c_str(); }
}  // namespace detail

/// Features and labels of a whole data set as tensors (or one batch of it).
struct Batch {
    Tensor x;  ///< features [rows, dim], float32
    Tensor y;  ///< labels [rows], int64
};

/// Column means and population standard deviations of a data set.
struct ColumnStats {
    std::vector<double> mean;  ///< one per feature
    std::vector<double> std;   ///< one per feature
};

/// A data set in memory: rows of float32 features with an int64 class label. Move-only.
class Dataset : public detail::Owner<bp_dataset, bp_dataset_free> {
  public:
    /// Copies `features` (row-major, rows × dim) and `labels` (one per row).
    Dataset(const std::vector<float> &features, const std::vector<std::int64_t> &labels, std::size_t dim) {
        detail::check(bp_dataset_new(features.data(), features.size(), labels.data(), labels.size(), dim, &ptr_));
    }
    /// Takes ownership of a data set made by the C API.
    explicit Dataset(bp_dataset *adopt) noexcept : Owner(adopt) {}
    /// Reads a numeric CSV file; the label column may be negative (-1 is the last). A malformed file
    /// throws Status::format, an unreadable one Status::io.
    static Dataset load_csv(const std::string &path, std::int64_t label_column = -1, bool has_header = false) {
        bp_dataset *d = nullptr;
        detail::check(bp_dataset_load_csv(path.c_str(), label_column, has_header, &d));
        return Dataset(d);
    }
    /// The number of rows.
    std::size_t rows() const {
        std::size_t n = 0;
        detail::check(bp_dataset_size(ptr_, &n, nullptr));
        return n;
    }
    /// The number of features per row.
    std::size_t dim() const {
        std::size_t d = 0;
        detail::check(bp_dataset_size(ptr_, nullptr, &d));
        return d;
    }
    /// The rows not listed (first) and the rows listed (second), each in the original order.
    std::pair<Dataset, Dataset> split(const std::vector<std::size_t> &test_rows) const {
        bp_dataset *train = nullptr, *test = nullptr;
        detail::check(bp_dataset_split(ptr_, test_rows.data(), test_rows.size(), &train, &test));
        return {Dataset(train), Dataset(test)};
    }
    /// Each column's mean and population standard deviation.
    ColumnStats column_stats() const {
        ColumnStats stats;
        const std::size_t d = dim();
        stats.mean.resize(d);
        stats.std.resize(d);
        detail::check(bp_dataset_column_stats(ptr_, stats.mean.data(), stats.std.data(), d));
        return stats;
    }
    /// (x − mean) / std per column, in place (use the training set's statistics for every split).
    void standardize(const ColumnStats &stats) {
        if (stats.mean.size() != stats.std.size()) {
            throw Error(Status::invalid_argument, "mean and std differ in length");
        }
        detail::check(bp_dataset_standardize(ptr_, stats.mean.data(), stats.std.data(), stats.mean.size()));
    }
    /// The whole data set as step-scoped tensors of `graph`.
    Batch to_tensors(Graph &graph) const {
        bp_tensor x, y;
        detail::check(bp_dataset_to_tensors(ptr_, graph.get(), &x, &y));
        return {Tensor(graph.get(), x), Tensor(graph.get(), y)};
    }
};

/// Mini-batches over a data set's rows, reshuffled every epoch as torch.randperm. Move-only.
class Loader : public detail::Owner<bp_loader, bp_loader_free> {
  public:
    /// Batches of `batch_size` over `rows` rows; the last partial batch is kept unless set_drop_last.
    Loader(std::size_t rows, std::size_t batch_size, bool shuffle = true, std::uint64_t seed = 0) {
        detail::check(bp_loader_new(rows, batch_size, shuffle, seed, &ptr_));
    }
    /// Drops (or keeps) the last batch of an epoch when it is short.
    void set_drop_last(bool drop_last) { detail::check(bp_loader_set_drop_last(ptr_, drop_last)); }
    /// Starts an epoch: a new order (when shuffling), from the first batch.
    void start_epoch() { detail::check(bp_loader_start_epoch(ptr_)); }
    /// The next batch as step-scoped tensors of `graph`, or nothing at the end of the epoch:
    /// `while (auto batch = loader.next_batch(g, data)) { ... batch->x ... }`.
    std::optional<Batch> next_batch(Graph &graph, const Dataset &data) {
        bp_tensor x, y;
        bool more = false;
        detail::check(bp_loader_next_batch(ptr_, graph.get(), data.get(), &x, &y, &more));
        if (!more) return std::nullopt;
        return Batch{Tensor(graph.get(), x), Tensor(graph.get(), y)};
    }
    /// The number of batches per epoch.
    std::size_t batches_per_epoch() const {
        std::size_t n = 0;
        detail::check(bp_loader_batches_per_epoch(ptr_, &n));
        return n;
    }
    /// Hands out only rank `rank`'s share of every epoch out of `world_size` (DistributedSampler's rule;
    /// docs/DISTRIBUTED.md). Every rank must use the same rows, batch size and seed.
    void shard(int rank, int world_size) { detail::check(bp_loader_shard(ptr_, rank, world_size)); }
    /// The number of epochs started so far (restored by load_checkpoint).
    std::uint64_t epoch() const {
        std::uint64_t n = 0;
        detail::check(bp_loader_epoch(ptr_, &n));
        return n;
    }
};

/// A layer without parameters (`BP_LAYER_*`).
enum class Layer : std::int32_t {
    relu = BP_LAYER_RELU,
    leaky_relu = BP_LAYER_LEAKY_RELU,  ///< param: the negative slope
    sigmoid = BP_LAYER_SIGMOID,
    tanh = BP_LAYER_TANH,
    gelu = BP_LAYER_GELU,
    dropout = BP_LAYER_DROPOUT,  ///< param: the probability of zeroing an element
    flatten = BP_LAYER_FLATTEN,
};

/// A model: layers applied in order (nn.Sequential). Its parameters are persistent tensors of the
/// graph given to the add_* calls, which must outlive the model's use. Move-only.
class Model : public detail::Owner<bp_model, bp_model_free> {
  public:
    /// An empty model in training mode.
    Model() { detail::check(bp_model_new(&ptr_)); }
    /// Appends nn.Linear(in, out, bias), initialised as PyTorch does from the graph's generator.
    /// An empty name names the layer by its position ("0.weight").
    Model &add_linear(Graph &graph, std::size_t in_features, std::size_t out_features, bool bias = true,
                      const std::string &name = "") {
        detail::check(bp_model_add_linear(ptr_, graph.get(), detail::c_name(name), in_features, out_features, bias));
        graph_ = graph.get();
        return *this;
    }
    /// Appends nn.Embedding(num_embeddings, embedding_dim).
    Model &add_embedding(Graph &graph, std::size_t num_embeddings, std::size_t embedding_dim, const std::string &name = "") {
        detail::check(bp_model_add_embedding(ptr_, graph.get(), detail::c_name(name), num_embeddings, embedding_dim));
        graph_ = graph.get();
        return *this;
    }
    /// Appends nn.LayerNorm(normalized_shape, eps, elementwise_affine).
    Model &add_layer_norm(Graph &graph, const Shape &normalized_shape, double eps = 1e-5, bool affine = true,
                          const std::string &name = "") {
        detail::check(bp_model_add_layer_norm(ptr_, graph.get(), detail::c_name(name), detail::dims_ptr(normalized_shape),
                                              normalized_shape.size(), eps, affine));
        graph_ = graph.get();
        return *this;
    }
    /// Appends a layer without parameters (param: leaky ReLU's slope or dropout's probability).
    Model &add(Layer kind, double param = 0.0, const std::string &name = "") {
        detail::check(bp_model_add_layer(ptr_, detail::c_name(name), static_cast<bp_layer>(kind), param));
        return *this;
    }
    /// Training mode on or off (model.train() / model.eval()).
    void train(bool training = true) { detail::check(bp_model_set_training(ptr_, training)); }
    /// Training mode off.
    void eval() { train(false); }
    /// Whether the model is in training mode.
    bool is_training() const {
        bool t = false;
        detail::check(bp_model_is_training(ptr_, &t));
        return t;
    }
    /// The forward pass in the current mode, recorded for autograd (in x's graph).
    Tensor forward(const Tensor &x) const {
        bp_tensor out;
        detail::check(bp_model_forward(ptr_, x.graph(), x.handle(), &out));
        return Tensor(x.graph(), out);
    }
    /// The forward pass: model(x).
    Tensor operator()(const Tensor &x) const { return forward(x); }
    /// Inference: eval mode, nothing recorded.
    Tensor predict(const Tensor &x) const {
        bp_tensor out;
        detail::check(bp_model_predict(ptr_, x.graph(), x.handle(), &out));
        return Tensor(x.graph(), out);
    }
    /// The parameters in PyTorch's parameters() order.
    std::vector<Tensor> parameters() const {
        std::size_t n = 0;
        detail::check(bp_model_parameters(ptr_, nullptr, 0, &n));
        std::vector<bp_tensor> hs(n);
        detail::check(bp_model_parameters(ptr_, hs.data(), hs.size(), &n));
        std::vector<Tensor> params;
        params.reserve(n);
        for (const bp_tensor &h : hs) params.emplace_back(graph_, h);
        return params;
    }
    /// The state_dict name of parameter `index` ("0.weight").
    std::string parameter_name(std::size_t index) const {
        std::size_t size = 0;
        detail::check(bp_model_parameter_name(ptr_, index, nullptr, 0, &size));
        std::string name(size, '\0');
        detail::check(bp_model_parameter_name(ptr_, index, &name[0], name.size(), &size));
        name.resize(size - 1);
        return name;
    }
    /// Every parameter's state_dict name, in parameters() order.
    std::vector<std::string> parameter_names() const {
        std::size_t n = 0;
        detail::check(bp_model_parameters(ptr_, nullptr, 0, &n));
        std::vector<std::string> names;
        for (std::size_t i = 0; i < n; i++) names.push_back(parameter_name(i));
        return names;
    }
    /// Drops every parameter's gradient.
    void zero_grad() { detail::check(bp_model_zero_grad(ptr_, graph_)); }
    /// The graph holding the parameters (the last one given to an add_* call).
    bp_graph *graph() const noexcept { return graph_; }

  private:
    bp_graph *graph_ = nullptr;
};

/// torch.optim.SGD's options.
struct SgdOptions {
    double momentum = 0.0;
    double dampening = 0.0;
    double weight_decay = 0.0;
    bool nesterov = false;
};

/// torch.optim.Adam's and AdamW's options (AdamW's weight_decay default is 1e-2; see Optimizer::adamw).
struct AdamOptions {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    bool amsgrad = false;
};

/// torch.optim.RMSprop's options.
struct RmspropOptions {
    double alpha = 0.99;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double momentum = 0.0;
    bool centered = false;
};

/// An optimizer over a model's parameters. Move-only; its graph must outlive its use.
class Optimizer : public detail::Owner<bp_optimizer, bp_optimizer_free> {
  public:
    /// torch.optim.SGD(model.parameters(), lr, ...).
    static Optimizer sgd(Graph &graph, Model &model, double lr, const SgdOptions &o = {}) {
        bp_optimizer *opt = nullptr;
        detail::check(bp_optimizer_new_sgd(graph.get(), model.get(), lr, o.momentum, o.dampening, o.weight_decay, o.nesterov, &opt));
        return Optimizer(opt, graph.get());
    }
    /// torch.optim.Adam(model.parameters(), lr, ...).
    static Optimizer adam(Graph &graph, Model &model, double lr = 1e-3, const AdamOptions &o = {}) {
        bp_optimizer *opt = nullptr;
        detail::check(bp_optimizer_new_adam(graph.get(), model.get(), lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad, &opt));
        return Optimizer(opt, graph.get());
    }
    /// torch.optim.AdamW(model.parameters(), lr, ...), decoupled weight decay (PyTorch's default 1e-2).
    static Optimizer adamw(Graph &graph, Model &model, double lr = 1e-3, double weight_decay = 1e-2, AdamOptions o = {}) {
        o.weight_decay = weight_decay;
        bp_optimizer *opt = nullptr;
        detail::check(bp_optimizer_new_adamw(graph.get(), model.get(), lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad, &opt));
        return Optimizer(opt, graph.get());
    }
    /// torch.optim.RMSprop(model.parameters(), lr, ...).
    static Optimizer rmsprop(Graph &graph, Model &model, double lr = 1e-2, const RmspropOptions &o = {}) {
        bp_optimizer *opt = nullptr;
        detail::check(bp_optimizer_new_rmsprop(graph.get(), model.get(), lr, o.alpha, o.eps, o.weight_decay, o.momentum, o.centered, &opt));
        return Optimizer(opt, graph.get());
    }
    /// One update of every parameter that has a gradient.
    void step() { detail::check(bp_optimizer_step(ptr_, graph_)); }
    /// Drops every parameter's gradient.
    void zero_grad() { detail::check(bp_optimizer_zero_grad(ptr_, graph_)); }
    /// The current learning rate.
    double lr() const {
        double lr = 0.0;
        detail::check(bp_optimizer_lr(ptr_, &lr));
        return lr;
    }
    /// Sets the learning rate.
    void set_lr(double lr) { detail::check(bp_optimizer_set_lr(ptr_, lr)); }

  private:
    Optimizer(bp_optimizer *opt, bp_graph *graph) noexcept : Owner(opt), graph_(graph) {}
    bp_graph *graph_;
};

/// One whole training step with cross-entropy, compiled: opt.zero_grad(), the forward, the loss,
/// backward and opt.step() in one call, without recording a graph; returns the loss. Bit-identical
/// to the same step built from forward, cross_entropy, backward and step. Takes float32 models of
/// Linear, activation (ReLU, leaky ReLU, sigmoid, tanh, GELU) and flatten layers; throws bp::Error
/// (BP_ERR_UNSUPPORTED) for others.
inline double train_step(Model &model, Optimizer &opt, const Tensor &x, const Tensor &target, Reduction reduction = Reduction::mean,
                         double label_smoothing = 0.0, std::int64_t ignore_index = -100) {
    double loss = 0.0;
    detail::check(bp_model_train_step_cross_entropy(model.get(), x.graph(), opt.get(), x.handle(), target.handle(),
                                                    static_cast<bp_reduction>(reduction), label_smoothing, ignore_index, &loss));
    return loss;
}

/// train_step with the mean squared error against float32 targets of the model output's shape.
inline double train_step_mse(Model &model, Optimizer &opt, const Tensor &x, const Tensor &target, Reduction reduction = Reduction::mean) {
    double loss = 0.0;
    detail::check(bp_model_train_step_mse(model.get(), x.graph(), opt.get(), x.handle(), target.handle(), static_cast<bp_reduction>(reduction), &loss));
    return loss;
}

/// A learning-rate schedule attached to an optimizer (which must outlive it). Move-only.
class Schedule : public detail::Owner<bp_schedule, bp_schedule_free> {
  public:
    /// StepLR: lr ·= gamma every step_size steps.
    static Schedule step_lr(Optimizer &opt, std::uint64_t step_size, double gamma = 0.1) {
        bp_schedule *s = nullptr;
        detail::check(bp_schedule_new_step(opt.get(), step_size, gamma, &s));
        return Schedule(s, opt.get());
    }
    /// ExponentialLR: lr ·= gamma every step.
    static Schedule exponential_lr(Optimizer &opt, double gamma) {
        bp_schedule *s = nullptr;
        detail::check(bp_schedule_new_exponential(opt.get(), gamma, &s));
        return Schedule(s, opt.get());
    }
    /// CosineAnnealingLR(t_max, eta_min).
    static Schedule cosine_annealing_lr(Optimizer &opt, std::uint64_t t_max, double eta_min = 0.0) {
        bp_schedule *s = nullptr;
        detail::check(bp_schedule_new_cosine(opt.get(), t_max, eta_min, &s));
        return Schedule(s, opt.get());
    }
    /// LinearLR(start_factor, end_factor, total_iters), the usual warm-up.
    static Schedule linear_lr(Optimizer &opt, double start_factor, double end_factor = 1.0, std::uint64_t total_iters = 5) {
        bp_schedule *s = nullptr;
        detail::check(bp_schedule_new_linear(opt.get(), start_factor, end_factor, total_iters, &s));
        return Schedule(s, opt.get());
    }
    /// Advances one step and sets the optimizer's learning rate.
    void step() { detail::check(bp_schedule_step(ptr_, optimizer_)); }

  private:
    Schedule(bp_schedule *s, bp_optimizer *opt) noexcept : Owner(s), optimizer_(opt) {}
    bp_optimizer *optimizer_;
};

/// Negative log-likelihood of log-probabilities [N, C] against int64 classes [N] (F.nll_loss).
inline Tensor nll_loss(const Tensor &log_probs, const Tensor &target, Reduction reduction = Reduction::mean,
                       std::int64_t ignore_index = -100) {
    return detail::op(log_probs.graph(), bp_nll_loss, log_probs.handle(), target.handle(), static_cast<bp_reduction>(reduction),
                      ignore_index);
}
/// Mean absolute error (F.l1_loss).
inline Tensor l1_loss(const Tensor &input, const Tensor &target, Reduction reduction = Reduction::mean) {
    return detail::op(input.graph(), bp_l1_loss, input.handle(), target.handle(), static_cast<bp_reduction>(reduction));
}
/// Smooth L1 (F.smooth_l1_loss).
inline Tensor smooth_l1_loss(const Tensor &input, const Tensor &target, Reduction reduction = Reduction::mean, double beta = 1.0) {
    return detail::op(input.graph(), bp_smooth_l1_loss, input.handle(), target.handle(), static_cast<bp_reduction>(reduction), beta);
}
/// The fraction of rows of logits [N, C] whose largest entry is at the target class.
inline double accuracy(const Tensor &logits, const Tensor &target) {
    double acc = 0.0;
    detail::check(bp_accuracy(logits.graph(), logits.handle(), target.handle(), &acc));
    return acc;
}

namespace detail {
inline std::vector<bp_tensor> handles_of(const std::vector<Tensor> &ts) {
    std::vector<bp_tensor> hs;
    hs.reserve(ts.size());
    for (const Tensor &t : ts) hs.push_back(t.handle());
    return hs;
}
}  // namespace detail

/// Scales the gradients of `params` so that their joint norm is at most max_norm
/// (clip_grad_norm_); returns the norm before clipping.
inline double clip_grad_norm(const std::vector<Tensor> &params, double max_norm, double norm_type = 2.0) {
    std::vector<bp_tensor> hs = detail::handles_of(params);
    double total = 0.0;
    bp_graph *graph = params.empty() ? nullptr : params.front().graph();
    detail::check(bp_clip_grad_norm(graph, hs.empty() ? nullptr : hs.data(), hs.size(), max_norm, norm_type, &total));
    return total;
}
/// Clamps every gradient element of `params` to [-clip, clip] (clip_grad_value_).
inline void clip_grad_value(const std::vector<Tensor> &params, double clip) {
    std::vector<bp_tensor> hs = detail::handles_of(params);
    bp_graph *graph = params.empty() ? nullptr : params.front().graph();
    detail::check(bp_clip_grad_value(graph, hs.empty() ? nullptr : hs.data(), hs.size(), clip));
}

/// A non-linearity for initialisation gains (`BP_NONLINEARITY_*`).
enum class Nonlinearity : std::int32_t {
    linear = BP_NONLINEARITY_LINEAR,
    sigmoid = BP_NONLINEARITY_SIGMOID,
    tanh = BP_NONLINEARITY_TANH,
    relu = BP_NONLINEARITY_RELU,
    leaky_relu = BP_NONLINEARITY_LEAKY_RELU,
};

/// nn.init: overwrite a tensor in place from its graph's generator.
namespace init {
/// nn.init.uniform_.
inline void uniform(const Tensor &t, double low = 0.0, double high = 1.0) {
    detail::check(bp_init_uniform(t.graph(), t.handle(), low, high));
}
/// nn.init.normal_.
inline void normal(const Tensor &t, double mean = 0.0, double std = 1.0) {
    detail::check(bp_init_normal(t.graph(), t.handle(), mean, std));
}
/// nn.init.xavier_uniform_ (or xavier_normal_ when `normal`).
inline void xavier(const Tensor &t, double gain = 1.0, bool normal = false) {
    detail::check(bp_init_xavier(t.graph(), t.handle(), gain, normal));
}
/// nn.init.kaiming_uniform_ (or kaiming_normal_ when `normal`); fan_out selects mode="fan_out".
inline void kaiming(const Tensor &t, Nonlinearity nonlinearity = Nonlinearity::leaky_relu, double slope = 0.0,
                    bool fan_out = false, bool normal = false) {
    detail::check(bp_init_kaiming(t.graph(), t.handle(), static_cast<bp_nonlinearity>(nonlinearity), slope, fan_out, normal));
}
}  // namespace init

/// The parts of a training run a checkpoint saves besides the model and the generator; each may be
/// null.
struct TrainingParts {
    Optimizer *optimizer = nullptr;
    Schedule *schedule = nullptr;
    Loader *loader = nullptr;
};

/// Saves model, generator and the given parts to `path` atomically (Status::io when it cannot).
inline void save_checkpoint(const std::string &path, Graph &graph, Model &model, const TrainingParts &parts = {}) {
    detail::check(bp_checkpoint_save(path.c_str(), graph.get(), model.get(), parts.optimizer ? parts.optimizer->get() : nullptr,
                                     parts.schedule ? parts.schedule->get() : nullptr, parts.loader ? parts.loader->get() : nullptr));
}
/// Restores a checkpoint; a corrupt or mismatched file throws Status::format and changes nothing.
inline void load_checkpoint(const std::string &path, Graph &graph, Model &model, const TrainingParts &parts = {}) {
    detail::check(bp_checkpoint_load(path.c_str(), graph.get(), model.get(), parts.optimizer ? parts.optimizer->get() : nullptr,
                                     parts.schedule ? parts.schedule->get() : nullptr, parts.loader ? parts.loader->get() : nullptr));
}
/// Saves the parameters only, by state_dict name (what PyTorch's load_state_dict takes).
inline void save_weights(const std::string &path, Graph &graph, Model &model) {
    detail::check(bp_weights_save(path.c_str(), graph.get(), model.get()));
}
/// Loads parameters by state_dict name (strict); on any error nothing changes.
inline void load_weights(const std::string &path, Graph &graph, Model &model) {
    detail::check(bp_weights_load(path.c_str(), graph.get(), model.get()));
}

/// Data-parallel training of one model on one rank (docs/DISTRIBUTED.md): flattens the parameters,
/// broadcasts rank 0's values through `collective` at construction, and after each backward makes one
/// all-reduce of the flat gradients and divides by the world size. The collective is the C struct
/// (two callbacks and a user pointer, e.g. examples/mpi's bp_mpi_collective()); it is copied, and its
/// user pointer must outlive this object, as must the graph. A failed callback throws
/// Status::collective. Move-only.
class DataParallel : public detail::Owner<bp_data_parallel, bp_data_parallel_free> {
  public:
    DataParallel(Graph &graph, const std::vector<Tensor> &params, const bp_collective &collective) : graph_(graph.get()) {
        std::vector<bp_tensor> hs;
        hs.reserve(params.size());
        for (const Tensor &t : params) hs.push_back(t.handle());
        detail::check(bp_data_parallel_new(graph_, hs.data(), hs.size(), &collective, &ptr_));
    }
    /// Backward from `loss`, then the all-reduce and averaging of the gradients.
    void backward(const Tensor &loss) { detail::check(bp_data_parallel_backward(graph_, ptr_, loss.handle())); }
    /// The all-reduce and averaging alone (after a backward of your own).
    void average_gradients() { detail::check(bp_data_parallel_average_gradients(graph_, ptr_)); }
    /// Broadcasts the parameters from rank 0 again.
    void sync_parameters() { detail::check(bp_data_parallel_sync_parameters(graph_, ptr_)); }
    /// A view of a flat buffer: valid until the next call that may change the graph.
    struct Span {
        float *data;        ///< the first element
        std::size_t size;   ///< the number of elements
        float *begin() const noexcept { return data; }
        float *end() const noexcept { return data + size; }
    };
    /// The flat parameters (writing counts as an in-place write to every parameter).
    Span parameters() {
        Span s{nullptr, 0};
        detail::check(bp_data_parallel_parameters(graph_, ptr_, &s.data, &s.size));
        return s;
    }
    /// The flat gradients, laid out as parameters().
    Span gradients() {
        Span s{nullptr, 0};
        detail::check(bp_data_parallel_gradients(graph_, ptr_, &s.data, &s.size));
        return s;
    }
    /// Calls, bytes and seconds spent in collectives so far.
    bp_comm_stats stats() const {
        bp_comm_stats st{};
        detail::check(bp_data_parallel_stats(ptr_, &st));
        return st;
    }

  private:
    bp_graph *graph_;
};

}  // namespace bp

#endif  // BP_HPP
