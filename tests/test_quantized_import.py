"""Dynamically quantized models (ONNX Runtime's and PyTorch's quantize_dynamic) imported as
int8 networks with the same int8 weights and scales."""

import warnings

import numpy as np
import pytest

from nnexposed import Network

torch = pytest.importorskip("torch")


def relative_error(actual, expected):
    return np.abs(actual - expected).max() / np.abs(expected).max()


def torch_model(seed=0, sizes=(20, 30, 16, 5)):
    torch.manual_seed(seed)
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def quantized_torch(model, per_channel=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # torch.ao's notice of its move to torchao
        qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if per_channel
                   else torch.ao.quantization.default_dynamic_qconfig)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig},
                                                      dtype=torch.qint8)


@pytest.mark.parametrize("per_channel", [False, True])
def test_from_torch_keeps_the_int8_weights(rng, per_channel):
    quantized = quantized_torch(torch_model(), per_channel)
    network = Network.from_torch(quantized)
    assert network.precision == "int8" and network.sizes == (20, 30, 16, 5)
    linears = [m for m in quantized.modules()
               if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    for layer, source in zip(network.layers, linears):
        weight = source.weight()
        np.testing.assert_array_equal(layer.weights, weight.int_repr().numpy())
        scales = (weight.q_per_channel_scales().numpy() if per_channel
                  else np.full(layer.n_out, weight.q_scale()))
        np.testing.assert_array_equal(layer.scales, scales.astype(np.float32))
        np.testing.assert_array_equal(layer.biases, source.bias().detach().numpy())
    assert [layer.activation for layer in network.layers] == ["relu", "relu", "linear"]
    x = rng.standard_normal((64, 20)).astype(np.float32)
    with torch.inference_mode():
        expected = quantized(torch.from_numpy(x)).numpy()
        exact = torch_model()(torch.from_numpy(x)).numpy()
    # Both quantize their inputs per call (torch per batch, 7 bits; nnexposed per sample):
    # the results differ by about their own errors against float32.
    assert relative_error(network(x), expected) < 0.05
    assert relative_error(network(x), exact) < 0.03


def test_from_torch_unquantized_layers_are_quantized_per_neuron():
    model = torch_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model[2] = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(model[2]), {torch.nn.Linear}, dtype=torch.qint8)[0]
    network = Network.from_torch(model)
    assert network.precision == "int8"
    np.testing.assert_array_equal(network.layers[1].weights, model[2].weight().int_repr())
    expected = Network.from_torch(torch_model()).layers[0].quantize("int8")
    np.testing.assert_array_equal(network.layers[0].weights, expected.weights)


def test_from_torch_float_models_are_unchanged():
    assert Network.from_torch(torch_model()).precision == "float32"


onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def ort_quantized(tmp_path, matmul, per_channel):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = torch_model()
    plain, quantized = tmp_path / "model.onnx", tmp_path / "int8.onnx"
    onnx.save(onnx_of(model, matmul), plain)
    quantize_dynamic(str(plain), str(quantized), weight_type=QuantType.QInt8,
                     per_channel=per_channel)
    return onnx.load(quantized), model


def onnx_of(model, matmul):
    """The torch model as an ONNX graph of MatMul+Add (or Gemm) and Relu nodes."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers, name = [], [], "x"
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    for k, linear in enumerate(linears):
        weights = linear.weight.detach().numpy()
        initializers += [numpy_helper.from_array(weights.T.copy() if matmul else weights,
                                                 f"W{k}"),
                         numpy_helper.from_array(linear.bias.detach().numpy(), f"b{k}")]
        if matmul:
            nodes += [helper.make_node("MatMul", [name, f"W{k}"], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", f"b{k}"], [f"z{k}"])]
        else:
            nodes.append(helper.make_node("Gemm", [name, f"W{k}", f"b{k}"], [f"z{k}"],
                                          transB=1))
        name = f"z{k}"
        if k < len(linears) - 1:
            nodes.append(helper.make_node("Relu", [name], [f"a{k}"]))
            name = f"a{k}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        initializer=initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


@pytest.mark.parametrize("matmul, per_channel", [(True, False), (False, True), (True, True)])
def test_from_onnx_keeps_the_int8_weights(tmp_path, rng, matmul, per_channel):
    from onnx import numpy_helper

    proto, model = ort_quantized(tmp_path, matmul, per_channel)
    assert any(node.op_type == "MatMulInteger" for node in proto.graph.node)
    for source in (proto, proto.SerializeToString(), str(tmp_path / "int8.onnx")):
        network = Network.from_onnx(source)
        assert network.precision == "int8" and network.sizes == (20, 30, 16, 5)
    initializers = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    int8 = [initializers[node.input[1]] for node in proto.graph.node
            if node.op_type == "MatMulInteger"]
    for layer, q in zip(network.layers, int8):
        np.testing.assert_array_equal(layer.weights, q.T)
    x = rng.standard_normal((64, 20)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    with torch.inference_mode():
        exact = model(torch.from_numpy(x)).numpy()
    assert relative_error(network(x), expected) < 0.05
    assert relative_error(network(x), exact) < 0.03


def test_from_onnx_asymmetric_weights_are_refused(tmp_path):
    from onnx import numpy_helper

    proto, _ = ort_quantized(tmp_path, True, False)
    for k, tensor in enumerate(proto.graph.initializer):
        if tensor.name.endswith("zero_point") and tensor.data_type == onnx.TensorProto.INT8:
            proto.graph.initializer[k].CopyFrom(
                numpy_helper.from_array(np.array(3, np.int8), tensor.name))
    with pytest.raises(ValueError, match="zero point other than 0"):
        Network.from_onnx(proto)
