#!/usr/bin/env python3
"""Writes the ONNX models the importer's tests read (tests/Core.Tests/OnnxModels), with PyTorch's exporter.

Run with Debian's packages (apt-get install -y python3-torchvision python3-onnx):
    /usr/bin/python3 scripts/export-onnx-test-models.py tests/Core.Tests/OnnxModels
    /usr/bin/python3 scripts/export-onnx-test-models.py DIR --keep-weights   # DIR/resnet18.onnx with its (random) weights, 45 MB: samples/FineTune

Nothing is downloaded: torchvision's architectures are made with random weights (weights=None).
  resnet18.onnx      torchvision ResNet-18, opset 11
  mobilenet_v2.onnx  torchvision MobileNetV2 (depthwise convolutions), ReLU6 replaced by ReLU, opset 13
  opszoo.onnx        a small net using the other supported ops (ConvTranspose, Concat, MatMul + Add, ...), opset 17, weights kept
The two torchvision models keep their structure but not their weights (the float initializers' data is removed,
their shapes kept): a full ResNet-18 is 46 MB. The tests fill them with seeded random values before use.
Batch norm is kept as BatchNormalization nodes (TrainingMode.PRESERVE on a model in eval mode), as it is for
fine-tuning; the batch and the spatial sizes are dynamic.
"""
import sys
import torch
import torch.nn as nn
import torchvision
import onnx


class OpsZoo(nn.Module):
    """The supported ops the torchvision models do not use, on [N, 3, 16, 16] inputs (LRN is not among them:
    PyTorch 1.13 exports LocalResponseNorm as a dozen other ops; the tests import LRN from our own export).
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.LeakyReLU(0.1)
        self.a = nn.Conv2d(8, 4, 1)
        self.b = nn.Conv2d(8, 4, 3, padding=2, dilation=2, groups=2, bias=False)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.w = nn.Parameter(torch.randn(6 * 8 * 8, 20) * 0.05)
        self.bias = nn.Parameter(torch.randn(20) * 0.1)
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = torch.cat([torch.nn.functional.elu(self.a(x)), torch.tanh(self.b(x))], dim=1)
        x = self.pool(x)
        x = torch.sigmoid(self.up(x))
        x = self.avg(x)
        x = x.reshape(-1, 6 * 8 * 8)
        x = torch.matmul(x, self.w) + self.bias
        return torch.softmax(self.fc(torch.relu(x)), dim=1)


def relu6_to_relu(module):
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, nn.ReLU(inplace=True))
        else:
            relu6_to_relu(child)
    return module


def export(model, path, opset, size, strip, seed):
    torch.manual_seed(seed)
    model.eval()
    x = torch.randn(2, 3, size, size)
    dynamic_size = strip or size > 32  # the torchvision models take any image size from 32 up
    axes = {"input": {0: "N", 2: "H", 3: "W"}, "output": {0: "N"}} if dynamic_size else {"input": {0: "N"}, "output": {0: "N"}}
    torch.onnx.export(model, x, path, opset_version=opset, training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["input"], output_names=["output"], dynamic_axes=axes)
    m = onnx.load(path)
    if strip:
        for t in m.graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT:
                t.ClearField("raw_data")
                t.ClearField("float_data")
    onnx.save(m, path)
    print(path, sorted({n.op_type for n in m.graph.node}), len(m.graph.node), "nodes")


def main(out, keep_weights):
    torch.manual_seed(0)
    if keep_weights:
        export(torchvision.models.resnet18(weights=None), f"{out}/resnet18.onnx", 11, 64, False, 1)
        return
    export(torchvision.models.resnet18(weights=None), f"{out}/resnet18.onnx", 11, 64, True, 1)
    export(relu6_to_relu(torchvision.models.mobilenet_v2(weights=None)), f"{out}/mobilenet_v2.onnx", 13, 64, True, 2)
    zoo = OpsZoo()
    with torch.no_grad():  # running statistics that are not the identity
        zoo.bn.running_mean.uniform_(-0.2, 0.2)
        zoo.bn.running_var.uniform_(0.5, 1.5)
    export(zoo, f"{out}/opszoo.onnx", 17, 16, False, 3)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".", "--keep-weights" in sys.argv[2:])
