"""`residual_gradient_boundary`: the identity, with a gradient that XLA:CPU materializes once.

Why it exists (measured on JAX 0.10, XLA:CPU, ViT-B/16 at 224, batch 8, one training step):
the gradient of a residual stream is a chain of adds, one per block (`g_l = g_{l+1} + the
gradient through block l+1's branches`). XLA:CPU fuses that chain of cheap adds into every
consumer instead of computing it once, so the fusion that needs block 0's gradient recomputes
the layer-norm gradients of all later blocks, block 1's all but one, and so on: work that
grows with the square of the depth. It was 36% of the step (2.7 of 7.5 s), equally in
keras-hub's ViT. `jax.lax.optimization_barrier` does not stop it (XLA:CPU removes barriers
before fusion); a conditional does, since XLA never fuses across one. So the block output
passes through an identity whose backward sends the gradient through a `lax.cond` whose
two branches both return it unchanged.

Applied on the JAX backend when JAX runs on the CPU only; elsewhere, and on other backends,
this returns its input untouched. Values and gradients are the same either way (the
backward's two branches are the identity), up to float summation order.
"""

import functools

import keras


@functools.lru_cache(maxsize=None)
def _jax_boundary():
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def boundary(x):
        return x

    def forward(x):
        return x, None

    def backward(_, gradient):
        # The predicate must come from the data: XLA folds a constant one and the conditional with it.
        # It is True unless the first entry is inf or NaN; both branches give the gradient unchanged.
        first_entry_finite = jnp.isfinite(jnp.ravel(gradient)[0])
        return (jax.lax.cond(first_entry_finite, lambda g: g, lambda g: g + jnp.zeros((), g.dtype), gradient),)

    boundary.defvjp(forward, backward)
    return boundary


def _applies():
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def residual_gradient_boundary(x):
    """Returns `x`; on JAX on the CPU, its gradient is computed once rather than in every consumer.

    Put it on a residual block's output (every family's blocks do): see the module docstring
    for what XLA:CPU does without it. A no-op on TensorFlow, PyTorch and JAX on GPU/TPU.

    Example:
    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 2, 3)
    >>> bool(np.array_equal(keras.ops.convert_to_numpy(residual_gradient_boundary(x)), x))
    True
    """
    if not _applies():
        return x
    if not x.shape or any(d == 0 for d in x.shape if d is not None):
        return x  # nothing to index for the predicate; an empty gradient has no chain to fuse
    return _jax_boundary()(x)
