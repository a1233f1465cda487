using MLNet.ConvNet.Backends;

namespace MLNet.ConvNet.Ops;

/// <summary>
/// Checks for the caller-provided output tensors of the ops' "into" overloads (the ones that write into a tensor
/// the caller owns, so a training loop can reuse its buffers and allocate nothing per step).
/// </summary>
internal static class Outputs
{
    /// <summary>
    /// Throws unless <paramref name="output"/> has <paramref name="expected"/> shape, lives on <paramref name="backend"/>
    /// and shares no memory with the inputs (kernels read their inputs while writing their outputs).
    /// </summary>
    public static void Check(Tensor output, Shape expected, IBackend backend, string op, string name,
        Tensor? input1 = null, Tensor? input2 = null, Tensor? input3 = null)
    {
        ArgumentNullException.ThrowIfNull(output, name);
        if (output.Shape != expected)
            throw new ArgumentException($"{op}: {name} has shape {output.Shape} but the result has shape {expected}.", name);
        if (!ReferenceEquals(output.Backend, backend))
            throw new ArgumentException($"{op}: {name} lives on '{output.Backend.Name}' but the inputs on '{backend.Name}'; copy explicitly.", name);
        if (Shares(output, input1) || Shares(output, input2) || Shares(output, input3))
            throw new ArgumentException($"{op}: {name} shares memory with an input; give a separate tensor (ops do not run in place).", name);
    }

    private static bool Shares(Tensor output, Tensor? input) => input is not null && ReferenceEquals(output.Storage, input.Storage);
}
