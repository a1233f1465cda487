using System.Runtime.InteropServices;
using MLNet.ConvNet.Backends.Cpu.Kernels;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

public sealed partial class CpuBackend
{
    /// <summary>
    /// One layer's filter in the forms the forward kernels take, kept in its <see cref="FilterCache"/> between inference
    /// calls: whether it is all finite, packed for the shifted GEMM or the im2col GEMM, transformed for Winograd. Each
    /// form is made, into arrays kept here, the first time a call needs it. A call whose filter is not bit for bit the
    /// copy the forms were made from (the weights were trained or loaded since) makes them again in the same arrays.
    /// Scoring one cnn2bn image otherwise repacks its 18,432 weights every call; a chunk of eight transforms them for Winograd.
    /// </summary>
    private sealed class PreparedFilter
    {
        private readonly CpuBackend _backend;
        private readonly Shape _filter;
        private readonly int _groups;
        private readonly ConvolutionMode _mode;
        private readonly float[] _weights;
        private float[][]? _shifted, _im2col, _winograd;
        private bool _shiftedMade, _im2colMade, _winogradMade;

        private PreparedFilter(CpuBackend backend, ConvGeometry g, float[] wa)
        {
            _backend = backend; _filter = g.Filter; _groups = g.Groups; _mode = g.Mode;
            _weights = wa.AsSpan(0, g.Filter.Length).ToArray();
            Finite = AllFinite(_weights, _weights.Length);
        }

        /// <summary>No Inf or NaN in the filter (Winograd takes only finite filters).</summary>
        public bool Finite { get; private set; }

        /// <summary>The cache's state for this call: made when missing or made by another backend or for another filter shape; made again when the weights changed.</summary>
        public static PreparedFilter For(FilterCache cache, ConvGeometry g, float[] wa, CpuBackend backend)
        {
            if (cache.State is PreparedFilter p && p._backend.GemmIsa == backend.GemmIsa && p._filter == g.Filter && p._groups == g.Groups && p._mode == g.Mode)
            {
                p.Refresh(wa);
                return p;
            }
            var made = new PreparedFilter(backend, g, wa);
            cache.State = made;
            return made;
        }

        /// <summary>Compares the filter with the copy bit for bit (NaN payloads and signed zeros included); on a difference, takes the new values and drops the forms.</summary>
        private void Refresh(float[] wa)
        {
            var now = MemoryMarshal.Cast<float, int>(wa.AsSpan(0, _weights.Length));
            if (now.SequenceEqual(MemoryMarshal.Cast<float, int>(_weights.AsSpan()))) return;
            wa.AsSpan(0, _weights.Length).CopyTo(_weights);
            Finite = AllFinite(_weights, _weights.Length);
            _shiftedMade = _im2colMade = _winogradMade = false;
        }

        public float[][] ShiftedRows(ConvGeometry g, float[] wa)
        {
            if (!_shiftedMade)
            {
                var (m, k) = FilterRowsSize(g, transposedTaps: false);
                _shifted = _backend.PackFilterRows(g, wa, transposedTaps: false, _shifted ?? NewAll(g.Groups, Sgemm.PackedASize(m, k, _backend.GemmIsa)));
                _shiftedMade = true;
            }
            return _shifted!;
        }

        public float[][] Im2ColRows(ConvPlan p, float[] wa)
        {
            if (!_im2colMade)
            {
                _im2col = _backend.PackFilters(p, wa, transposed: false, _im2col ?? NewAll(p.Groups, Sgemm.PackedASize(p.Og, p.CgK, _backend.GemmIsa)));
                _im2colMade = true;
            }
            return _im2col!;
        }

        public float[][] Winograd(in ShiftedConvPlan p, float[] wa)
        {
            if (!_winogradMade)
            {
                _winograd ??= NewAll(p.Groups * 16, _backend.WinogradFilterSize(p));
                _backend.TransformFilters(p, wa, forward: true, _winograd);
                _winogradMade = true;
            }
            return _winograd!;
        }

        private static float[][] NewAll(int count, int size)
        {
            var arrays = new float[count][];
            for (int i = 0; i < count; i++) arrays[i] = new float[size];
            return arrays;
        }
    }
}
