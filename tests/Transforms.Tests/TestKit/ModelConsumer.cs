using System.Diagnostics;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests.TestKit;

/// <summary>
/// Runs tests/ModelConsumer (a console referencing only Microsoft.ML, Microsoft.ML.OnnxTransformer and ONNX Runtime)
/// in a separate process on a saved model: what a user's app without our assemblies would see.
/// </summary>
public static class ModelConsumer
{
    /// <summary>The consumer's dll, built beside this test project with the same configuration and framework.</summary>
    public static string DllPath
    {
        get
        {
            // AppContext.BaseDirectory is tests/Transforms.Tests/bin/<configuration>/<framework>/.
            var framework = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            var configuration = framework.Parent!;
            var tests = configuration.Parent!.Parent!.Parent!;
            return Path.Combine(tests.FullName, "ModelConsumer", "bin", configuration.Name, framework.Name, "MLNet.ConvNet.ModelConsumer.dll");
        }
    }

    /// <summary>Loads <paramref name="modelPath"/> in a new process, transforms <paramref name="rows"/>, returns the output column and the assemblies it loaded.</summary>
    public static (float[][] Rows, int[] Dims, string[] Assemblies, string ModelType) Run(string modelPath, float[][] rows, int[] dims, string inputColumn, string outputColumn)
    {
        Assert.True(File.Exists(DllPath), $"{DllPath} is missing; it is built with this test project.");
        string input = Path.GetTempFileName(), output = Path.GetTempFileName();
        try
        {
            using (var w = new BinaryWriter(File.Create(input)))
            {
                w.Write(rows.Length); w.Write(dims.Length);
                foreach (int d in dims) w.Write(d);
                foreach (var row in rows) foreach (float v in row) w.Write(v);
            }
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { DllPath, modelPath, input, output, inputColumn, outputColumn }) start.ArgumentList.Add(a);
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            Assert.True(process.WaitForExit(120_000), "the consumer process did not finish in 120 s");
            Assert.True(process.ExitCode == 0, $"consumer exit code {process.ExitCode}: {stderr.Result}{stdout.Result}");
            var lines = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var assemblies = lines.Where(l => l.StartsWith("assembly: ")).Select(l => l["assembly: ".Length..]).ToArray();
            string modelType = lines.Single(l => l.StartsWith("model: "))["model: ".Length..];
            using var r = new BinaryReader(File.OpenRead(output));
            int n = r.ReadInt32(), rank = r.ReadInt32();
            var outDims = Enumerable.Range(0, rank).Select(_ => r.ReadInt32()).ToArray();
            int size = outDims.Aggregate(1, (a, b) => a * b);
            var result = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, size).Select(_ => r.ReadSingle()).ToArray()).ToArray();
            return (result, outDims, assemblies, modelType);
        }
        finally
        {
            File.Delete(input);
            File.Delete(output);
        }
    }
}
