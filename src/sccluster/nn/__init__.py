"""Neural building blocks (tensors only; never imports anndata)."""

from ._clustering import dec_target, kl_clustering_loss, log_student_t
from ._zinb import ZINBDecoder, zinb_nll

__all__ = ["ZINBDecoder", "dec_target", "kl_clustering_loss", "log_student_t", "zinb_nll"]
