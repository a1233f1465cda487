using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

// Tensor descriptors: shared by every cuDNN op family.
internal static unsafe partial class CuDnn
{
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnCreateTensorDescriptor(out nint descriptor);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnDestroyTensorDescriptor(nint descriptor);
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnSetTensorNdDescriptor(nint descriptor, int dataType, int rank, int* dims, int* strides);
}
