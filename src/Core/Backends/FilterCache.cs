using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends;

/// <summary>
/// Where a backend keeps the work of a convolution's forward pass that depends on the filter alone (its packing for a
/// GEMM, Winograd's filter transform) from one call to the next: one per layer, passed to
/// <see cref="IBackend.ConvolutionForward(ConvGeometry, Tensor, Tensor, Tensor, Tensor, FilterCache)"/> by inference
/// passes, where the filter stays the same for call after call (a scorer, a PredictionEngine).
/// </summary>
/// <remarks>
/// A cache is never trusted: the backend checks that the filter still holds the values its state was made from and
/// makes it again when not, so results are the same, bit for bit, with or without one. Training passes none: there the
/// filter changes every step.
/// </remarks>
public sealed class FilterCache
{
    /// <summary>The backend's state; null until a backend first uses the cache. A backend ignores state it did not make.</summary>
    public object? State { get; set; }
}
