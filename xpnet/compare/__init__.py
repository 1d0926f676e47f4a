r"""Run one model on two configurations and compare what they compute.

``compare(model=None, a="cpu:float32", b="auto", steps=100, ...)`` answers "does the GPU
(or float32) compute the same thing as the CPU (or float64)?".  A configuration is
``"device:dtype"`` (``"cpu:float32"``, ``"cuda:float32"``, ``"cuda:1:float64"``, ``"cpu"``
means float32), an xpnet :class:`~xpnet.backend.Device`, or a ``(device, dtype)`` pair.
``b="auto"`` is ``"cuda:float32"`` when a GPU can be used and ``"cpu:float64"`` otherwise, so
the tool is useful everywhere: CPU against GPU, or float32 against a float64 reference.
``"cuda"`` without a usable GPU falls back to the CPU with one ``RuntimeWarning``; the
result says which device actually ran (``result.b["device"]``).

How the two runs are made comparable
------------------------------------
* One model: LeNet-5 (:func:`xpnet.models.lenet5` with ``seed``) by default, a saved model
  file (read with :func:`xpnet.load`), or a :class:`~xpnet.Sequential`.  Its parameters are
  copied to the host once; each run rebuilds the layers from their configs and casts those
  host arrays to its dtype (float32 -> float64 is exact), then moves them to its device.
  So both runs start from bit-identical weights.  The source model is not modified.
* One batch order: a host generator seeded with ``seed`` shuffles the training images
  (a fresh permutation for every pass over them); both runs see the same batches.
  Dropout masks are drawn on the host from the model seed, so they agree too.
* Plain SGD (no momentum, no weight decay) with learning rate ``lr`` on the mean
  cross-entropy loss, so the model must output class scores (N, K).  Data: the first
  ``train_images`` training and ``test_images`` test images of the built-in MNIST subset
  (or of ``data``).

Ties
----
ReLU and max pooling have kinks: where two window values (or a value and 0) agree to
within rounding, the two runs can legitimately route a gradient to different elements
(e.g. 1.00268642 and 1.00268654 in float64 are one value in float32, and the first of
equal values wins).  On MNIST, float32 against float64, this happens in about one step in
ten, and each such *tie-break* changes a few weights by ~1e-5; after it the free-running
trajectories drift apart (over ten seeds, 4 of 10 runs of 100 steps ended with loss gaps
of 1e-2..3e-1, the other 6 stayed below 2e-6).
A tie-break is seen as an element that is exactly zero in one run only, in a layer output
(ReLU-like layers) or a layer's input gradient (max/min pooling routes to one element).
Therefore:

* the per-layer check uses the first of up to 8 training batches on which the runs break
  no tie differently (the skipped ones are named in ``result.notes``);
* training runs a and b in lockstep, and after a step with a tie-break, run a takes b's
  weights again (cast to its dtype) when ``resync`` is True (the default; ``xpnet compare
  --no-resync`` turns it off).  The steps are listed in ``training["tie_break_steps"]``.
  Between them the runs train independently, and a step's loss is computed before its
  update, so drift that builds up between two re-synchronisations (a wrong update rule,
  say) still shows in the loss curves.

What is compared
----------------
1. *Per layer, one batch* (the first tie-free candidate batch, training mode): every
   layer's output, the gradient with respect to its input (for the first layer too) and
   the gradient of every parameter, after one forward and backward pass.
2. *Training*: ``steps`` SGD steps; the loss and the accuracy of each training batch (from
   the forward pass before its update) give two loss curves and two accuracy curves;
   afterwards the largest difference of every parameter (reported, not judged; since the
   last re-synchronisation when there was one).
3. *Predictions*: after training, the share of held-out images whose predicted class
   (argmax) is the same in both runs, each run's accuracy and the largest logit difference
   (reported, not judged).

Tolerances (docs/reliability.md §B; ``b`` is the reference)
-----------------------------------------------------------
For arrays a and b of one tensor, with ``s = max(max|a|, max|b|)``, an element passes when
``|a - b| <= atol + rtol * |b|``:

=================  ========  ===========================
quantity           rtol      atol
=================  ========  ===========================
forward outputs    1e-4      1e-5 * max(1, s)
gradients          1e-3      1e-4 * s_layer
=================  ========  ===========================

Gradients of a mean loss are often 1e-3 in size or smaller, so a floor of 1 would let any
difference through; their atol scales with the layer's own gradients instead.  For a
parameter gradient ``s_layer`` is the largest value of any parameter gradient of that layer
(a conv bias followed by batch norm has an analytically zero gradient: its float32 rounding
noise of ~1e-6 is measured against the weight gradient, not against itself); for an input
gradient it is the largest value of that gradient and of the gradient the layer received
(dL/d output).  Loss curves pass when
``max_t |loss_a[t] - loss_b[t]| / max(1, |loss_b[t]|) <= 1e-4`` over all ``steps`` steps
(absolute for losses below 1, relative above).  Output shapes must agree and every layer
output must have its run's dtype.  NaN or infinity count as an infinite difference unless
both runs hold the same value at that place.

Reported per tensor: ``max_abs = max |a - b|``; ``max_rel = max |a - b| / max(|b|, atol/rtol)``
(relative to b, but never to less than the noise floor atol/rtol, so near-zero entries do
not dominate); ``ratio = max |a - b| / (atol + rtol |b|)``, the worst element's share of
its allowance: the tensor passes when ``ratio <= 1``.

``result.passed`` is True when the forward, gradient, loss-curve and dtype checks pass;
``result.failures`` lists each failing tensor (first the layer where a forward difference
starts) and ``xpnet compare`` exits 1 then.  :func:`format_table` prints the report,
``result.to_json()`` writes it, :func:`plot_losses` draws the two loss curves.
"""

from .configs import DTYPES as DTYPES
from .configs import Config, parse_config, resolve_config
from .configs import ConfigSpec as ConfigSpec
from .inputs import _template as _template
from .measure import Tolerances, difference
from .pipeline import compare
from .report import Comparison, format_table, plot_losses
from .runs import CHECK_CANDIDATES as CHECK_CANDIDATES
from .runs import _tie_breaks as _tie_breaks

__all__ = ["Comparison", "Config", "Tolerances", "compare", "difference", "format_table", "parse_config",
           "plot_losses", "resolve_config"]
