using System.Collections.Concurrent;
using Microsoft.ML;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Single-row predictions that many threads may ask for at once over one model (a web app's request handlers): a pool
/// of ML.NET PredictionEngines, one rented per <see cref="Predict"/> call and returned after it.
/// </summary>
/// <remarks>
/// <para>ML.NET's PredictionEngine is not thread-safe (it keeps the row it fills), and making one per request is slow
/// (it builds the row mapper each time). The pool holds at most one engine per call running at once, so it grows to the
/// number of threads that predict at the same moment and no further. The model itself is shared: a loaded ConvNet model
/// runs ONNX Runtime, whose session may run on several threads at once, and a fitted <see cref="ConvNetTransformer"/>
/// gives each forward pass its own copy of the network. Answers do not depend on which thread or engine computed them
/// (tested: parallel scoring gives the single-threaded outputs).</para>
/// <para>The engines are made with <c>PredictionEngineOptions.OwnsTransformer = false</c>, so disposing this predictor
/// (or one of its engines) never disposes the model: other predictors, engines and <c>Transform</c> over it keep working.</para>
/// <para>Keep one predictor for the application's life (e.g. a singleton in the web app's services) and dispose it at
/// shutdown, after the last <see cref="Predict"/>.</para>
/// </remarks>
/// <typeparam name="TIn">The input row class (its properties are the model's input columns).</typeparam>
/// <typeparam name="TOut">The output class (its properties are the output columns to read, e.g. Score and PredictedLabel).</typeparam>
public sealed class ThreadSafePredictor<TIn, TOut> : IDisposable where TIn : class where TOut : class, new()
{
    private readonly MLContext _ml;
    private readonly ITransformer _model;
    private readonly ConcurrentBag<PredictionEngine<TIn, TOut>> _idle = [];
    private readonly Lock _creating = new();
    private int _created;
    private volatile bool _disposed;

    /// <summary>
    /// A predictor over <paramref name="model"/> (a loaded <see cref="ConvNetModel"/>, a fitted pipeline, or any
    /// row-to-row ML.NET model). One engine is made here, so a mismatch between <typeparamref name="TIn"/>,
    /// <typeparamref name="TOut"/> and the model's columns fails now rather than at the first request.
    /// </summary>
    public ThreadSafePredictor(MLContext mlContext, ITransformer model)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(model);
        _ml = mlContext; _model = model;
        _idle.Add(CreateEngine());
    }

    /// <summary>The engines made so far: at most the largest number of <see cref="Predict"/> calls that ran at once (at least 1).</summary>
    public int EngineCount => Volatile.Read(ref _created);

    /// <summary>Scores one example; safe to call from many threads at once. Returns a new <typeparamref name="TOut"/> per call.</summary>
    public TOut Predict(TIn example)
    {
        ArgumentNullException.ThrowIfNull(example);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_idle.TryTake(out var engine)) engine = CreateEngine();
        try { return engine.Predict(example); }
        finally
        {
            if (_disposed) engine.Dispose();
            else _idle.Add(engine);
        }
    }

    /// <summary>Disposes the pooled engines (never the model). Call it after the last <see cref="Predict"/>.</summary>
    public void Dispose()
    {
        _disposed = true;
        while (_idle.TryTake(out var engine)) engine.Dispose();
    }

    private PredictionEngine<TIn, TOut> CreateEngine()
    {
        // MLContext is not documented as thread-safe for building engines, so engines are made one at a time.
        lock (_creating)
        {
            _created++;
            return _ml.Model.CreatePredictionEngine<TIn, TOut>(_model, new PredictionEngineOptions { OwnsTransformer = false });
        }
    }
}
