"""Streaming model selection for linear VAEs by BIC (Appendix A, Fig. 3a; Corollary 1, eq. 20).

One linear VAE (eq. 18/19) per candidate latent count H trains on a stream of data, one Adam step per
batch of `batch_size` rows, with the sampled ELBO (eq. 2, `samples` reparameterized samples per row). For
every batch two BICs are recorded (eq. 27), both at the parameters the batch is evaluated at (just before
its Adam step):

  BIC = -2 * n * F + P * log(n),   P = H * D + 1   (elements of W plus the noise variance, Appendix A)

- entropy BIC: F from Corollary 1 (eq. 20), 0.5 * sum_h log tau_h^2 - (D/2) log(2 pi e sigma^2): the variance
  parameters alone, no data, no sampling;
- sampled BIC: F the sampled ELBO of that batch, the training objective's own value (the paper's "online ELBO
  estimate"), noisy through both the batch and the samples.

n is the number of rows of the batch the BIC is recorded for (10 in the paper's Appendix A, whose code
evaluates the three-entropies bound with N the batch size); a short last batch uses its own row count.

The candidates train as one stacked model: their parameters are padded to the largest H and masked, and
one Adam optimizer steps them all. Adam acts element-wise and the masked entries get zero gradients, so
this is the same computation as one LinearVAE and one Adam per candidate (the tests check this step for
step), but one set of tensor operations per batch instead of one per candidate.

`stacked` holds the stacked candidates and their formulas, `stream` the training on a stream, `summary` the
verdicts per segment.
"""

from entropy_elbo.select.stacked import (
    bic_table,
    eps_moments,
    initial_models,
    linear_entropy_elbo,
    n_params,
    stack_models,
    stacked_elbo_and_grad,
    unstack_into,
)
from entropy_elbo.select.stream import (
    PAPER_BATCH_SIZE,
    PAPER_LR,
    PAPER_SAMPLES,
    StreamSelection,
    adam,
    rebatch,
    select_stream,
)
from entropy_elbo.select.summary import (
    DEFAULT_TAIL,
    DEFAULT_WINDOW,
    STATIONARY_TOLERANCE,
    MethodSummary,
    Segment,
    SegmentSummary,
    check_latents,
    phase_segments,
    phases_segments,
    summarize,
    window_segments,
)

__all__ = [
    "DEFAULT_TAIL",
    "DEFAULT_WINDOW",
    "PAPER_BATCH_SIZE",
    "PAPER_LR",
    "PAPER_SAMPLES",
    "STATIONARY_TOLERANCE",
    "MethodSummary",
    "Segment",
    "SegmentSummary",
    "StreamSelection",
    "adam",
    "bic_table",
    "eps_moments",
    "initial_models",
    "linear_entropy_elbo",
    "n_params",
    "check_latents",
    "phase_segments",
    "phases_segments",
    "rebatch",
    "select_stream",
    "stack_models",
    "stacked_elbo_and_grad",
    "summarize",
    "unstack_into",
    "window_segments",
]
