namespace MLNet.ConvNet.Backends;

// Optimizer update kernels: one in-place, element-wise update per parameter tensor. The optimizers in
// src/Core/Optimizers hold the hyper-parameters and state tensors and call these once per parameter and step.
public partial interface IBackend
{
    /// <summary>
    /// One SGD step, in place on <paramref name="param"/> (and <paramref name="velocity"/> when momentum &gt; 0):
    /// <code>
    /// g = grad + weightDecay * param
    /// velocity = momentum * velocity + g                    (skipped when momentum = 0; velocity may then be null)
    /// d = nesterov ? g + momentum * velocity : velocity      (d = g when momentum = 0)
    /// param = param - learningRate * d
    /// </code>
    /// (PyTorch's SGD without dampening.) All tensors have the same length.
    /// </summary>
    void SgdStep(Tensor param, Tensor grad, Tensor? velocity, float learningRate, float momentum, bool nesterov, float weightDecay);

    /// <summary>
    /// One Adam (or AdamW) step, in place on <paramref name="param"/>, <paramref name="m"/> and <paramref name="v"/>;
    /// <paramref name="step"/> is the 1-based step number used for bias correction:
    /// <code>
    /// g = grad + weightDecay * param                      (Adam: L2 penalty in the gradient; decoupled = false)
    /// param = param - learningRate * weightDecay * param   (AdamW: decoupled decay; decoupled = true)
    /// m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
    /// param = param - learningRate * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + epsilon)
    /// </code>
    /// (Kingma and Ba 2015; Loshchilov and Hutter 2019.) All tensors have the same length.
    /// </summary>
    void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, float learningRate, float beta1, float beta2, float epsilon,
        float weightDecay, bool decoupled, long step);
}
