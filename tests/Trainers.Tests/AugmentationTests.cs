using MLNet.ConvNet.Data;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

public sealed class AugmentationTests
{
    /// <summary>[2, 4, 5] samples whose values are distinct and non-zero: value = 1 + index.</summary>
    private static InMemoryDataset Distinct(int count)
    {
        var shape = new Shape(2, 4, 5);
        var x = Enumerable.Range(0, count * shape.Length).Select(i => 1f + i).ToArray();
        return new InMemoryDataset(x, Enumerable.Range(0, count).Select(i => i % 3).ToArray(), shape, 3);
    }

    /// <summary>Naive reference: out[c, h, w] = in[c, h + dy, (flip ? W-1-w : w) + dx], zero outside.</summary>
    private static float[] Reference(float[] x, bool flip, int dy, int dx)
    {
        var y = new float[40];
        for (int c = 0; c < 2; c++)
            for (int h = 0; h < 4; h++)
                for (int w = 0; w < 5; w++)
                {
                    int sh = h + dy, sw = (flip ? 4 - w : w) + dx;
                    y[c * 20 + h * 5 + w] = sh is >= 0 and < 4 && sw is >= 0 and < 5 ? x[c * 20 + sh * 5 + sw] : 0f;
                }
        return y;
    }

    [Fact]
    public void Each_sample_is_one_flip_and_shift_of_itself_and_all_kinds_occur()
    {
        var data = Distinct(200);
        var aug = new Augmentation(data, flip: true, padding: 1, seed: 9);
        var indices = Enumerable.Range(0, 200).ToArray();
        var features = new float[200 * 40];
        var labels = new int[200];
        aug.CopyBatch(indices, features, labels);
        Assert.Equal(data.Labels.ToArray(), labels);
        var seen = new HashSet<(bool, int, int)>();
        for (int i = 0; i < 200; i++)
        {
            var x = data.Features.Slice(i * 40, 40).ToArray();
            var y = features.AsSpan(i * 40, 40).ToArray();
            var match = (from flip in new[] { false, true } from dy in new[] { -1, 0, 1 } from dx in new[] { -1, 0, 1 }
                         where Reference(x, flip, dy, dx).SequenceEqual(y) select (flip, dy, dx)).ToArray();
            Assert.Single(match); // values are distinct, so exactly one transform explains the output
            seen.Add(match[0]);
        }
        Assert.Equal(18, seen.Count); // 2 flips x 3 x 3 shifts all drawn among 200 samples
    }

    [Fact]
    public void Draws_depend_on_seed_epoch_and_sample_only()
    {
        var data = Distinct(50);
        var aug = new Augmentation(data, flip: true, padding: 2, seed: 4);
        float[] Copy(int[] idx)
        {
            var f = new float[idx.Length * 40];
            aug.CopyBatch(idx, f, new int[idx.Length]);
            return f;
        }
        // Sample 7 alone and inside a batch in another order: the same result.
        var alone = Copy([7]);
        var inBatch = Copy([3, 7, 1]).AsSpan(40, 40).ToArray();
        Assert.Equal(alone, inBatch);
        aug.Epoch = 1;
        var all0 = Enumerable.Range(0, 50).ToArray();
        var epoch1 = Copy(all0);
        aug.Epoch = 0;
        Assert.NotEqual(Copy(all0), epoch1);
        Assert.Equal(alone, Copy([7]));
    }

    [Fact]
    public void Flat_samples_cannot_be_augmented()
    {
        var flat = new InMemoryDataset(new float[20], [0, 1], new Shape(10), 2);
        var e = Assert.ThrowsAny<ArgumentException>(() => new Augmentation(flat, flip: true, padding: 0, seed: 1));
        Assert.Contains("RandomHorizontalFlip", e.Message);
    }
}
