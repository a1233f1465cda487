using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// What <see cref="ConvNetExperiment.Execute"/> found: every trial, the best one and its model, and the leaderboard
/// as a console table (<see cref="ToTable"/>), CSV (<see cref="SaveCsv"/>) and JSON (<see cref="SaveJson"/>).
/// </summary>
public sealed class ConvNetExperimentResult
{
    internal ConvNetExperimentResult(IReadOnlyList<ExperimentTrial> trials, ExperimentTrial? best, ConvNetTransformer? model, string backend,
        string backendReason, TimeSpan elapsed, bool cancelled, bool budgetExhausted, IReadOnlyList<(string Network, string Reason)> excluded,
        int[] rungs, int trainRows, int validationRows, int? finalEpochs = null)
    {
        FinalEpochs = finalEpochs;
        Trials = trials; BestTrial = best; Model = model; Backend = backend; BackendReason = backendReason; Elapsed = elapsed;
        Cancelled = cancelled; BudgetExhausted = budgetExhausted; ExcludedNetworks = excluded; RungEpochs = rungs;
        TrainRows = trainRows; ValidationRows = validationRows;
    }

    /// <summary>Every trial, in the order they were started.</summary>
    public IReadOnlyList<ExperimentTrial> Trials { get; }

    /// <summary>The trial with the highest validation accuracy (the lowest number on ties); null when no trial finished an epoch.</summary>
    public ExperimentTrial? BestTrial { get; }

    /// <summary>
    /// The best trial's model (refitted on all the data when option RefitOnAllData was set, or from the final training
    /// when option FinalTrainingShare was and it fitted: see <see cref="FinalEpochs"/>); null when there is no best
    /// trial. It is a <see cref="ConvNetTransformer"/>: <c>mlContext.Model.Save</c> saves it like the trainer's.
    /// </summary>
    public ConvNetTransformer? Model { get; }

    /// <summary>The backend every trial ran on.</summary>
    public string Backend { get; }

    /// <summary>Why that backend.</summary>
    public string BackendReason { get; }

    /// <summary>Wall-clock time of Execute (reading, search, and refit).</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>True when the caller's cancellation token ended the search.</summary>
    public bool Cancelled { get; }

    /// <summary>True when option TimeBudget ended the search.</summary>
    public bool BudgetExhausted { get; }

    /// <summary>Networks of the search space that could not take the samples, with the reason; they were never tried.</summary>
    public IReadOnlyList<(string Network, string Reason)> ExcludedNetworks { get; }

    /// <summary>The epochs of each successive-halving rung.</summary>
    public IReadOnlyList<int> RungEpochs { get; }

    /// <summary>Epochs of the final training on all the rows (option FinalTrainingShare) that gave <see cref="Model"/>; null when there was none.</summary>
    public int? FinalEpochs { get; }

    /// <summary>Rows the trials trained on.</summary>
    public int TrainRows { get; }

    /// <summary>Rows of the holdout the trials were scored on.</summary>
    public int ValidationRows { get; }

    /// <summary>The trials ranked: by validation accuracy (highest first), then those without a score, failed ones last; ties by number.</summary>
    public IReadOnlyList<ExperimentTrial> Leaderboard =>
        Trials.OrderBy(t => t.HasScore ? 0 : t.Status == TrialStatus.Failed ? 2 : 1)
              .ThenByDescending(t => t.HasScore ? t.ValidationAccuracy : double.NegativeInfinity)
              .ThenBy(t => t.Id).ToArray();

    private static readonly string[] Header =
        ["rank", "trial", "status", "network", "optimizer", "learning_rate", "schedule", "batch_size", "label_smoothing", "flip", "crop_padding",
         "epochs", "rung", "validation_accuracy", "validation_loss", "train_loss", "seconds", "started_at_s", "parameters", "backend", "seed", "error"];

    private static string[] Row(int rank, ExperimentTrial t)
    {
        var s = t.Settings;
        string F(double v, string format) => double.IsNaN(v) ? "" : v.ToString(format, CultureInfo.InvariantCulture);
        return [rank.ToString(CultureInfo.InvariantCulture), t.Id.ToString(CultureInfo.InvariantCulture), t.Status.ToString(), s.NetworkName,
            s.Optimizer.ToString(), s.LearningRate.ToString("G3", CultureInfo.InvariantCulture), s.Schedule.ToString(),
            s.BatchSize.ToString(CultureInfo.InvariantCulture), s.LabelSmoothing.ToString(CultureInfo.InvariantCulture), s.HorizontalFlip ? "1" : "0",
            s.CropPadding.ToString(CultureInfo.InvariantCulture), t.Epochs.ToString(CultureInfo.InvariantCulture), t.Rung.ToString(CultureInfo.InvariantCulture),
            F(t.ValidationAccuracy, "F4"), F(t.ValidationLoss, "F4"), t.Points.Count == 0 ? "" : F(t.Points[^1].TrainLoss, "F4"),
            F(t.Seconds, "F1"), F(t.StartedAt, "F1"), t.Parameters.ToString(CultureInfo.InvariantCulture), t.Backend,
            t.Seed.ToString(CultureInfo.InvariantCulture), t.Error ?? ""];
    }

    /// <summary>The leaderboard as a fixed-width text table (the columns of <see cref="SaveCsv"/> but the error cut to 60 characters).</summary>
    public string ToTable()
    {
        var rows = Leaderboard.Select((t, i) => Row(i + 1, t)).Select(r => { r[^1] = r[^1].Length > 60 ? r[^1][..57] + "..." : r[^1]; return r; }).ToList();
        string[] shown = ["rank", "trial", "status", "network", "optimizer", "learning_rate", "schedule", "batch_size", "label_smoothing", "flip",
            "crop_padding", "epochs", "validation_accuracy", "seconds", "error"];
        int[] columns = shown.Select(h => Array.IndexOf(Header, h)).ToArray();
        string[] titles = ["#", "trial", "status", "network", "optimizer", "lr", "schedule", "batch", "smooth", "flip", "crop", "epochs", "val acc", "seconds", "error"];
        var widths = columns.Select((c, j) => Math.Max(titles[j].Length, rows.Count == 0 ? 0 : rows.Max(r => r[c].Length))).ToArray();
        var sb = new StringBuilder();
        sb.AppendLine(string.Join("  ", titles.Select((h, j) => h.PadRight(widths[j]))).TrimEnd());
        sb.AppendLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var r in rows) sb.AppendLine(string.Join("  ", columns.Select((c, j) => r[c].PadRight(widths[j]))).TrimEnd());
        return sb.ToString();
    }

    /// <summary>Writes the leaderboard as CSV (a header line, then one line per trial in rank order; RFC 4180 quoting).</summary>
    public void SaveCsv(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        static string Quote(string v) => v.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + v.Replace("\"", "\"\"") + "\"" : v;
        var sb = new StringBuilder();
        sb.AppendLine(string.Join(",", Header));
        foreach (var (t, i) in Leaderboard.Select((t, i) => (t, i)))
            sb.AppendLine(string.Join(",", Row(i + 1, t).Select(Quote)));
        File.WriteAllText(path, sb.ToString());
    }

    /// <summary>
    /// Writes the experiment as JSON: backend, budget outcome, rungs, excluded networks, the best trial's number, and per
    /// trial (rank order) its settings, status, figures, time, error and every epoch's point (for plotting).
    /// </summary>
    public void SaveJson(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var document = new
        {
            backend = Backend, backendReason = BackendReason, elapsedSeconds = Elapsed.TotalSeconds, cancelled = Cancelled,
            budgetExhausted = BudgetExhausted, rungEpochs = RungEpochs, trainRows = TrainRows, validationRows = ValidationRows,
            bestTrial = BestTrial?.Id,
            excludedNetworks = ExcludedNetworks.Select(e => new { network = e.Network, reason = e.Reason }),
            trials = Leaderboard.Select((t, i) => new
            {
                rank = i + 1, trial = t.Id, status = t.Status.ToString(),
                settings = new
                {
                    network = t.Settings.NetworkName, architecture = t.Settings.Architecture, depth = t.Settings.Depth, width = t.Settings.Width,
                    batchNorm = t.Settings.BatchNorm, dropout = t.Settings.Dropout, optimizer = t.Settings.Optimizer.ToString(),
                    learningRate = t.Settings.LearningRate, schedule = t.Settings.Schedule.ToString(), batchSize = t.Settings.BatchSize,
                    labelSmoothing = t.Settings.LabelSmoothing, horizontalFlip = t.Settings.HorizontalFlip, cropPadding = t.Settings.CropPadding,
                },
                epochs = t.Epochs, rung = t.Rung, validationAccuracy = Finite(t.ValidationAccuracy), validationLoss = Finite(t.ValidationLoss),
                seconds = t.Seconds, startedAt = t.StartedAt, parameters = t.Parameters, backend = t.Backend, seed = t.Seed, error = t.Error,
                points = t.Points.Select(p => new { epoch = p.Epoch, experimentSeconds = p.ExperimentSeconds, validationAccuracy = Finite(p.ValidationAccuracy),
                    validationLoss = Finite(p.ValidationLoss), trainLoss = Finite(p.TrainLoss) }),
            }),
        };
        File.WriteAllText(path, JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>JSON has no NaN: null instead.</summary>
    private static double? Finite(double v) => double.IsFinite(v) ? v : null;
}
