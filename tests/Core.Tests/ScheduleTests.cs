using MLNet.ConvNet.Optimizers;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class ScheduleTests
{
    [Theory]
    [InlineData(0.0, 1.0)]
    [InlineData(2.99, 1.0)]
    [InlineData(3.0, 0.5)]
    [InlineData(5.5, 0.5)]
    [InlineData(6.0, 0.25)]
    [InlineData(9.1, 0.125)]
    public void StepHalvesEveryThreeEpochs(double epoch, double factor) =>
        Assert.Equal(factor, new StepSchedule(3, 0.5).Factor(epoch), 12);

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(2.5)]
    [InlineData(5.0)]
    [InlineData(7.0)]
    public void CosineFollowsHalfACosineThenStaysAtTheMinimum(double epoch)
    {
        var s = new CosineSchedule(5, minFactor: 0.1);
        double t = Math.Min(epoch / 5, 1);
        Assert.Equal(0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * t)), s.Factor(epoch), 12);
        Assert.Equal(1.0, s.Factor(0), 12);
        Assert.Equal(0.1, s.Factor(5), 12);
        Assert.Equal(0.55, s.Factor(2.5), 12);
    }

    [Theory]
    [InlineData(0.0, 0.2)]
    [InlineData(0.5, 0.6)]
    [InlineData(0.75, 0.8)]
    [InlineData(1.0, 1.0)]
    [InlineData(3.0, 1.0)]
    public void WarmupRampsLinearlyToOne(double epoch, double factor) =>
        Assert.Equal(factor, new WarmupSchedule(1.0, startFactor: 0.2).Factor(epoch), 12);

    [Fact]
    public void WarmupMultipliesTheInnerSchedule()
    {
        var s = new WarmupSchedule(2, new CosineSchedule(10), startFactor: 0);
        Assert.Equal(0.0, s.Factor(0), 12);
        double cos1 = 0.5 * (1 + Math.Cos(Math.PI * 0.1));
        Assert.Equal(0.5 * cos1, s.Factor(1), 12);
        double cos4 = 0.5 * (1 + Math.Cos(Math.PI * 0.4));
        Assert.Equal(cos4, s.Factor(4), 12);
        Assert.Equal(0.003 * cos4, s.Rate(0.003, 4), 12);
    }

    [Fact]
    public void ConstantIsOne() => Assert.Equal(1.0, new ConstantSchedule().Factor(123.4));

    [Fact]
    public void BadArgumentsThrowNamingThem()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new StepSchedule(0));
        Assert.Equal("gamma", Assert.Throws<ArgumentOutOfRangeException>(() => new StepSchedule(2, 0)).ParamName);
        Assert.Equal("totalEpochs", Assert.Throws<ArgumentOutOfRangeException>(() => new CosineSchedule(0)).ParamName);
        Assert.Equal("minFactor", Assert.Throws<ArgumentOutOfRangeException>(() => new CosineSchedule(3, 1.5)).ParamName);
        Assert.Equal("warmupEpochs", Assert.Throws<ArgumentOutOfRangeException>(() => new WarmupSchedule(-1)).ParamName);
        Assert.Equal("startFactor", Assert.Throws<ArgumentOutOfRangeException>(() => new WarmupSchedule(1, startFactor: double.NaN)).ParamName);
    }
}
