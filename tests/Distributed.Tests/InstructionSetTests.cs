using System.Runtime.Intrinsics.X86;
using Xunit;

namespace MLNet.ConvNet.Distributed.Tests;

/// <summary>
/// Same seed, same weights on both kinds of x64 machine this project runs on. The instruction set is fixed when a
/// process starts, so the test trains in two processes (the MPI tests' worker, run alone, one rank): one as this
/// AVX-512 machine runs, one as an AVX2-only machine does (.NET's AVX-512 off with DOTNET_EnableAVX512=0, and the CPU
/// backend's own kernels capped with CONVNET_CPU_ISA=avx2). Every weight, batch-norm statistic included, must match
/// bit for bit. (It sits here because the worker does; it needs no MPI.)
/// </summary>
public class InstructionSetTests
{
    [Theory]
    [InlineData("lenet5")]
    [InlineData("cnn2bn")]
    public void TrainingOnTheAvx2PathGivesTheAvx512PathsWeights(string net)
    {
        Assert.SkipUnless(Avx512F.IsSupported, "this machine has no AVX-512: both processes would take the AVX2 path");
        string dir = Mpi.TempDirectory();
        try
        {
            string args = $"--net {net} --rows 320 --batch 16 --epochs 2 --threads 2 --seed 3";
            var wide = Mpi.Run(0, $"{args} --out \"{Path.Combine(dir, "avx512.bin")}\"", TimeSpan.FromSeconds(120));
            Assert.True(wide.ExitCode == 0, wide.ToString());
            var narrow = Mpi.Run(0, $"{args} --out \"{Path.Combine(dir, "avx2.bin")}\"", TimeSpan.FromSeconds(120),
                new Dictionary<string, string> { ["DOTNET_EnableAVX512"] = "0", ["CONVNET_CPU_ISA"] = "avx2" });
            Assert.True(narrow.ExitCode == 0, narrow.ToString());

            var a = Mpi.ReadWeights(Path.Combine(dir, "avx512.bin"));
            var b = Mpi.ReadWeights(Path.Combine(dir, "avx2.bin"));
            Assert.Equal(a.Length, b.Length);
            Assert.True(a.Length > 60_000, $"only {a.Length} values were written");
            int differing = Enumerable.Range(0, a.Length).Count(i => BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]));
            Assert.True(differing == 0, $"{differing} of {a.Length} values differ between the AVX-512 and the AVX2 run");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
