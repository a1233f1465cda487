using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

public sealed class TrainingCurveTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Writes_a_png_of_the_requested_size(bool validation)
    {
        var history = Enumerable.Range(1, 4).Select(e => new EpochMetrics(e, 1.0 / e, 0.5 + 0.1 * e,
            validation ? 1.2 / e : double.NaN, validation ? 0.45 + 0.1 * e : double.NaN, 1e-3, 2.0)).ToArray();
        string path = Path.Combine(Path.GetTempPath(), $"curve-{Guid.NewGuid():N}.png");
        try
        {
            TrainingCurve.SavePng(history, path, 640, 400);
            var bytes = File.ReadAllBytes(path);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 13, 10, 26, 10 }, bytes[..8]);
            // IHDR: width and height, big-endian, at bytes 16..23.
            Assert.Equal(640, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
            Assert.Equal(400, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
            Assert.True(bytes.Length > 5000, $"a {bytes.Length}-byte PNG is too small to hold a plot");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Empty_history_is_refused()
    {
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => TrainingCurve.SavePng([], "x.png")).Message);
    }
}
