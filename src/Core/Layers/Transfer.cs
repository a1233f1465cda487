using MLNet.ConvNet.Backends;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// Transfer learning: a trained network (imported from ONNX, or loaded from a checkpoint) copied into a new one that
/// starts from its weights, with a new classifier head for other classes and layers in front (input normalization).
/// </summary>
public static class Transfer
{
    /// <summary>The name given to a new head: "head".</summary>
    public const string HeadName = "head";

    /// <summary>
    /// A new network on <paramref name="backend"/>, built for samples <paramref name="sampleShape"/>: <paramref name="prepend"/>
    /// (unbuilt, e.g. a <see cref="Normalize"/>), then copies of <paramref name="source"/>'s layers holding its values
    /// (parameters and running statistics, matched by name and checked by shape). With <paramref name="classes"/> given,
    /// the source's last layer (its classifier, which must be a <see cref="Dense"/>) is replaced by a new
    /// <c>Dense(classes)</c> named <see cref="HeadName"/>, initialised from <paramref name="seed"/> as a fresh network's.
    /// </summary>
    public static Network Copy(Network source, IBackend backend, Shape sampleShape, ulong seed, int? classes = null, IEnumerable<Layer>? prepend = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(backend);
        if (source.InputShape is null) throw new InvalidOperationException("Transfer.Copy: the source network is not built.");
        var layers = source.Layers.Select(l => l.Clone()).ToList();
        if (classes is { } k)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(k, 1, nameof(classes));
            var last = source.Layers[^1];
            if (last is not Dense dense)
                throw new ArgumentException($"Transfer.Copy: the source network's last layer '{last.Name}' ({last.GetType().Name}) is not a Dense classifier, so there is no head to replace.", nameof(classes));
            string name = source.Layers.Any(l => l.Name == HeadName) ? HeadName + "_new" : HeadName;
            layers[^1] = new Dense(k, dense.HasBias) { Name = name };
        }
        var prefix = prepend?.ToList() ?? [];
        var network = new Network([.. prefix, .. layers], backend);
        try { network.Build(sampleShape, seed); }
        catch (ArgumentException e) { throw new ArgumentException($"Transfer.Copy: the network copied from the source cannot take samples {sampleShape}: {e.Message}", nameof(sampleShape), e); }
        // The tensors of every source layer but a replaced head, by full name (layer names may hold dots: "/layer1.0").
        var values = source.Layers.Take(classes is null ? source.Layers.Count : source.Layers.Count - 1)
            .SelectMany(l => l.Parameters.Select(p => (p.Name, p.Value)).Concat(l.Buffers.Select(b => (b.Name, b.Value))))
            .ToDictionary(t => t.Name, t => t.Value);
        foreach (var (name, target) in network.StateTensors())
        {
            if (!values.TryGetValue(name, out var value)) continue;
            if (value.Shape != target.Shape)
                throw new ArgumentException($"Transfer.Copy: '{name}' has shape {value.Shape} in the source network but {target.Shape} in the copy for samples {sampleShape} (a layer after a flatten sees another size).", nameof(sampleShape));
            target.CopyFromHost(value.ToHost());
        }
        return network;
    }

    /// <summary>
    /// The number of top-level layers up to and including the one named <paramref name="layerName"/> (for
    /// <see cref="Network.FrozenLayerCount"/>); "body" means every layer but the last (the head). Throws naming the layers when there is no such layer.
    /// </summary>
    public static int CountThrough(Network network, string layerName)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentException.ThrowIfNullOrEmpty(layerName);
        int i = network.Layers.ToList().FindIndex(l => l.Name == layerName);
        if (i >= 0) return i + 1;
        if (layerName == "body") return network.Layers.Count - 1;
        throw new ArgumentException($"The network has no top-level layer named '{layerName}'; its layers are: {string.Join(", ", network.Layers.Select(l => l.Name))} (or 'body': all but the last).", nameof(layerName));
    }
}
