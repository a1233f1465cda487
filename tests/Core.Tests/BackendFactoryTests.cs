using System.Text.RegularExpressions;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cuda;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// The backend choice: the CPU when asked, Auto falling back to the CPU with a reason, and Cuda failing with a message
/// that lists what was looked for. The no-GPU cases skip where a GPU is present (tests/Cuda.Tests covers that side).
/// Environment changes (CONVNET_CUDA_PATH) stay inside this class, whose tests run one at a time.
/// </summary>
public sealed class BackendFactoryTests
{
    private static readonly bool CudaUsable = CudaProbe.TryCreate(new BackendOptions(), out _, out _);

    [Fact]
    public void Cpu_is_chosen_when_asked_with_its_thread_count()
    {
        var choice = BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cpu, MaxThreads = 1 });
        Assert.Equal("cpu", choice.Backend.Name);
        Assert.Contains("CPU", choice.Reason);
    }

    [Fact]
    public void Auto_without_a_gpu_chooses_the_cpu_and_says_why()
    {
        if (CudaUsable) Assert.Skip("A CUDA device is present here; Auto picks it (tests/Cuda.Tests checks that).");
        var choice = BackendFactory.Create(new BackendOptions());
        Assert.Equal("cpu", choice.Backend.Name);
        Assert.StartsWith("Auto chose the CPU: ", choice.Reason);
        Assert.Matches("CUDA driver|libcuda|NVRTC|cuBLAS|cuDNN", choice.Reason);
    }

    [Fact]
    public void Cuda_without_a_gpu_is_an_error_listing_what_was_looked_for_and_where()
    {
        if (CudaUsable) Assert.Skip("A CUDA device is present here.");
        var dir = Directory.CreateTempSubdirectory("convnet-cuda-path-");
        string? before = Environment.GetEnvironmentVariable("CONVNET_CUDA_PATH");
        try
        {
            // A file with the driver's name that is not a library: found, tried, and reported, not a crash.
            File.WriteAllText(Path.Combine(dir.FullName, "libcuda.so.1"), "not a library");
            Environment.SetEnvironmentVariable("CONVNET_CUDA_PATH", dir.FullName);
            var e = Assert.Throws<BackendUnavailableException>(() => BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cuda }));
            Assert.StartsWith("Backend = Cuda was asked for but no CUDA device can be used", e.Message);
            Assert.Contains(dir.FullName, e.Message);
            Assert.Contains("libcuda.so.1", e.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable("CONVNET_CUDA_PATH", before);
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Cuda_without_a_gpu_suggests_the_environment_variable()
    {
        if (CudaUsable) Assert.Skip("A CUDA device is present here.");
        string? before = Environment.GetEnvironmentVariable("CONVNET_CUDA_PATH");
        try
        {
            Environment.SetEnvironmentVariable("CONVNET_CUDA_PATH", null);
            var e = Assert.Throws<BackendUnavailableException>(() => BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cuda }));
            Assert.Contains("the system library path", e.Message);
            Assert.Contains("set CONVNET_CUDA_PATH", e.Message);
        }
        finally { Environment.SetEnvironmentVariable("CONVNET_CUDA_PATH", before); }
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(null, -1)]
    public void Bad_options_name_the_option(int? maxThreads, int device)
    {
        var e = Assert.ThrowsAny<ArgumentOutOfRangeException>(() => BackendFactory.Create(new BackendOptions { MaxThreads = maxThreads, DeviceIndex = device }));
        Assert.Contains(maxThreads == 0 ? "MaxThreads" : "DeviceIndex", e.Message);
    }

    /// <summary>
    /// Every kernel the CUDA backend launches by name exists in its CUDA C sources: a misspelt name would otherwise
    /// fail only on a GPU (cuModuleGetFunction), where runs are rare.
    /// </summary>
    [Fact]
    public void Every_launched_cuda_kernel_is_defined_in_the_kernel_sources()
    {
        string source = CudaKernels.Source();
        var defined = Regex.Matches(source, @"extern\s+""C""\s+__global__\s+void\s+(\w+)\s*\(").Select(m => m.Groups[1].Value).ToHashSet();
        string dir = Path.Combine(RepoRoot(), "src", "Core", "Backends", "Cuda");
        var launched = Directory.GetFiles(dir, "*.cs").SelectMany(f => Regex.Matches(File.ReadAllText(f), @"Launch(?:2D)?\(\s*""(\w+)""").Select(m => (File: Path.GetFileName(f), Name: m.Groups[1].Value))).ToList();
        var missing = launched.Where(l => !defined.Contains(l.Name)).Select(l => $"{l.Name} ({l.File})").Distinct().ToList();
        Assert.True(missing.Count == 0, "Launched but not defined in Kernels/*.cu: " + string.Join(", ", missing));
    }

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "MLNet.ConvNet.sln"))) return d.FullName;
        throw new InvalidOperationException("MLNet.ConvNet.sln not found above " + AppContext.BaseDirectory);
    }
}
