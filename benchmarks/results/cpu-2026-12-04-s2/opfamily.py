# Buckets perf samples (perf script output with call chains) of a training run by the first backend entry point
# on the stack, innermost first: the op family each sample's time belongs to.
import sys, re, collections
families = [
    ("evaluation (Trainer.Evaluate)", r"Trainer::Evaluate"),
    ("conv forward", r"CpuBackend::(Fast)?ConvolutionForward"),
    ("conv backward data", r"CpuBackend::(Fast)?ConvolutionBackwardData|Ops.Convolution::BackwardData"),
    ("conv backward filter", r"CpuBackend::(Fast)?ConvolutionBackwardFilter|ShiftedFilter|FilterChunk|Ops.Convolution::BackwardFilter"),
    ("conv bias gradient (SumPerChannel)", r"CpuBackend::SumPerChannel"),
    ("batch norm", r"CpuBackend::BatchNorm"),
    ("pooling", r"CpuBackend::Pooling|Layers.Pool::"),
    ("activation", r"CpuBackend::Activation"),
    ("dense (MatMul)", r"CpuBackend::MatMul"),
    ("optimizer (Adam)", r"CpuBackend::Adam|Optimizers"),
    ("dropout", r"Dropout"),
    ("loss", r"CrossEntropy|Softmax"),
    ("data (load, batches)", r"FashionMnist|CopyBatch|InMemoryDataset"),
]
counts = collections.Counter(); others = collections.Counter(); total = 0
stack = []
def flush():
    global total
    if not stack: return
    total += 1
    # innermost frame first; the family is the first frame (from the inside) that names an entry point,
    # except evaluation, which wins wherever it is on the stack
    joined = "\n".join(stack)
    if re.search(families[0][1], joined): counts[families[0][0]] += 1; return
    for f in stack:
        for name, pat in families[1:]:
            if re.search(pat, f): counts[name] += 1; return
    counts["other (JIT, GC, runtime, kernel)"] += 1
    others[stack[0][:120]] += 1
for line in sys.stdin:
    if not line.strip(): flush(); stack = []; continue
    if line.startswith("dotnet ") or not line.startswith((" ", "\t")): flush(); stack = []; continue
    stack.append(line.strip())
flush()
for name, c in counts.most_common(): print(f"{100.0*c/total:6.1f} %  {name}")
print(f"({total} samples)")
if "-v" in sys.argv:
    for k, c in others.most_common(25): print(f"   other {100.0*c/total:5.1f} % {k}")
