using MLNet.ConvNet.Training;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// The training curve as a PNG drawn with ScottPlot: loss per epoch on the left axis, accuracy on the right, for the
/// training data and, when there was any, the validation data.
/// </summary>
/// <remarks>
/// In its own assembly (MLNet.ConvNet.Trainers.Plotting) because ScottPlot 5.1 brings SkiaSharp 3, which
/// Microsoft.ML.ImageAnalytics 5.0.1 cannot run with: reference it from applications that do not load images
/// through ImageAnalytics, or plot <see cref="ConvNetTransformer.History"/> some other way.
/// </remarks>
public static class TrainingCurve
{
    /// <summary>Draws <paramref name="history"/> and writes it to <paramref name="path"/> as a PNG of <paramref name="width"/> x <paramref name="height"/> pixels.</summary>
    public static void SavePng(IReadOnlyList<EpochMetrics> history, string path, int width = 800, int height = 500, string title = "Training curve")
    {
        ArgumentNullException.ThrowIfNull(history);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (history.Count == 0) throw new ArgumentException("The history is empty: there is no epoch to draw.", nameof(history));
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 100);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 100);

        var plot = new ScottPlot.Plot();
        double[] epochs = history.Select(m => (double)m.Epoch).ToArray();
        void Line(Func<EpochMetrics, double> value, string legend, bool right, ScottPlot.LinePattern pattern, ScottPlot.Color color)
        {
            var s = plot.Add.Scatter(epochs, history.Select(value).ToArray(), color);
            s.LegendText = legend;
            s.LinePattern = pattern;
            s.MarkerSize = 6;
            if (right) s.Axes.YAxis = plot.Axes.Right;
        }
        var blue = ScottPlot.Colors.Blue;
        var orange = ScottPlot.Colors.DarkOrange;
        Line(m => m.TrainLoss, "train loss", false, ScottPlot.LinePattern.Solid, blue);
        Line(m => m.TrainAccuracy, "train accuracy", true, ScottPlot.LinePattern.Solid, orange);
        if (history.Any(m => m.HasValidation))
        {
            Line(m => m.ValidationLoss, "validation loss", false, ScottPlot.LinePattern.Dashed, blue);
            Line(m => m.ValidationAccuracy, "validation accuracy", true, ScottPlot.LinePattern.Dashed, orange);
        }
        plot.Title(title);
        plot.XLabel("epoch");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.YLabel("loss (cross-entropy)");
        plot.Axes.Right.Label.Text = "accuracy";
        plot.ShowLegend(ScottPlot.Edge.Bottom); // outside the data area, so it hides no point
        plot.SavePng(path, width, height);
    }

    /// <summary>Writes <paramref name="model"/>'s <see cref="ConvNetTransformer.History"/> as a PNG (see <see cref="SavePng"/>).</summary>
    public static void SaveTrainingCurve(this ConvNetTransformer model, string path, int width = 800, int height = 500, string title = "Training curve")
    {
        ArgumentNullException.ThrowIfNull(model);
        SavePng(model.History, path, width, height, title);
    }
}
