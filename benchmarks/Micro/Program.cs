using BenchmarkDotNet.Running;

namespace MLNet.ConvNet.Benchmarks;

/// <summary>
/// BenchmarkDotNet microbenchmarks, one class per op family. Each times the fast kernels and, as the
/// baseline, the readable reference kernels (the CPU backend's internal reference switch) on the same inputs.
/// Run: <c>dotnet run -c Release --project benchmarks/Micro -- --filter '*'</c> (or '*Conv*', '*Pool*', '*Gemm*').
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
