namespace MLNet.ConvNet.Trainers;

/// <summary>
/// An experiment's trials as a PNG drawn with ScottPlot: validation accuracy against the experiment's wall-clock time,
/// one line per trial (a point per epoch), the best trial drawn thicker.
/// </summary>
public static class ExperimentPlot
{
    /// <summary>Draws every trial of <paramref name="result"/> that finished an epoch and writes the PNG to <paramref name="path"/>.</summary>
    public static void SavePng(ConvNetExperimentResult result, string path, int width = 1000, int height = 600, string title = "ConvNet experiment: validation accuracy against time")
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 100);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 100);
        var drawn = result.Trials.Where(t => t.Points.Any(p => double.IsFinite(p.ValidationAccuracy))).ToList();
        if (drawn.Count == 0) throw new ArgumentException("No trial finished an epoch: there is nothing to draw.", nameof(result));

        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        foreach (var t in drawn)
        {
            var points = t.Points.Where(p => double.IsFinite(p.ValidationAccuracy)).ToArray();
            // A line from the trial's start (no accuracy yet) would mislead; the points start at its first epoch.
            var s = plot.Add.Scatter(points.Select(p => p.ExperimentSeconds).ToArray(), points.Select(p => p.ValidationAccuracy).ToArray(), palette.GetColor(t.Id - 1));
            bool best = ReferenceEquals(t, result.BestTrial);
            s.LineWidth = best ? 3 : 1;
            s.MarkerSize = best ? 8 : 6;
            s.LegendText = best ? $"best: trial {t.Id} {t.Settings.NetworkName}" : "";
        }
        plot.Title(title);
        plot.XLabel("seconds since the experiment started");
        plot.YLabel("validation accuracy (holdout)");
        plot.ShowLegend(ScottPlot.Edge.Bottom);
        plot.SavePng(path, width, height);
    }
}
