using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Ops;
using Onnx;
using AttributeType = Onnx.AttributeProto.Types.AttributeType;

namespace MLNet.ConvNet.Onnx;

// One method per supported ONNX op: read and check its attributes, make the layer (or merge) it becomes, and record
// which constants become the layer's parameters and buffers. docs/onnx-import.md lists the same limits.

public static partial class OnnxImporter
{
    private sealed partial class Reader
    {
        private void ReadNode(NodeProto node, int index, NodeProto[] nodes)
        {
            switch (node.OpType)
            {
                case "Conv": Convolution(node, index, transposed: false); break;
                case "ConvTranspose": Convolution(node, index, transposed: true); break;
                case "BatchNormalization": BatchNormalization(node, index); break;
                case "Relu": Act(node, index, ActivationKind.ReLU, null); break;
                case "Sigmoid": Act(node, index, ActivationKind.Sigmoid, null); break;
                case "Tanh": Act(node, index, ActivationKind.Tanh, null); break;
                case "LeakyRelu": Act(node, index, ActivationKind.LeakyReLU, Float(node, "alpha", 0.01f)); break;
                case "Elu": Act(node, index, ActivationKind.ELU, Float(node, "alpha", 1f)); break;
                case "MaxPool": Pooling(node, index, max: true); break;
                case "AveragePool": Pooling(node, index, max: false); break;
                case "GlobalAveragePool": Layer(node, index, Pool.Global(PoolingMode.AverageIncludingPadding)); break;
                case "GlobalMaxPool": Layer(node, index, Pool.Global(PoolingMode.Max)); break;
                case "Gemm": Gemm(node, index); break;
                case "MatMul": MatMul(node, index, nodes); break;
                case "Add":
                    OnlyOutput(node);
                    Add(node, index, GraphNodeKind.Add, null, [Data(node, 0), Data(node, 1)]);
                    break;
                case "Concat": Concat(node, index); break;
                case "Flatten": FlattenOp(node, index); break;
                case "Reshape": Reshape(node, index); break;
                case "Dropout": DropoutOp(node, index); break;
                case "Softmax": SoftmaxOp(node); break;
                case "LRN": LrnOp(node, index); break;
                case "Identity":
                    OnlyOutput(node);
                    if (_constants.TryGetValue(Resolve(node.Input[0]), out var c)) _constants[node.Output[0]] = c;
                    else _alias[node.Output[0]] = Data(node, 0);
                    break;
                case "Constant": ConstantOp(node); break;
                default: throw Unsupported(node, "its op type has no mapping to our layers");
            }
        }

        /// <summary>A layer on the node's first input.</summary>
        private Item Layer(NodeProto node, int index, Layer layer)
        {
            OnlyOutput(node);
            return Add(node, index, GraphNodeKind.Layer, layer, [Data(node, 0)]);
        }

        private void Act(NodeProto node, int index, ActivationKind kind, float? alpha) => Layer(node, index, new Layers.Activation(kind, alpha));

        /// <summary>Conv and ConvTranspose: symmetric pads only (ours pad both sides alike), no output_padding.</summary>
        private void Convolution(NodeProto node, int index, bool transposed)
        {
            var w = Const(node, 1)!;
            var b = Const(node, 2, optional: true);
            int rank = w.Dims.Length - 2;
            if (rank is < 1 or > 3) throw Unsupported(node, $"its weight has shape [{string.Join(", ", w.Dims)}]; the importer takes 1-D, 2-D and 3-D convolutions");
            int groups = (int)Int(node, "group", 1);
            var kernel = w.Dims[2..];
            var declared = Ints(node, "kernel_shape", null);
            if (declared is not null && !declared.SequenceEqual(kernel.Select(k => (long)k)))
                throw Unsupported(node, $"kernel_shape [{string.Join(", ", declared)}] differs from its weight's [{string.Join(", ", kernel)}]");
            var strides = PerDim(node, "strides", rank);
            var dilations = PerDim(node, "dilations", rank);
            var pads = Pads(node, rank, kernel, strides, dilations);
            if (transposed)
            {
                if (Ints(node, "output_padding", null) is { } op && op.Any(p => p != 0)) throw Unsupported(node, $"output_padding [{string.Join(", ", op)}] is not 0");
                if (Ints(node, "output_shape", null) is not null) throw Unsupported(node, "attribute output_shape is not read (give pads instead)");
            }
            var options = Conv.DefaultOptions with { Padding = pads, Stride = strides, Dilation = dilations, Groups = groups };
            int outChannels = transposed ? w.Dims[1] * groups : w.Dims[0];
            Layer layer = transposed ? new TransposedConv(outChannels, kernel, options, bias: b is not null) : new Conv(outChannels, kernel, options, bias: b is not null);
            var item = Layer(node, index, layer);
            item.Weights.Add((node.Input[1], w));
            if (b is not null) item.Weights.Add((node.Input[2], b));
        }

        /// <summary>The pads of a Conv/ConvTranspose/pool node as one symmetric value per dimension (auto_pad NOTSET or VALID, or SAME_* where symmetric).</summary>
        private int[] Pads(NodeProto node, int rank, int[] kernel, int[] strides, int[] dilations)
        {
            string autoPad = String(node, "auto_pad", "NOTSET");
            if (autoPad == "VALID") return new int[rank];
            if (autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                // With stride 1 the total padding is the kernel's span - 1: symmetric when that is even.
                var pads = new int[rank];
                for (int i = 0; i < rank; i++)
                {
                    int total = (kernel[i] - 1) * dilations[i];
                    if (strides[i] != 1 || total % 2 != 0) throw Unsupported(node, $"auto_pad {autoPad} pads asymmetrically here (kernel {kernel[i]}, stride {strides[i]}); the importer takes symmetric padding only");
                    pads[i] = total / 2;
                }
                return pads;
            }
            if (autoPad != "NOTSET") throw Unsupported(node, $"auto_pad '{autoPad}' is unknown");
            var p = Ints(node, "pads", null);
            if (p is null) return new int[rank];
            if (p.Length != 2 * rank) throw Unsupported(node, $"pads has {p.Length} values; expected {2 * rank}");
            for (int i = 0; i < rank; i++)
                if (p[i] != p[i + rank]) throw Unsupported(node, $"pads [{string.Join(", ", p)}] differ at the start and end of spatial dimension {i}; the importer takes symmetric padding only");
            return p[..rank].Select(v => checked((int)v)).ToArray();
        }

        private void BatchNormalization(NodeProto node, int index)
        {
            if (node.Output.Skip(1).Any(o => o != "")) throw Unsupported(node, "it has training-mode outputs (running mean and variance); export the model in inference mode");
            if (Int(node, "training_mode", 0) != 0) throw Unsupported(node, "training_mode = 1; export the model in inference mode");
            float epsilon = Float(node, "epsilon", 1e-5f);
            float momentum = Float(node, "momentum", 0.9f);
            // ONNX's momentum weighs the running value (running = running * m + batch * (1 - m)); ours weighs the batch.
            var layer = new Layers.BatchNorm(epsilon, 1f - momentum);
            var item = Layer(node, index, layer);
            int c = _shapes[item.Inputs[0]][1];
            string[] roles = ["scale", "B", "input_mean", "input_var"];
            for (int i = 0; i < 4; i++)
            {
                var v = Const(node, i + 1)!;
                if (v.Length != c) throw Unsupported(node, $"its {roles[i]} has {v.Length} values for {c} channels");
                item.Weights.Add((node.Input[i + 1], v));
            }
        }

        private void Pooling(NodeProto node, int index, bool max)
        {
            var kernel = Ints(node, "kernel_shape", null)?.Select(k => checked((int)k)).ToArray() ?? throw Unsupported(node, "it has no kernel_shape");
            int rank = kernel.Length;
            var strides = PerDim(node, "strides", rank);
            var dilations = PerDim(node, "dilations", rank);
            if (dilations.Any(d => d != 1)) throw Unsupported(node, "dilations other than 1 in pooling");
            if (max && Int(node, "storage_order", 0) != 0) throw Unsupported(node, "storage_order = 1");
            if (node.Output.Skip(1).Any(o => o != "")) throw Unsupported(node, "its Indices output is used");
            var pads = Pads(node, rank, kernel, strides, dilations);
            var mode = max ? PoolingMode.Max : Int(node, "count_include_pad", 0) != 0 ? PoolingMode.AverageIncludingPadding : PoolingMode.AverageExcludingPadding;
            var layer = new Pool(new PoolingOptions { Mode = mode, Window = kernel, Padding = pads, Stride = strides });
            if (Int(node, "ceil_mode", 0) != 0)
            {
                // Ours rounds the output size down; ceil_mode is read only where rounding up gives the same size.
                var x = _shapes[Data(node, 0)];
                for (int i = 0; i < rank; i++)
                {
                    int span = x[i + 2] + 2 * pads[i] - kernel[i];
                    if (span % strides[i] != 0) throw Unsupported(node, $"ceil_mode = 1 rounds spatial dimension {i} (size {x[i + 2]}) up to a size the engine's pooling (which rounds down) does not give");
                }
            }
            Layer(node, index, layer);
        }

        /// <summary>Gemm: y = alpha A B' + beta C with B constant (B' = B or its transpose): a Dense layer.</summary>
        private void Gemm(NodeProto node, int index)
        {
            if (Int(node, "transA", 0) != 0) throw Unsupported(node, "transA = 1");
            var b = Const(node, 1)!;
            var c = Const(node, 2, optional: true);
            if (b.Dims.Length != 2) throw Unsupported(node, $"B has shape [{string.Join(", ", b.Dims)}]; expected a matrix");
            float alpha = Float(node, "alpha", 1f), beta = Float(node, "beta", 1f);
            bool transB = Int(node, "transB", 0) != 0;
            int outFeatures = transB ? b.Dims[0] : b.Dims[1], inFeatures = transB ? b.Dims[1] : b.Dims[0];
            // Our weight is [Out, In]: B itself when transB, else its transpose; alpha folds into it.
            var w = new float[outFeatures * inFeatures];
            for (int o = 0; o < outFeatures; o++)
                for (int i = 0; i < inFeatures; i++)
                    w[o * inFeatures + i] = alpha * (transB ? b.Values[o * inFeatures + i] : b.Values[i * outFeatures + o]);
            var item = Layer(node, index, new Layers.Dense(outFeatures, bias: c is not null));
            item.Weights.Add((node.Input[1], new Constant([outFeatures, inFeatures], w, null)));
            if (c is not null) item.Weights.Add((node.Input[2], Bias(node, c, outFeatures, beta)));
        }

        /// <summary>A bias of <paramref name="outputs"/> values from C: [Out], [1, Out], or one value broadcast; times <paramref name="scale"/>.</summary>
        private static Constant Bias(NodeProto node, Constant c, int outputs, float scale)
        {
            float[] values = c.Length == outputs ? c.Values.ToArray() : c.Length == 1 ? Enumerable.Repeat(c.Values[0], outputs).ToArray()
                : throw Unsupported(node, $"its bias has shape [{string.Join(", ", c.Dims)}] for {outputs} outputs");
            if (scale != 1f) for (int i = 0; i < values.Length; i++) values[i] *= scale;
            return new Constant([outputs], values, null);
        }

        /// <summary>MatMul by a constant [In, Out] matrix: a Dense layer, with the bias of a following Add of a constant fused in.</summary>
        private void MatMul(NodeProto node, int index, NodeProto[] nodes)
        {
            var b = Const(node, 1)!;
            if (b.Dims.Length != 2) throw Unsupported(node, $"its second input has shape [{string.Join(", ", b.Dims)}]; the importer takes a constant [In, Out] matrix");
            string x = Data(node, 0);
            if (_shapes[x].Rank != 2) throw Unsupported(node, $"its input has shape {_shapes[x]}; the importer takes MatMul of [N, In] values");
            int inFeatures = b.Dims[0], outFeatures = b.Dims[1];
            var w = new float[outFeatures * inFeatures];
            for (int o = 0; o < outFeatures; o++)
                for (int i = 0; i < inFeatures; i++) w[o * inFeatures + i] = b.Values[i * outFeatures + o];
            // The bias: the only reader of the product is an Add of it and a constant.
            var readers = nodes.Where(n => n.Input.Contains(node.Output[0])).ToArray();
            NodeProto? add = readers.Length == 1 && readers[0].OpType == "Add" && readers[0].Input.Count == 2 ? readers[0] : null;
            Constant? bias = null;
            if (add is not null)
            {
                string other = Resolve(add.Input[0] == node.Output[0] ? add.Input[1] : add.Input[0]);
                if (_constants.TryGetValue(other, out var c) && (c.Length == outFeatures || c.Length == 1)) bias = Bias(add, c, outFeatures, 1f);
                else add = null;
            }
            var item = Add(node, index, GraphNodeKind.Layer, new Layers.Dense(outFeatures, bias: bias is not null) { }, [x], add?.Output[0]);
            item.Weights.Add((node.Input[1], new Constant([outFeatures, inFeatures], w, null)));
            if (bias is not null)
            {
                item.Weights.Add((add!.Name, bias));
                _fused.Add(add);
            }
        }

        private void Concat(NodeProto node, int index)
        {
            OnlyOutput(node);
            var inputs = Enumerable.Range(0, node.Input.Count).Select(i => Data(node, i)).ToArray();
            int rank = _shapes[inputs[0]].Rank;
            long axis = Int(node, "axis", long.MinValue);
            if (axis == long.MinValue) throw Unsupported(node, "it has no axis");
            if (axis != 1 && axis != 1 - rank) throw Unsupported(node, $"axis = {axis}; the importer concatenates on dimension 1 (channels) only");
            if (inputs.Length == 1) { _alias[node.Output[0]] = inputs[0]; return; }
            Add(node, index, GraphNodeKind.Concat, null, inputs);
        }

        private void FlattenOp(NodeProto node, int index)
        {
            long axis = Int(node, "axis", 1);
            if (axis != 1) throw Unsupported(node, $"axis = {axis}; the importer flattens to [N, features] (axis 1) only");
            Layer(node, index, new Layers.Flatten());
        }

        /// <summary>Reshape to [N, features] (shape [0 or -1 or N, -1 or features]): a Flatten.</summary>
        private void Reshape(NodeProto node, int index)
        {
            var shape = Const(node, 1)!;
            string x = Data(node, 0);
            int features = _shapes[x].SizeFrom(1);
            var s = shape.Longs ?? throw Unsupported(node, "its shape is not an int64 constant");
            bool toRows = s.Length == 2 && (s[0] is 0 or -1 || s[0] == _shapes[x][0] && s[1] != -1) && (s[1] == -1 || s[1] == features);
            if (!toRows) throw Unsupported(node, $"shape [{string.Join(", ", s)}] is not [N, {features}]; the importer reshapes only to [N, features] (a flatten)");
            Layer(node, index, new Layers.Flatten());
        }

        /// <summary>Dropout: the ratio from the attribute (opset 11) or the second input (opset 12+); its mask output must be unused.</summary>
        private void DropoutOp(NodeProto node, int index)
        {
            if (node.Output.Skip(1).Any(o => o != "")) throw Unsupported(node, "its mask output is used");
            float ratio = Float(node, "ratio", 0.5f);
            if (Const(node, 1, optional: true) is { } r) ratio = r.Values[0];
            if (!(ratio >= 0 && ratio < 1)) throw Unsupported(node, $"ratio = {ratio}; it must be in [0, 1)");
            Layer(node, index, new Layers.Dropout(ratio));
        }

        /// <summary>A Softmax over the classes that is the model's last node is left out (the network returns logits).</summary>
        private void SoftmaxOp(NodeProto node)
        {
            OnlyOutput(node);
            string x = Data(node, 0);
            var shape = _shapes[x];
            long axis = Int(node, "axis", opset >= 13 ? -1 : 1);
            bool last = graph.Output[0].Name == node.Output[0] || Resolve(graph.Output[0].Name) == node.Output[0];
            if (!last || shape.Rank != 2 || (axis != 1 && axis != -1))
                throw Unsupported(node, "the importer takes a Softmax only as the model's last node, over dimension 1 of [N, classes]");
            _alias[node.Output[0]] = x;
            _softmaxRemoved = true;
        }

        private void LrnOp(NodeProto node, int index)
        {
            long size = Int(node, "size", 0);
            if (size < 1) throw Unsupported(node, "it has no size");
            var options = new LrnOptions { Size = checked((int)size), Alpha = Float(node, "alpha", 1e-4f), Beta = Float(node, "beta", 0.75f), K = Float(node, "bias", 1f) };
            try { options.Validate(); }
            catch (ArgumentException e) { throw Unsupported(node, e.Message); }
            Layer(node, index, new Layers.Lrn(options));
        }

        private void ConstantOp(NodeProto node)
        {
            var value = node.Attribute.FirstOrDefault(a => a.Name == "value");
            if (value?.T is null) throw Unsupported(node, "only Constant nodes with a tensor 'value' are read");
            _constants[node.Output[0]] = ReadTensor(value.T, $"Constant node '{node.Name}'");
        }

        // ---- attributes ----

        private static void OnlyOutput(NodeProto node)
        {
            if (node.Output.Count != 1) throw Unsupported(node, $"it has {node.Output.Count} outputs; the importer takes one");
        }

        private static AttributeProto? Attribute(NodeProto node, string name, AttributeType type)
        {
            var a = node.Attribute.FirstOrDefault(a => a.Name == name);
            if (a is not null && a.Type != type) throw Unsupported(node, $"attribute {name} is {a.Type}; expected {type}");
            return a;
        }

        private static long Int(NodeProto node, string name, long fallback) => Attribute(node, name, AttributeType.Int)?.I ?? fallback;
        private static float Float(NodeProto node, string name, float fallback) => Attribute(node, name, AttributeType.Float)?.F ?? fallback;
        private static string String(NodeProto node, string name, string fallback) => Attribute(node, name, AttributeType.String)?.S.ToStringUtf8() ?? fallback;
        private static long[]? Ints(NodeProto node, string name, long[]? fallback) => Attribute(node, name, AttributeType.Ints)?.Ints.ToArray() ?? fallback;

        /// <summary>One positive value per spatial dimension (default 1).</summary>
        private static int[] PerDim(NodeProto node, string name, int rank)
        {
            var v = Ints(node, name, null);
            if (v is null) return Enumerable.Repeat(1, rank).ToArray();
            if (v.Length != rank || v.Any(x => x < 1)) throw Unsupported(node, $"{name} [{string.Join(", ", v)}] must hold {rank} positive values");
            return v.Select(x => checked((int)x)).ToArray();
        }
    }
}
