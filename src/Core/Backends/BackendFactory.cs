namespace MLNet.ConvNet.Backends;

/// <summary>Which backend runs the kernels.</summary>
public enum BackendKind
{
    /// <summary>The GPU when the CUDA libraries and a device are present, else the CPU; the reason is reported.</summary>
    Auto,
    /// <summary>The managed CPU backend.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through cuDNN and cuBLAS; an error naming what is missing when there is none.</summary>
    Cuda,
}

/// <summary>The user's backend choice: one value that flows from the trainer's or transform's options to every tensor.</summary>
public sealed record BackendOptions
{
    /// <summary>Kind = Auto.</summary>
    public BackendKind Kind { get; init; } = BackendKind.Auto;
    /// <summary>DeviceIndex = 0: the CUDA device (as numbered by the driver; CUDA_VISIBLE_DEVICES applies).</summary>
    public int DeviceIndex { get; init; }
    /// <summary>MaxThreads = null (all cores): the most threads a CPU kernel uses.</summary>
    public int? MaxThreads { get; init; }
    /// <summary>AllowTf32 = false: let cuDNN and cuBLAS use TF32 tensor cores for float32 (faster, ~1e-3 relative error).</summary>
    public bool AllowTf32 { get; init; }
}

/// <summary>The chosen backend and, in words, why it was chosen (for the log).</summary>
public sealed record BackendChoice(IBackend Backend, string Reason);

/// <summary>
/// Creates the backend a user asked for. The one place that turns a <see cref="BackendOptions"/> into an
/// <see cref="IBackend"/>; everything above (trainer, transforms, scorer) receives the result and never picks one itself.
/// </summary>
public static class BackendFactory
{
    /// <summary>
    /// The backend for <paramref name="options"/>. <see cref="BackendKind.Cuda"/> without a usable GPU throws
    /// <see cref="BackendUnavailableException"/> listing what was looked for and where.
    /// </summary>
    public static BackendChoice Create(BackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxThreads is <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxThreads, "Backend option MaxThreads must be at least 1.");
        if (options.DeviceIndex < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.DeviceIndex, "Backend option DeviceIndex must be >= 0.");
        switch (options.Kind)
        {
            case BackendKind.Cpu:
                return new(DefaultBackend.Cpu(options.MaxThreads), "the CPU backend was asked for");
            case BackendKind.Cuda:
                if (CudaProbe.TryCreate(options, out var gpu, out string whyNot)) return new(gpu!, $"the CUDA backend was asked for: {gpu}");
                throw new BackendUnavailableException($"Backend = Cuda was asked for but no CUDA device can be used: {whyNot}");
            case BackendKind.Auto:
                if (CudaProbe.TryCreate(options, out gpu, out whyNot)) return new(gpu!, $"Auto chose the GPU: {gpu}");
                return new(DefaultBackend.Cpu(options.MaxThreads), $"Auto chose the CPU: {whyNot}");
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "Unknown backend kind.");
        }
    }
}

/// <summary>The backend that was asked for cannot run here; the message names what is missing.</summary>
public sealed class BackendUnavailableException(string message) : InvalidOperationException(message);
