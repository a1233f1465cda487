namespace MLNet.ConvNet.Layers;

/// <summary>
/// Folds inference-mode batch norm into the Conv or Dense layer before it, as ONNX Runtime does: one pass over the
/// activations less per batch norm. Per output channel, with s = gamma / sqrt(var + eps):
/// <code>w' = w s;   b' = (b - mean) s + beta</code>
/// (a layer without bias gets one). The outputs change by float rounding only: the fold is computed in double.
/// </summary>
public static class BatchNormFolding
{
    /// <summary>
    /// A new network on <paramref name="network"/>'s backend in which each BatchNorm that directly follows a layer that
    /// can absorb it (<see cref="Layer.CloneWithBias"/>: Conv, Dense) is folded into that layer (its running statistics and scale/shift become the layer's weight and bias);
    /// every other tensor is copied. When there is nothing to fold, <paramref name="network"/> itself is returned.
    /// The result is for inference only: it has no batch norm left to train.
    /// </summary>
    public static Network Fold(Network network)
    {
        ArgumentNullException.ThrowIfNull(network);
        if (network.InputShape is not { } sample)
            throw new InvalidOperationException("BatchNormFolding: the network is not built; call Build(sampleShape) first.");
        var layers = network.Layers;
        var kept = new List<Layer>();
        var folds = new Dictionary<string, (Layer Source, BatchNorm Norm)>();
        for (int i = 0; i < layers.Count; i++)
        {
            if (i + 1 < layers.Count && layers[i + 1] is BatchNorm norm && layers[i].CloneWithBias() is { } folded)
            {
                folds.Add(layers[i].Name!, (layers[i], norm)); // a built network names every layer
                kept.Add(folded);
                i++;
            }
            else kept.Add(layers[i].Clone());
        }
        if (folds.Count == 0) return network;
        var result = new Network(kept, network.Backend);
        result.Build(sample);
        // Every tensor of a layer that is not folded keeps its name, so it is copied by name.
        var state = network.StateTensors().ToDictionary(t => t.Name, t => t.Value);
        foreach (var (name, target) in result.StateTensors())
            if (state.TryGetValue(name, out var same) && !folds.ContainsKey(name[..name.LastIndexOf('.')]))
                target.CopyFromHost(same.ToHost());
        foreach (var layer in result.Layers)
        {
            if (!folds.TryGetValue(layer.Name!, out var fold)) continue;
            var (weight, bias) = WeightAndBias(fold.Source);
            float[] w = weight.ToHost(), b = bias?.ToHost() ?? new float[weight.Shape[0]];
            // BatchNorm.Parameters is [gamma, beta].
            float[] gamma = fold.Norm.Parameters[0].Value.ToHost(), beta = fold.Norm.Parameters[1].Value.ToHost(),
                mean = fold.Norm.RunningMean!.ToHost(), variance = fold.Norm.RunningVariance!.ToHost();
            int outputs = b.Length, per = w.Length / outputs;
            for (int o = 0; o < outputs; o++)
            {
                // The same scale as the batch norm kernel: gamma / sqrt(var + eps) in double.
                double scale = gamma[o] / Math.Sqrt((double)variance[o] + fold.Norm.Epsilon);
                for (int k = o * per; k < (o + 1) * per; k++) w[k] = (float)(w[k] * scale);
                b[o] = (float)((b[o] - (double)mean[o]) * scale + beta[o]);
            }
            var (foldedWeight, foldedBias) = WeightAndBias(layer);
            foldedWeight.CopyFromHost(w);
            foldedBias!.CopyFromHost(b);
        }
        return result;
    }

    /// <summary>The "weight" [O, ...] and "bias" [O] (null when absent) of a layer <see cref="Layer.CloneWithBias"/> accepts.</summary>
    private static (Tensor Weight, Tensor? Bias) WeightAndBias(Layer layer) =>
        (layer.Parameters.Single(p => p.LocalName == "weight").Value, layer.Parameters.SingleOrDefault(p => p.LocalName == "bias")?.Value);
}
