using Xunit;

namespace MLNet.ConvNet.Distributed.Tests;

/// <summary>Reading the launcher's environment (no MPI started).</summary>
public sealed class LaunchTests
{
    [Fact]
    public void MpichsVariablesGiveRankAndSize()
    {
        var env = new Dictionary<string, string> { ["PMI_RANK"] = "1", ["PMI_SIZE"] = "4" };
        Assert.Equal(new MpiLaunch(MpiLauncher.Pmi, 1, 4), MpiLaunch.Detect(env.GetValueOrDefault));
    }

    [Fact]
    public void OpenMpisVariablesAreRecognised()
    {
        var env = new Dictionary<string, string> { ["OMPI_COMM_WORLD_RANK"] = "0", ["OMPI_COMM_WORLD_SIZE"] = "2" };
        Assert.Equal(MpiLauncher.OpenMpi, MpiLaunch.Detect(env.GetValueOrDefault).Launcher);
    }

    [Fact]
    public void NoVariablesMeanOneProcess()
    {
        var launch = MpiLaunch.Detect(_ => null);
        Assert.Equal((MpiLauncher.None, 0, 1), (launch.Launcher, launch.Rank, launch.Size));
        Assert.True(launch.IsRankZero);
    }

    [Fact]
    public void InconsistentVariablesAreAnError()
    {
        var env = new Dictionary<string, string> { ["PMI_RANK"] = "2", ["PMI_SIZE"] = "2" };
        var e = Assert.Throws<InvalidOperationException>(() => MpiLaunch.Detect(env.GetValueOrDefault));
        Assert.Contains("PMI_RANK = '2'", e.Message);
    }
}
