"""`keras.layers.Dense` whose bias add runs inside the matmul on the PyTorch backend."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class FusedBiasDense(keras.layers.Dense):
    """`keras.layers.Dense`, with the bias added by the matmul kernel itself on the PyTorch backend.

    Keras' Dense computes `matmul(x, kernel)` and then `add(.., bias)`: on PyTorch that is two
    kernels and one more pass over the whole output (ViT-B/16: 49 separate adds per forward,
    ~9% of its CPU inference time). `torch.nn.functional.linear` runs both as one `addmm`, as
    timm's layers do. Everything else is Dense's own: the weights (`kernel` of shape
    (input_dim, units), `bias`), their names, saving and loading, LoRA and quantization.

    The fused call is taken only on the PyTorch backend, in float32, with a bias, without LoRA
    and unquantized (quantized layers never reach `call`: Keras routes them to
    `quantized_call`); every other case is `keras.layers.Dense.call`. Float32 results equal
    Dense's to rounding (~1e-6); other dtypes are computed exactly as Dense computes them.

    Example:
    >>> import numpy as np
    >>> fused = FusedBiasDense(4, name="fc")
    >>> x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    >>> y = fused(x)
    >>> plain = keras.layers.Dense(4)
    >>> plain.build(x.shape)
    >>> plain.set_weights(fused.get_weights())
    >>> bool(np.allclose(keras.ops.convert_to_numpy(y), keras.ops.convert_to_numpy(plain(x)), atol=1e-6))
    True
    >>> [v.path for v in fused.weights]
    ['fc/kernel', 'fc/bias']
    """

    def call(self, inputs, training=None):
        if keras.backend.backend() == "torch" and self.bias is not None and not self.lora_enabled:
            # The one exception to "only keras.ops inside call()": keras.ops has no fused
            # matmul-plus-bias, and the separate add costs a full pass over the output on PyTorch.
            import torch

            x = ops.convert_to_tensor(inputs)
            kernel = ops.convert_to_tensor(self.kernel)  # autocast to the compute dtype, as in Dense
            bias = ops.convert_to_tensor(self.bias)
            if x.dtype == kernel.dtype == bias.dtype == torch.float32:
                outputs = torch.nn.functional.linear(x, kernel.T, bias)  # x @ kernel + bias, one addmm
                return outputs if self.activation is None else self.activation(outputs)
        return super().call(inputs, training=training)
