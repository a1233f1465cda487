namespace MLNet.ConvNet.Layers;

/// <summary>Unbuilt copies of layers: the same configuration and name, no weights (restore them with a Checkpoint).</summary>
public static class LayerCopy
{
    /// <summary>
    /// An unbuilt layer configured as <paramref name="layer"/>, with its name (which names its weights). The layer
    /// types are those <c>Network.ExportOnnx</c> exports; any other type throws <see cref="NotSupportedException"/>.
    /// </summary>
    public static Layer Unbuilt(Layer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Layer copy = layer switch
        {
            Conv c => new Conv(c.OutChannels, c.Kernel, c.Options, c.HasBias),
            Pool p => p.IsGlobal ? Pool.Global(p.Options.Mode) : new Pool(p.Options),
            BatchNorm b => new BatchNorm(b.Epsilon, b.Momentum),
            Lrn l => new Lrn(l.Options),
            Activation a => new Activation(a.Kind, a.Alpha),
            Flatten => new Flatten(),
            Dense d => new Dense(d.OutFeatures, d.HasBias),
            Dropout d => new Dropout(d.P),
            Residual r => new Residual(r.OutChannels, r.Stride),
            _ => throw new NotSupportedException($"LayerCopy cannot copy {layer.Describe()}; the layer types it copies are those Network.ExportOnnx exports."),
        };
        copy.Name = layer.Name;
        return copy;
    }
}
