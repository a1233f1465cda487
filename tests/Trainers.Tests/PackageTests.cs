using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>
/// The packages a user installs: `dotnet pack` of the solution gives exactly the libraries of src/, each with the one
/// version of Directory.Build.props, a description, authors, the MIT licence expression, the README, repository type,
/// XML docs and a symbols package; and a consumer built from a local feed of them (referencing MLNet.ConvNet.Trainers
/// only) loads a saved model and scores it as ML.NET does in this process.
/// </summary>
/// <remarks>
/// Offline and isolated: the feed is a temporary folder, the packages get a version suffix of their own (NuGet caches a
/// package by id and version, so a fixed version would be answered from a stale copy), the consumer restores into its
/// own packages folder, and the other packages (ML.NET, ONNX Runtime) come from this machine's NuGet cache, where the
/// solution's restore put them, as a fallback folder.
/// </remarks>
public sealed class PackageTests
{
    private static readonly string Root = FindRoot();
    private static readonly string Configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;

    [Fact]
    public void Packed_libraries_install_from_a_local_feed_and_score_a_saved_model()
    {
        string work = Tiny.TempDirectory();
        try
        {
            string feed = Directory.CreateDirectory(Path.Combine(work, "feed")).FullName;
            string suffix = $"test.x{Guid.NewGuid():N}"[..16];
            string version = $"{VersionPrefix()}-{suffix}";

            // 1. Pack what the solution build made (no rebuild): only src/ is packable. A library this test project does
            //    not depend on is built first when this project was built alone.
            foreach (var project in SourceProjects())
                if (!File.Exists(Path.Combine(Path.GetDirectoryName(project.Path)!, "bin", Configuration, "net10.0", project.Id + ".dll")))
                    Run("dotnet", ["build", project.Path, "-c", Configuration, "-nodeReuse:false"], Root, timeoutSeconds: 600);
            Run("dotnet", ["pack", Path.Combine(Root, "MLNet.ConvNet.sln"), "-c", Configuration, "--no-build", "--no-restore",
                "--version-suffix", suffix, "-o", feed, "-nodeReuse:false"], Root, timeoutSeconds: 240);
            CheckPackages(feed, version);

            // 2. A saved model, and what ML.NET in this process makes of it.
            var ml = new MLContext(seed: 1);
            var data = Tiny.Data(ml, 300);
            var model = ml.MulticlassClassification.Trainers.ConvNet(Tiny.Options()).Fit(data);
            string zip = Path.Combine(work, "model.zip");
            ml.Model.Save(model, data.Schema, zip);
            var rows = FashionData.TestRows(40);
            var expected = ml.Model.Load(zip, out _).Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").ToArray();

            // 3. The consumer: its own folder, packages folder and NuGet.config (the feed; this machine's cache as fallback).
            string app = Directory.CreateDirectory(Path.Combine(work, "app")).FullName;
            File.Copy(Path.Combine(Root, "tests", "PackageConsumer", "Program.cs"), Path.Combine(app, "Program.cs"));
            File.WriteAllText(Path.Combine(app, "PackageConsumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="MLNet.ConvNet.Trainers" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "NuGet.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="local-feed" value="{feed}" />
                  </packageSources>
                  <fallbackPackageFolders>
                    <clear />
                    <add key="machine-cache" value="{GlobalPackagesFolder()}" />
                  </fallbackPackageFolders>
                </configuration>
                """);
            var env = new Dictionary<string, string> { ["NUGET_PACKAGES"] = Path.Combine(work, "packages") };
            Run("dotnet", ["build", app, "-c", "Release", "--disable-build-servers", "-nodeReuse:false"], app, timeoutSeconds: 300, env);
            // The package just packed was restored, not a cached copy of another build.
            Assert.True(Directory.Exists(Path.Combine(work, "packages", "mlnet.convnet.trainers", version)), "MLNet.ConvNet.Trainers was not restored from the local feed");

            // 4. Score the rows in the consumer; its scores equal ML.NET's in this process (the same graph in the same ONNX Runtime).
            string input = Path.Combine(work, "rows.bin"), output = Path.Combine(work, "scores.bin");
            using (var w = new BinaryWriter(File.Create(input)))
            {
                w.Write(rows.Length);
                foreach (var row in rows) foreach (float v in row.Features) w.Write(v);
            }
            string stdout = Run("dotnet", [Path.Combine(app, "bin", "Release", "net10.0", "PackageConsumer.dll"), zip, input, output], app, timeoutSeconds: 120);
            Assert.Contains(Path.Combine(app, "bin"), stdout); // it ran with the packaged assembly copied into its output
            using var r = new BinaryReader(File.OpenRead(output));
            int n = r.ReadInt32(), k = r.ReadInt32();
            Assert.Equal(rows.Length, n);
            Assert.Equal(10, k);
            for (int i = 0; i < n; i++)
                Assert.Equal(expected[i], Enumerable.Range(0, k).Select(_ => r.ReadSingle()).ToArray());
        }
        finally { Directory.Delete(work, recursive: true); }
    }

    /// <summary>One .nupkg and one .snupkg per src/ library and nothing else, each with its metadata, docs and symbols.</summary>
    private static void CheckPackages(string feed, string version)
    {
        var expectedIds = SourceProjects().Select(p => p.Id).Order().ToArray();
        var packages = Directory.GetFiles(feed, "*.nupkg").Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(expectedIds.Select(id => $"{id}.{version}.nupkg"), packages);
        Assert.Equal(expectedIds.Select(id => $"{id}.{version}.snupkg"), Directory.GetFiles(feed, "*.snupkg").Select(Path.GetFileName).Order());

        foreach (var id in expectedIds)
        {
            using var package = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.nupkg"));
            var files = package.Entries.Select(e => e.FullName).ToArray();
            XDocument nuspec;
            using (var s = package.GetEntry($"{id}.nuspec")!.Open()) nuspec = XDocument.Load(s);
            string Get(string name) => nuspec.Descendants().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
            var metadata = nuspec.Descendants().Single(e => e.Name.LocalName == "metadata");

            Assert.Equal(version, Get("version"));
            Assert.True(Get("description").Length > 40 && Get("description") != "Package Description", $"{id}: description '{Get("description")}'");
            Assert.Equal("MLNet.ConvNet contributors", Get("authors"));
            var license = metadata.Elements().Single(e => e.Name.LocalName == "license");
            Assert.Equal(("expression", "MIT"), ((string?)license.Attribute("type"), license.Value));
            Assert.Equal("README.md", Get("readme"));
            Assert.Contains("README.md", files);
            Assert.Equal("git", (string?)metadata.Elements().Single(e => e.Name.LocalName == "repository").Attribute("type"));
            Assert.Contains($"lib/net10.0/{id}.dll", files);
            Assert.Contains($"lib/net10.0/{id}.xml", files); // the XML docs: IntelliSense for users

            using var symbols = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.snupkg"));
            Assert.Contains($"lib/net10.0/{id}.pdb", symbols.Entries.Select(e => e.FullName));
        }

        // The libraries that load or save a model carry ONNX Runtime (native libraries included), so a consumer needs no
        // package beyond ours; the engine's dependencies are its own packages at the same version.
        foreach (var id in new[] { "MLNet.ConvNet.Trainers", "MLNet.ConvNet.Transforms" })
        {
            using var package = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.nupkg"));
            XDocument nuspec;
            using (var s = package.GetEntry($"{id}.nuspec")!.Open()) nuspec = XDocument.Load(s);
            var dependencies = nuspec.Descendants().Where(e => e.Name.LocalName == "dependency")
                .ToDictionary(e => (string)e.Attribute("id")!, e => (string)e.Attribute("version")!);
            Assert.Contains("Microsoft.ML.OnnxRuntime", dependencies.Keys);
            Assert.Equal(version, dependencies["MLNet.ConvNet.Core"]);
        }
    }

    /// <summary>The libraries under src/: each project file and its assembly name (= the package id).</summary>
    private static (string Path, string Id)[] SourceProjects() =>
        Directory.GetFiles(Path.Combine(Root, "src"), "*.csproj", SearchOption.AllDirectories)
            .Select(p => (p, XDocument.Load(p).Descendants("AssemblyName").Single().Value)).ToArray();

    private static string VersionPrefix() =>
        XDocument.Load(Path.Combine(Root, "Directory.Build.props")).Descendants("VersionPrefix").Single().Value;

    /// <summary>This machine's NuGet packages folder (where the solution's restore put ML.NET and ONNX Runtime).</summary>
    private static string GlobalPackagesFolder()
    {
        string line = Run("dotnet", ["nuget", "locals", "global-packages", "--list"], Root, timeoutSeconds: 60)
            .Split('\n').Single(l => l.StartsWith("global-packages:", StringComparison.Ordinal));
        return line["global-packages:".Length..].Trim();
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "MLNet.ConvNet.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException($"No MLNet.ConvNet.sln above {AppContext.BaseDirectory}.");
    }

    /// <summary>Runs a command; returns its output, or fails the test with it.</summary>
    private static string Run(string file, string[] args, string directory, int timeoutSeconds, Dictionary<string, string>? env = null)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        // The test host's MSBuild settings must not leak into the child's build.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToArray()) start.Environment.Remove(key);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in env ?? []) start.Environment[k] = v;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"'{file} {string.Join(' ', args)}' did not finish in {timeoutSeconds} s: {stdout.Result}{stderr.Result}");
        }
        Assert.True(process.ExitCode == 0, $"'{file} {string.Join(' ', args)}' exited with {process.ExitCode}:\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }
}
