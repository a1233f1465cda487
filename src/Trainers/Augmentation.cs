using MLNet.ConvNet.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Training-time augmentation applied to each mini-batch as it is copied out of the dataset: a random horizontal flip
/// and a random shift (pad with zeros, crop a window of the original size). Samples are <c>[C, X...]</c>; the last
/// dimension is the width.
/// </summary>
/// <remarks>
/// The draws for a sample are a function of (seed, epoch, sample index) only, not of the batch it lands in or of
/// the thread count, so a resumed run (which sets <see cref="Epoch"/> from its checkpoint) augments exactly as
/// the uninterrupted run did.
/// </remarks>
internal sealed class Augmentation : IDataset
{
    private readonly IDataset _inner;
    private readonly int[] _spatial;
    private readonly int _channels, _volume;
    private readonly float[] _scratch;

    public Augmentation(IDataset inner, bool flip, int padding, ulong seed)
    {
        _inner = inner;
        Flip = flip; Padding = padding; Seed = seed;
        var shape = inner.SampleShape;
        if (shape.Rank < 2)
            throw new ArgumentException($"ConvNetTrainer options RandomHorizontalFlip/RandomCropPadding need image samples [C, H, W] (or [C, X...]); the samples are {shape}. Set InputShape for a flat feature vector.", flip ? "RandomHorizontalFlip" : "RandomCropPadding");
        _channels = shape[0];
        _spatial = shape.ToArray()[1..];
        _volume = shape.SizeFrom(1);
        _scratch = new float[_volume];
    }

    public bool Flip { get; }
    public int Padding { get; }
    public ulong Seed { get; }

    /// <summary>The epoch being trained (0-based); the trainer advances it after every epoch.</summary>
    public int Epoch { get; set; }

    public int Count => _inner.Count;
    public Shape SampleShape => _inner.SampleShape;
    public int ClassCount => _inner.ClassCount;

    public void CopyBatch(ReadOnlySpan<int> indices, Span<float> features, Span<int> labels)
    {
        _inner.CopyBatch(indices, features, labels);
        int len = _channels * _volume;
        Span<int> shift = stackalloc int[_spatial.Length];
        for (int i = 0; i < indices.Length; i++)
        {
            var rng = new Rng(Rng.Mix(Seed, (ulong)Epoch * (ulong)Count + (ulong)indices[i]));
            bool flip = Flip && rng.NextInt(2) == 1;
            bool moved = false;
            for (int d = 0; d < shift.Length; d++)
            {
                shift[d] = Padding > 0 ? rng.NextInt(2 * Padding + 1) - Padding : 0;
                moved |= shift[d] != 0;
            }
            if (flip || moved) Apply(features.Slice(i * len, len), flip, shift);
        }
    }

    /// <summary>out[y] = in[flip(y) + shift], zero where that falls outside, channel by channel.</summary>
    private void Apply(Span<float> sample, bool flip, ReadOnlySpan<int> shift)
    {
        int rank = _spatial.Length, width = _spatial[^1];
        Span<int> index = stackalloc int[rank];
        for (int c = 0; c < _channels; c++)
        {
            var plane = sample.Slice(c * _volume, _volume);
            plane.CopyTo(_scratch);
            index.Clear();
            for (int o = 0; o < _volume; o++)
            {
                int source = 0;
                bool inside = true;
                for (int d = 0; d < rank && inside; d++)
                {
                    int y = d == rank - 1 && flip ? width - 1 - index[d] : index[d];
                    int x = y + shift[d];
                    inside = (uint)x < (uint)_spatial[d];
                    source = source * _spatial[d] + x;
                }
                plane[o] = inside ? _scratch[source] : 0f;
                for (int d = rank - 1; d >= 0; d--) // next multi-index, row-major
                {
                    if (++index[d] < _spatial[d]) break;
                    index[d] = 0;
                }
            }
        }
    }
}
