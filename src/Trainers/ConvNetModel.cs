using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// A saved ConvNet model (the model.zip that <c>mlContext.Model.Save</c> writes) loaded for serving: it scores exactly as
/// the model <c>mlContext.Model.Load</c> returns, and it keeps working whatever PredictionEngines over it are created and
/// disposed. Load with <see cref="Load(MLContext, string, out DataViewSchema)"/>; score from many threads with
/// <see cref="CreatePredictor{TIn, TOut}"/>.
/// </summary>
/// <remarks>
/// <para>Why this class: a ConvNet model is saved as ML.NET's own OnnxTransformer (ML.NET cannot save a third-party
/// transformer; see <see cref="ConvNetTransformer"/>), and ML.NET's PredictionEngine disposes the model it was made over
/// when the engine is disposed (<c>PredictionEngineOptions.OwnsTransformer</c> is true by default;
/// dotnet/machinelearning#5945). So after <c>using var engine = mlContext.Model.CreatePredictionEngine(loaded)</c> the
/// model that <c>Model.Load</c> returned has lost its ONNX Runtime session, and every later <c>Transform</c> or engine
/// fails. This class wraps that model and is deliberately not <see cref="IDisposable"/>, so an engine finds nothing to
/// dispose. The application frees the ONNX Runtime session with <see cref="Unload"/> when it is done with the model (or
/// leaves it to the process's end).</para>
/// <para>An application that loads with ML.NET alone (no reference to this library) gets the same safety by creating
/// its engines with <c>new PredictionEngineOptions { OwnsTransformer = false }</c>, or by never disposing them.</para>
/// <para>Loading errors are reported here, at the top: a missing file is a <see cref="FileNotFoundException"/>, and a
/// file ML.NET cannot read (corrupted, truncated, not a model.zip) an <see cref="InvalidDataException"/> naming it and
/// the innermost cause, instead of ML.NET's "Error during class instantiation" with the cause several levels down.</para>
/// </remarks>
public sealed class ConvNetModel : ITransformer
{
    private readonly MLContext _ml;
    private readonly ITransformer _inner;
    private readonly string _source;
    private bool _unloaded;

    private ConvNetModel(MLContext ml, ITransformer inner, DataViewSchema inputSchema, string source)
    {
        _ml = ml; _inner = inner; InputSchema = inputSchema; _source = source;
    }

    /// <summary>Wraps an in-memory ML.NET model the same way (the fitted transformer's ONNX twin).</summary>
    internal static ConvNetModel Wrap(MLContext ml, ITransformer model, DataViewSchema inputSchema, string source) => new(ml, model, inputSchema, source);

    /// <summary>
    /// Loads the model saved at <paramref name="path"/> by <c>mlContext.Model.Save</c> (a ConvNet pipeline, or any ML.NET
    /// model). <paramref name="inputSchema"/> is the schema the model was saved with, as <c>Model.Load</c> gives it.
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a readable ML.NET model; the message names it and the cause.</exception>
    public static ConvNetModel Load(MLContext mlContext, string path, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"ConvNetModel.Load: there is no model file at '{Path.GetFullPath(path)}'.", path);
        using var stream = File.OpenRead(path);
        return Load(mlContext, stream, out inputSchema, $"'{Path.GetFullPath(path)}'");
    }

    /// <summary>Loads a model saved by <c>mlContext.Model.Save</c> from <paramref name="stream"/> (see the other overload).</summary>
    /// <exception cref="InvalidDataException">The stream does not hold a readable ML.NET model; the message names the cause.</exception>
    public static ConvNetModel Load(MLContext mlContext, Stream stream, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(stream);
        return Load(mlContext, stream, out inputSchema, "the stream");
    }

    private static ConvNetModel Load(MLContext ml, Stream stream, out DataViewSchema inputSchema, string source)
    {
        ITransformer inner;
        try { inner = ml.Model.Load(stream, out inputSchema); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var cause = Innermost(e);
            if (cause is DllNotFoundException)
                throw new InvalidOperationException($"ConvNetModel.Load: {source} needs ONNX Runtime's native library, which could not be " +
                    $"loaded ({cause.Message}). Reference the NuGet package Microsoft.ML.OnnxRuntime (docs/deployment.md says which version).", e);
            throw new InvalidDataException($"ConvNetModel.Load: {source} is not a model ML.NET can load (is it a model.zip written by " +
                $"mlContext.Model.Save, complete and not corrupted?). Cause: {cause.GetType().Name}: {cause.Message}", e);
        }
        return new ConvNetModel(ml, inner, inputSchema, source);
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner) e = inner;
        return e;
    }

    /// <summary>The input schema the model was saved with (what <c>Model.Load</c>'s <c>out</c> parameter gives).</summary>
    public DataViewSchema InputSchema { get; }

    /// <summary>Whether the model maps row to row (a ConvNet model does: PredictionEngine works).</summary>
    public bool IsRowToRowMapper => Live.IsRowToRowMapper;

    /// <summary>The output schema for <paramref name="inputSchema"/>: its columns plus the model's (Score, PredictedLabel, ...).</summary>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Live.GetOutputSchema(inputSchema);

    /// <summary>Scores <paramref name="input"/> lazily, as the loaded ML.NET model does.</summary>
    public IDataView Transform(IDataView input) => Live.Transform(input);

    /// <summary>The row-to-row mapper a PredictionEngine uses.</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => Live.GetRowToRowMapper(inputSchema);

    /// <summary>Saves the loaded ML.NET model unchanged (<c>mlContext.Model.Save</c> calls this).</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)Live).Save(ctx);

    /// <summary>
    /// A predictor that many threads may call at once (a web app's request handlers), over this model; see
    /// <see cref="ThreadSafePredictor{TIn, TOut}"/>. Dispose it when done; the model stays usable.
    /// </summary>
    public ThreadSafePredictor<TIn, TOut> CreatePredictor<TIn, TOut>() where TIn : class where TOut : class, new() => new(_ml, this);

    /// <summary>
    /// Frees the model's ONNX Runtime session (and ML.NET's temporary copy of the ONNX file) now. The model cannot score
    /// afterwards (an <see cref="ObjectDisposedException"/>). This is the model's owner's call, which is why the class is
    /// not <see cref="IDisposable"/>: a PredictionEngine disposes an IDisposable model with itself.
    /// </summary>
    public void Unload()
    {
        if (_unloaded) return;
        _unloaded = true;
        (_inner as IDisposable)?.Dispose();
    }

    private ITransformer Live => _unloaded
        ? throw new ObjectDisposedException(nameof(ConvNetModel), $"The model loaded from {_source} was unloaded (ConvNetModel.Unload); load it again to score.")
        : _inner;
}
