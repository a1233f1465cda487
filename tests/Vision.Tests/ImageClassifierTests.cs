using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Transforms.Image;
using MLNet.ConvNet.Trainers;
using Xunit;

namespace MLNet.ConvNet.Vision.Tests;

/// <summary>The one-call classifier on a folder of mixed files, and its whole-pipeline ONNX export run in ONNX Runtime.</summary>
public sealed class ImageClassifierTests
{
    private sealed class ImageInput
    {
        public string ImagePath { get; set; } = "";
    }

    private sealed class Prediction
    {
        public string PredictedClass { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    private static ImageClassifierOptions Options(int epochs = 6) => new()
    {
        Trainer = new ConvNetTrainer.Options { Network = "lenet5", Epochs = epochs, BatchSize = 8, Seed = 2, MaxThreads = 2 },
    };

    [Fact]
    public void A_folder_with_unreadable_files_trains_with_skip_and_report_and_the_saved_model_predicts()
    {
        using var images = TestImages.Create(perClass: 30, gray: false, withBadFiles: true);
        var ml = new MLContext(seed: 1);
        var loaded = ml.Data.LoadFromImageFolder(images.Folder);
        Assert.Equal(images.Bad.Count, loaded.Report.Rejected.Count);

        var model = ml.MulticlassClassification.Trainers.ConvNetImageClassifier(Options()).Fit(loaded.Data);
        Assert.Equal(ImageColorMode.Rgb, model.ColorMode);                       // half the images are tinted
        Assert.Equal((28, 28), (model.ImageWidth, model.ImageHeight));           // the most common size
        Assert.Equal(["horizontal", "vertical"], model.ClassNames);
        Assert.NotNull(model.HoldoutMetrics);
        // Stripes' direction is easy: far above chance (0.5) on images the network never saw.
        Assert.True(model.HoldoutMetrics!.MicroAccuracy >= 0.8, $"holdout accuracy {model.HoldoutMetrics.MicroAccuracy}");

        // Saved and loaded in a new context, a PredictionEngine needs only the path and agrees with the fitted model.
        string zip = Path.Combine(images.Folder, "model.zip");
        ml.Model.Save(model, loaded.Data.Schema, zip);
        var ml2 = new MLContext();
        var reloaded = ml2.Model.Load(zip, out _);
        var engine = ml2.Model.CreatePredictionEngine<ImageInput, Prediction>(reloaded);
        var fitted = ml.Model.CreatePredictionEngine<ImageInput, Prediction>(model);
        foreach (var g in images.Good.Where((_, i) => i % 7 == 0))
        {
            var a = fitted.Predict(new ImageInput { ImagePath = g.Path });
            var b = engine.Predict(new ImageInput { ImagePath = g.Path });
            Assert.Contains(a.PredictedClass, model.ClassNames);
            Assert.True(a.Score.Zip(b.Score).All(t => Math.Abs(t.First - t.Second) < 1e-4), $"{g.Path}: fitted [{string.Join(", ", a.Score)}] vs loaded [{string.Join(", ", b.Score)}]");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Exported_onnx_scores_raw_pixels_as_the_mlnet_pipeline_does(bool gray)
    {
        using var images = TestImages.Create(perClass: 12, gray: gray, withBadFiles: false);
        var ml = new MLContext(seed: 1);
        var loaded = ml.Data.LoadFromImageFolder(images.Folder);
        var model = ml.MulticlassClassification.Trainers.ConvNetImageClassifier(Options(epochs: 2)).Fit(loaded.Data);
        Assert.Equal(gray ? ImageColorMode.Gray : ImageColorMode.Rgb, model.ColorMode);
        int channels = gray ? 1 : 3, w = model.ImageWidth, h = model.ImageHeight;

        // The ML.NET pipeline's scores, and the raw pixels (0..255) of the same resized images, read with ML.NET's own
        // image transforms: what a deployment feeds the ONNX model.
        var scored = model.Transform(loaded.Data);
        var scores = scored.GetColumn<float[]>("Score").Select(s => s.ToArray()).ToArray();
        IEstimator<ITransformer> raw = ml.Transforms.LoadImages("I", "", "ImagePath").Append(ml.Transforms.ResizeImages("I", w, h, resizing: model.Resizing));
        if (gray) raw = raw.Append(ml.Transforms.ConvertToGrayscale("I"));
        raw = raw.Append(ml.Transforms.ExtractPixels("Raw", "I", gray ? ImagePixelExtractingEstimator.ColorBits.Red : ImagePixelExtractingEstimator.ColorBits.Rgb));
        var pixels = raw.Fit(loaded.Data).Transform(loaded.Data).GetColumn<float[]>("Raw").Select(p => p.ToArray()).ToArray();
        Assert.Equal(scores.Length, pixels.Length);
        Assert.InRange(pixels.SelectMany(p => p).Max(), 100f, 255f);               // really raw pixels, not normalised ones

        using var stream = new MemoryStream();
        model.ExportOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        var batch = pixels.SelectMany(p => p).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(batch, [pixels.Length, channels, h, w]);
        using var outputs = session.Run(new RunOptions(), ["image"], [input], ["Score", "PredictedClassIndex"]);
        var ort = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        var index = outputs[1].GetTensorDataAsSpan<long>().ToArray();
        double worst = 0;
        for (int r = 0; r < scores.Length; r++)
            for (int k = 0; k < 2; k++)
                worst = Math.Max(worst, Math.Abs(scores[r][k] - ort[r * 2 + k]));
        Assert.True(worst <= 1e-5, $"largest |ML.NET - ONNX Runtime| score difference {worst}");
        var predicted = scored.GetColumn<string>("PredictedClass").ToArray();
        for (int r = 0; r < scores.Length; r++)
            if (Math.Abs(scores[r][0] - scores[r][1]) > 1e-4) Assert.Equal(predicted[r], model.ClassNames[(int)index[r]]);

        // The metadata a deployment needs, read back by ONNX Runtime.
        var meta = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal(model.ClassNames, JsonSerializer.Deserialize<string[]>(meta[PipelineOnnx.ClassNamesKey])!);
        Assert.Equal([channels, h, w], JsonSerializer.Deserialize<int[]>(meta["input_shape"])!);
        Assert.Equal(gray ? "gray" : "rgb", meta["color_mode"]);
        Assert.Equal(model.ChannelMean, JsonSerializer.Deserialize<float[]>(meta["normalization_offset"]));
        Assert.Equal(model.ChannelStd.Select(s => 1f / s), JsonSerializer.Deserialize<float[]>(meta["normalization_scale"]));
        Assert.Equal(w.ToString(), meta["image_width"]);
    }

    [Fact]
    public void Channel_statistics_are_those_of_the_resized_training_pixels()
    {
        using var images = TestImages.Create(perClass: 8, gray: false, withBadFiles: false);
        var ml = new MLContext(seed: 1);
        var loaded = ml.Data.LoadFromImageFolder(images.Folder);
        var options = Options(epochs: 1);
        options.HoldoutFraction = 0;           // every image is a training image, so the statistics cover them all
        var model = ml.MulticlassClassification.Trainers.ConvNetImageClassifier(options).Fit(loaded.Data);

        var pixels = ml.Transforms.LoadImages("I", "", "ImagePath").Append(ml.Transforms.ResizeImages("I", model.ImageWidth, model.ImageHeight, resizing: model.Resizing))
            .Append(ml.Transforms.ExtractPixels("Raw", "I")).Fit(loaded.Data).Transform(loaded.Data).GetColumn<float[]>("Raw").Select(p => p.ToArray()).ToArray();
        int plane = model.ImageWidth * model.ImageHeight;
        for (int c = 0; c < 3; c++)
        {
            var values = pixels.SelectMany(p => p.Skip(c * plane).Take(plane)).Select(v => (double)v).ToArray();
            double mean = values.Average(), std = Math.Sqrt(values.Select(v => (v - mean) * (v - mean)).Average());
            Assert.Equal(mean, model.ChannelMean[c], 1e-3 * mean);
            Assert.Equal(std, model.ChannelStd[c], 1e-3 * std);
        }
        Assert.NotEqual(model.ChannelMean[0], model.ChannelMean[2]);   // tinted images: the channels differ
    }

    [Fact]
    public void Appended_to_a_chain_it_reports_its_columns_and_fits()
    {
        using var images = TestImages.Create(perClass: 4, gray: true, withBadFiles: false);
        var ml = new MLContext(seed: 1);
        var loaded = ml.Data.LoadFromImageFolder(images.Folder);
        var options = Options(epochs: 2);
        options.HoldoutFraction = 0;
        int epochs = 0;
        options.Trainer.OnEpoch = _ => epochs++;      // the trainer's own options reach the ConvNet
        // EstimatorChain.Fit asks every step's GetOutputSchema first; a later step reads the classifier's PredictedClass.
        var chain = ml.Transforms.CopyColumns("File", "ImagePath")
            .Append(ml.MulticlassClassification.Trainers.ConvNetImageClassifier(options))
            .Append(ml.Transforms.CopyColumns("Answer", ImageClassifierEstimator.PredictedClassColumnName));
        var scored = chain.Fit(loaded.Data).Transform(loaded.Data);
        Assert.Equal(images.Good.Count, scored.GetColumn<string>("Answer").Count(a => a is "horizontal" or "vertical"));
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 2), scored.Schema["Score"].Type);
        Assert.Equal(2, epochs);
    }

    [Fact]
    public void Options_and_columns_are_checked_by_name()
    {
        var ml = new MLContext();
        Assert.Contains("ImageWidth", Assert.ThrowsAny<ArgumentException>(() => ml.MulticlassClassification.Trainers.ConvNetImageClassifier(new ImageClassifierOptions { ImageWidth = -1 })).Message);
        Assert.Contains("HoldoutFraction", Assert.ThrowsAny<ArgumentException>(() => ml.MulticlassClassification.Trainers.ConvNetImageClassifier(new ImageClassifierOptions { HoldoutFraction = 1 })).Message);
        var noFacts = ml.Data.LoadFromEnumerable(new[] { new { ImagePath = "a.png", Label = "a" } });
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.MulticlassClassification.Trainers.ConvNetImageClassifier(new ImageClassifierOptions { ImageWidth = 8, ImageHeight = 8 }).Fit(noFacts));
        Assert.Contains("ColorMode", e.Message);
        var noPath = ml.Data.LoadFromEnumerable(new[] { new { File = "a.png", Label = "a" } });
        Assert.Contains("'ImagePath'", Assert.ThrowsAny<ArgumentException>(() => ml.MulticlassClassification.Trainers.ConvNetImageClassifier().Fit(noPath)).Message);
    }
}
