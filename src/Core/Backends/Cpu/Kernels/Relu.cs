using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MLNet.ConvNet.Backends.Cpu.Kernels;

/// <summary>
/// The ReLU as every fast kernel applies it inside a fused pass (pooling, batch norm, their backward passes): the value
/// max(v, 0) with NaN kept and -0 made +0 (TensorPrimitives.Max(v, 0)), and the slope 1 above 0, 0 at or below, NaN at
/// NaN, which the backward multiplies dy by (so 0 times Inf stays NaN, as in ActivationBackward). One definition in
/// scalar and vector form, so a fused kernel gives the bits of the ReLU layer it replaces.
/// </summary>
internal static class Relu
{
    public static float Value(float v) => v > 0 || float.IsNaN(v) ? v : 0f;

    public static float Slope(float x) => x > 0 ? 1f : x <= 0 ? 0f : float.NaN;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Value(Vector128<float> v) =>
        Vector128.ConditionalSelect(Vector128.GreaterThan(v, Vector128<float>.Zero) | Vector128.IsNaN(v), v, Vector128<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Value(Vector256<float> v) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(v, Vector256<float>.Zero) | Vector256.IsNaN(v), v, Vector256<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Slope(Vector128<float> x) =>
        Vector128.ConditionalSelect(Vector128.GreaterThan(x, Vector128<float>.Zero), Vector128<float>.One,
            Vector128.ConditionalSelect(Vector128.LessThanOrEqual(x, Vector128<float>.Zero), Vector128<float>.Zero, Vector128.Create(float.NaN)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Slope(Vector256<float> x) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<float>.Zero), Vector256<float>.One,
            Vector256.ConditionalSelect(Vector256.LessThanOrEqual(x, Vector256<float>.Zero), Vector256<float>.Zero, Vector256.Create(float.NaN)));
}
