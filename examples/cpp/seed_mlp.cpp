// The seed document's example in C++: a 20 -> 13 (ReLU) -> 8 (sigmoid) -> 3 network trained with
// cross-entropy on random data, exactly as the PyTorch original:
//
//   torch.manual_seed(212)
//   X = torch.rand((500, 20)) * 100
//   y = torch.randint(0, 3, (500,))
//   model = Sequential(Linear(20, 13, bias=False), ReLU(), Linear(13, 8, bias=False), Sigmoid(), Linear(8, 3))
//   loss = CrossEntropyLoss()(model(X), y); loss.backward(); print(model[0].weight.grad)
//
// followed by 100 plain SGD steps (lr 0.01) that print the loss every 10 steps. Exits with 1 when the
// loss did not fall. Build: c++ -std=c++17 seed_mlp.cpp -I bindings/cpp/include $(pkg-config --cflags --libs bp)
#include <bp.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

// PyTorch's default Linear weight init, kaiming_uniform_(a = sqrt(5)): U(-bound, bound).
double kaiming_bound(int fan_in) {
    const double a = std::sqrt(5.0);
    const double gain = std::sqrt(2.0 / (1.0 + a * a));
    return std::sqrt(3.0) * (gain / std::sqrt(static_cast<double>(fan_in)));
}

// A parameter: uniform on [-bound, bound), kept across Graph::reset(), requiring grad.
bp::Tensor parameter(bp::Graph &g, const bp::Shape &shape, double bound) {
    return g.rand(shape, -bound, bound).set_persistent().set_requires_grad();
}

struct Mlp {
    bp::Tensor w1, w2, w3, b3;

    bp::Tensor forward(const bp::Tensor &x) const {
        bp::Tensor h1 = bp::relu(bp::linear(x, w1));
        bp::Tensor h2 = bp::sigmoid(bp::linear(h1, w2));
        return bp::linear(h2, w3, b3);
    }
    std::vector<bp::Tensor> parameters() const { return {w1, w2, w3, b3}; }
};

int run() {
    std::printf("backprop %s (header %s)\n", bp::version_string(), BP_VERSION_STRING);
    bp::Graph g;
    g.manual_seed(212);
    const bp::Tensor x = (g.rand({500, 20}) * 100.0).set_persistent();
    const bp::Tensor y = g.randint(0, 3, {500}).set_persistent();
    Mlp model;
    model.w1 = parameter(g, {13, 20}, kaiming_bound(20));
    model.w2 = parameter(g, {8, 13}, kaiming_bound(13));
    model.w3 = parameter(g, {3, 8}, kaiming_bound(8));
    model.b3 = parameter(g, {3}, 1.0 / std::sqrt(8.0));

    // The seed example: one forward and backward, then the first layer's weight gradient.
    bp::Tensor loss = bp::cross_entropy(model.forward(x), y);
    const double first_loss = loss.item();
    loss.backward();
    const std::vector<float> grad_w1 = model.w1.grad().to_vector<float>();
    std::printf("loss %.7f\nW1.grad [13, 20]:\n", first_loss);
    for (int r = 0; r < 13; r++) {
        for (int c = 0; c < 20; c++) std::printf("%s%11.4e", c ? " " : "  ", grad_w1[r * 20 + c]);
        std::printf("\n");
    }

    // 100 SGD steps, as torch's `with torch.no_grad(): p -= lr * p.grad`.
    const double lr = 0.01;
    double loss_value = first_loss;
    for (int step = 0; step < 100; step++) {
        for (const bp::Tensor &p : model.parameters()) p.zero_grad();
        g.reset();  // drops the last step's intermediates; parameters and data stay
        loss = bp::cross_entropy(model.forward(x), y);
        loss_value = loss.item();
        if (step % 10 == 0) std::printf("step %3d  loss %.7f\n", step, loss_value);
        loss.backward();
        bp::NoGradGuard no_grad(g);
        for (bp::Tensor p : model.parameters()) p -= lr * p.grad();
    }
    g.reset();
    loss_value = bp::cross_entropy(model.forward(x), y).item();
    std::printf("after 100 steps  loss %.7f\n", loss_value);
    if (!(loss_value < first_loss)) {
        std::fprintf(stderr, "the loss did not fall: %.7f -> %.7f\n", first_loss, loss_value);
        return 1;
    }
    std::printf("the loss fell: %.7f -> %.7f\n", first_loss, loss_value);
    return 0;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const bp::Error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
