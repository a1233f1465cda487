namespace MLNet.ConvNet.Backends;

/// <summary>Finds out whether the CUDA backend can run here, and creates it when it can.</summary>
internal static class CudaProbe
{
    public static bool TryCreate(BackendOptions options, out IBackend? backend, out string whyNot)
    {
        backend = null;
        whyNot = "this build has no CUDA backend yet";
        return false;
    }
}
