using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Training;
using Microsoft.ML;

namespace MLNet.ConvNet.Trainers;

// Transfer learning in Fit: the options PretrainedModel, ReplaceHead, FreezeThrough, BodyLearningRateScale, InputMean and
// InputStd turned into a network. The work (import, copying weights, the new head, freezing) is Core's: OnnxImporter,
// Checkpoint.LoadNetwork, Transfer and Network.FrozenLayerCount.

public sealed partial class ConvNetTrainer
{
    /// <summary>The network of option PretrainedModel for <paramref name="classes"/> classes and samples <paramref name="sampleShape"/>, frozen as option FreezeThrough says.</summary>
    private Network CreatePretrainedNetwork(IBackend backend, int classes, Shape sampleShape, DataViewSchema.Column feature, ulong seed)
    {
        var o = _options;
        string path = o.PretrainedModel!;
        if (!File.Exists(path)) throw new FileNotFoundException($"ConvNetTrainer option PretrainedModel = '{path}': no such file.", path);
        Network source;
        try
        {
            source = path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)
                ? OnnxImporter.Import(path, backend, sampleShape).Network
                : Checkpoint.LoadNetwork(path, backend);
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or NotSupportedException)
        {
            throw new ArgumentException($"ConvNetTrainer option PretrainedModel = '{path}' cannot be used for feature column '{feature.Name}' (samples {sampleShape}): {WithoutParameterNames(e.Message)}", "PretrainedModel", e);
        }
        var prepend = InputNormalization() is { } normalize ? new[] { normalize } : [];
        Network network;
        try { network = Transfer.Copy(source, backend, sampleShape, seed, o.ReplaceHead ? classes : null, prepend); }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"ConvNetTrainer option PretrainedModel = '{path}' with feature column '{feature.Name}' (samples {sampleShape}): {WithoutParameterNames(e.Message)}", "PretrainedModel", e);
        }
        if (network.OutputShape != new Shape(classes))
            throw new ArgumentException($"The label has {classes} classes but the network of option PretrainedModel = '{path}' outputs {network.OutputShape} per sample; set option ReplaceHead = true to give it a new head.", "ReplaceHead");
        if (o.FreezeThrough is { } through)
        {
            try { network.FrozenLayerCount = Transfer.CountThrough(network, through); }
            catch (ArgumentException e) { throw new ArgumentException($"ConvNetTrainer option FreezeThrough = '{through}': {WithoutParameterNames(e.Message)}", "FreezeThrough", e); }
            if (network.TrainableParameters.Count == 0)
                throw new ArgumentException($"ConvNetTrainer option FreezeThrough = '{through}' freezes every layer with weights; nothing would train.", "FreezeThrough");
            o.Log?.Invoke($"ConvNetTrainer: {network.FrozenLayerCount} of {network.Layers.Count} layers frozen (option FreezeThrough = '{through}').");
        }
        return network;
    }

    /// <summary>The Normalize layer of options InputMean and InputStd, or null when they are not set.</summary>
    private Normalize? InputNormalization() =>
        _options.InputMean is { } mean ? new Normalize(mean, _options.InputStd!) { Name = "normalize" } : null;
}
