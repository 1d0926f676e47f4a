"""Pure array ops: ``*_forward`` returns ``(y, cache)``, ``*_backward`` returns gradients.

Every op takes its array module from its inputs, so it runs on numpy and cupy alike.
"""

from .activation import (
    gelu_backward,
    gelu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax_backward,
    log_softmax_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .adaptive_pool import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward
from .batchnorm import batch_norm2d_backward, batch_norm2d_forward, update_running_stats
from .conv import DEFAULT_WORKSPACE_BYTES, conv2d_backward, conv2d_forward
from .conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from .dropout import dropout_backward, dropout_forward, dropout_mask
from .dropout2d import dropout2d_backward, dropout2d_forward
from .im2col import col2im, im2col, output_size
from .linear import linear_backward, linear_forward
from .loss import binary_cross_entropy_with_logits, mse, softmax_cross_entropy
from .norm import group_norm_backward, group_norm_forward, layer_norm_backward, layer_norm_forward
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    min_pool2d_backward,
    min_pool2d_forward,
)
from .reshape import flatten_backward, flatten_forward, upsample2d_backward, upsample2d_forward

__all__ = [
    "DEFAULT_WORKSPACE_BYTES",
    "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_forward",
    "avg_pool2d_backward", "avg_pool2d_forward", "batch_norm2d_backward", "batch_norm2d_forward",
    "binary_cross_entropy_with_logits", "col2im", "conv2d_backward", "conv2d_forward",
    "conv_transpose2d_backward", "conv_transpose2d_forward", "dropout2d_backward", "dropout2d_forward",
    "dropout_backward", "dropout_forward", "dropout_mask", "flatten_backward", "flatten_forward",
    "gelu_backward", "gelu_forward", "global_avg_pool2d_backward", "global_avg_pool2d_forward",
    "group_norm_backward", "group_norm_forward", "im2col", "layer_norm_backward", "layer_norm_forward",
    "leaky_relu_backward", "leaky_relu_forward", "linear_backward", "linear_forward",
    "log_softmax_backward", "log_softmax_forward", "max_pool2d_backward", "max_pool2d_forward",
    "min_pool2d_backward", "min_pool2d_forward", "mse", "output_size", "relu_backward",
    "relu_forward", "sigmoid_backward", "sigmoid_forward", "softmax_backward", "softmax_forward",
    "softmax_cross_entropy", "tanh_backward", "tanh_forward", "update_running_stats",
    "upsample2d_backward", "upsample2d_forward",
]
