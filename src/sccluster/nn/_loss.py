"""The value a network's ``loss`` returns: the total to optimise and its named terms."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossOutput:
    """Loss of one mini-batch.

    Attributes
    ----------
    total
        Scalar tensor that is back-propagated (the weighted sum of the terms, with gradients).
    terms
        Named terms as scalar tensors, for the training history (``"zinb"``, ``"kl"``, ...); the
        training loop detaches them. Each term is recorded as the model reports it (weighted or not:
        the module's docstring says which).
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
