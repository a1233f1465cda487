"""PyTorch peer for the larger presets: our "vgg" and "resnet" (src/Core/Layers/Presets.cs, Residual.cs) rebuilt in
PyTorch and trained on Fashion-MNIST, printing the RESULT keys MLNet.ConvNet.GpuRun prints (benchmarks/Gpu/Program.cs):

    RESULT gpu.<net>.batch<B>.gflop_per_img = X             training GFLOP per image (convention below)
    RESULT gpu.<net>.batch<B>.epoch<E>.train_img_per_s = X  every epoch
    RESULT gpu.<net>.batch<B>.epoch<E>.train_tflops = X     img/s x gflop_per_img / 1000, every epoch
    RESULT gpu.<net>.batch<B>.epoch<E>.test_acc_pct = X     after the last epoch
    RESULT gpu.<net>.batch<B>.epoch<E>.infer10k_s = X       after the last epoch (second, warm pass)

"cpu." instead of "gpu." with --cpu. The shared PyTorch peer (shared/bench/pytorch-gpu-fashion) has only lenet5 and
cnn2bn; this script is ours, written from our presets' definitions.

    python3 benchmarks/Gpu/presets_peer.py --data DIR [--nets vgg,resnet] [--epochs 2] [--batch 128] [--seed 42]
                                           [--compile] [--fp32] [--cpu] [--limit N]

As the shared peer does: the whole training set sits on the device, each epoch draws a random permutation and gathers
its batches there, Adam with learning rate 1e-3, cudnn.benchmark on, torch.cuda.synchronize() at both ends of the
timed epoch. Pixels are (p / 255 - 0.2860) / 0.3530, as our loader (src/Core/Data/FashionMnist.cs) makes them.
Weights start as ours do: He normal (std sqrt(2 / fan-in)) for convolution and dense weights, zero biases, batch-norm
scale 1 and shift 0. Precision is PyTorch's default (cuDNN may use TF32 for convolutions) unless --fp32 turns TF32
off, which is what our backend does unless its --tf32 is given.
"""
import argparse, gzip, os, struct, sys, time

import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = 0.2860, 0.3530  # the training pixels' mean and standard deviation, scaled to [0, 1]


# ---- data ----

def read_idx(data_dir, name, limit=0):
    """The values of the IDX file `name` (raw, or `name`.gz) as a uint8 tensor of its shape; the first `limit` items only when > 0."""
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
        with open(path, "rb") as f:
            blob = f.read()
    elif os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz", "rb") as f:
            blob = f.read()
    else:
        raise FileNotFoundError(f"Fashion-MNIST file '{path}' (or '{path}.gz') is missing; pass --data DIR")
    # Header: two zero bytes, the element type (0x08 = unsigned byte), the rank, then one big-endian int32 per dimension.
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] != 0x08:
        raise ValueError(f"'{path}' is not an IDX file of unsigned bytes")
    rank = blob[3]
    dims = list(struct.unpack(">" + "I" * rank, blob[4:4 + 4 * rank]))
    count = 1
    for d in dims:
        count *= d
    data = blob[4 + 4 * rank:]
    if len(data) < count:
        raise ValueError(f"'{path}' holds {len(data)} data bytes; its header {dims} needs {count}")
    values = torch.frombuffer(bytearray(data[:count]), dtype=torch.uint8).reshape(dims)
    return values[:limit] if limit > 0 else values


def load(data_dir, split, limit, device):
    """Images [N, 1, 28, 28] standardised, labels [N] int64, both on `device`."""
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(data_dir, f"{prefix}-images-idx3-ubyte", limit)
    labels = read_idx(data_dir, f"{prefix}-labels-idx1-ubyte", limit)
    x = ((images.float() / 255.0 - MEAN) / STD).unsqueeze(1)
    return x.to(device), labels.long().to(device)


# ---- the presets, as src/Core/Layers/Presets.cs defines them (on 1x28x28 inputs) ----

def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def small_vgg(classes=10):
    """Two blocks of two conv3x3 (32 then 64 channels, pad 1, no bias) + BN + relu, each ending in maxpool2;
    dense 128 (no bias) + BN + relu, dropout 0.3, dense classes."""
    layers, cin = [], 1
    for width in (32, 64):
        for _ in range(2):
            layers += conv_bn_relu(cin, width)
            cin = width
        layers.append(nn.MaxPool2d(2))
    # Two 2x2 pools take 28x28 to 7x7.
    layers += [nn.Flatten(), nn.Linear(cin * 7 * 7, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3),
               nn.Linear(128, classes)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """Our Residual block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); conv1 3x3 stride S pad 1, conv2 3x3
    pad 1, both without bias; the shortcut is x when channels match and S = 1, else a 1x1 conv (stride S, no bias) + BN."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if cin == cout and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


def small_resnet(classes=10):
    """conv3x3 16 (no bias) + BN + relu; residual blocks 16, 32 (stride 2), 64 (stride 2); global average pooling;
    dense classes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        Residual(16, 16), Residual(16, 32, stride=2), Residual(32, 64, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, classes))


PRESETS = {"vgg": small_vgg, "resnet": small_resnet}


def init_like_ours(model, seed):
    """He normal weights (std sqrt(2 / fan-in)) for convolutions and dense layers, zero biases; BN keeps scale 1, shift 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()  # in channels / groups x kernel volume, or in features
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()


def training_gflop_per_image(build):
    """Training FLOPs per 1x28x28 image, in GFLOP, by the convention GpuRun uses: convolutions and dense layers only,
    one multiply-add = 2 FLOPs, forward + backward = 3 x forward. Read from the module shapes by one forward pass of
    one image on the CPU (eval mode: BatchNorm1d cannot train on a batch of one)."""
    model = build().eval()
    multiply_adds = 0

    def on_conv(m, inputs, out):
        nonlocal multiply_adds
        per_output = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        multiply_adds += out.numel() // out.shape[0] * per_output

    def on_dense(m, inputs, out):
        nonlocal multiply_adds
        multiply_adds += (out.numel() // out.shape[0] // m.out_features) * m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(on_conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(on_dense)
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    return 3.0 * 2.0 * multiply_adds / 1e9


# ---- training ----

def report(key, value):
    print(f"RESULT {key} = {value}", flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def accuracy(model, x, y, batch=1000):
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return 100.0 * correct / x.shape[0]


def train(name, a, device, prefix, train_set, test_set):
    build = PRESETS[name]
    gflop = training_gflop_per_image(build)
    report(f"{prefix}{name}.batch{a.batch}.gflop_per_img", f"{gflop:.4f}")
    torch.manual_seed(a.seed)
    model = build()
    init_like_ours(model, a.seed)
    model = model.to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"training {name}: {params:,} parameters, {a.epochs} epochs, batch {a.batch}, Adam lr 1e-3, seed {a.seed}, "
          f"compile {a.compile}", flush=True)
    step_model = torch.compile(model) if a.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = train_set
    n = x.shape[0]
    if n % a.batch == 1:
        raise ValueError(f"{n} training images at batch {a.batch} leave a last batch of one, which BatchNorm1d cannot train on; change --limit or --batch")
    for epoch in range(1, a.epochs + 1):
        model.train()
        sync(device)
        t0 = time.perf_counter()
        order = torch.randperm(n, device=device)
        for i in range(0, n, a.batch):
            idx = order[i:i + a.batch]
            loss = F.cross_entropy(step_model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        seconds = time.perf_counter() - t0
        key = f"{prefix}{name}.batch{a.batch}.epoch{epoch}"
        report(f"{key}.train_img_per_s", f"{n / seconds:.0f}")
        report(f"{key}.train_tflops", f"{n / seconds * gflop / 1000:.3f}")
        print(f"{name} epoch {epoch}: {seconds:.2f} s training, last batch loss {loss.item():.4f}", flush=True)

    # The test set scored twice in eval mode by the uncompiled model (the compiled one would compile again for eval);
    # the second, warm pass is the one timed, as GpuRun reports its warm pass.
    model.eval()
    xt, yt = test_set
    acc = accuracy(model, xt, yt)
    sync(device)
    t0 = time.perf_counter()
    accuracy(model, xt, yt)
    sync(device)
    warm = time.perf_counter() - t0
    key = f"{prefix}{name}.batch{a.batch}.epoch{a.epochs}"
    report(f"{key}.test_acc_pct", f"{acc:.2f}")
    report(f"{key}.infer10k_s", f"{warm:.4f} ({xt.shape[0] / warm:.0f} img/s)")


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer for our vgg and resnet presets on Fashion-MNIST")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of the four IDX files (raw or .gz)")
    ap.add_argument("--nets", default="vgg,resnet")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (a quick check)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    ap.add_argument("--fp32", action="store_true", help="turn TF32 off for cuDNN and matrix products (as our backend without --tf32)")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (to check the script where no GPU is)")
    a = ap.parse_args()
    nets = [s.strip() for s in a.nets.split(",") if s.strip()]
    unknown = [s for s in nets if s not in PRESETS]
    if unknown or not nets:
        ap.error(f"--nets takes a comma-separated list of {', '.join(PRESETS)}; got '{a.nets}'")
    if a.epochs < 1 or a.batch < 1:
        ap.error(f"--epochs and --batch must be >= 1; got {a.epochs} and {a.batch}")

    if not a.cpu and not torch.cuda.is_available():
        print("no CUDA device: pass --cpu to run on the CPU", file=sys.stderr)
        return 3
    device = torch.device("cpu" if a.cpu else "cuda")
    prefix = "cpu." if a.cpu else "gpu."
    torch.backends.cudnn.benchmark = True
    if a.fp32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}, "
          f"cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32}, matmul.allow_tf32 {torch.backends.cuda.matmul.allow_tf32}",
          flush=True)
    train_set = load(a.data, "train", a.limit, device)
    test_set = load(a.data, "test", 0, device)
    print(f"Fashion-MNIST from {a.data}: {train_set[0].shape[0]:,} training and {test_set[0].shape[0]:,} test images", flush=True)

    failures = 0
    for name in nets:
        try:
            train(name, a, device, prefix, train_set, test_set)
        except Exception as e:  # one net failing must not hide the other's figures
            print(f"{name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            failures += 1
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
