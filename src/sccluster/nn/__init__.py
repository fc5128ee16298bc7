"""Neural building blocks (tensors only; never imports anndata)."""

from ._attention import AnchorAttention, AnchorBlock
from ._bgformer_module import BGFormerNet, vector_quantize
from ._clustering import TargetSnapshot, dec_target, kl_clustering_loss, log_student_t
from ._early_stopping import EarlyStopping
from ._loss import LossOutput
from ._siamese_module import SiameseNet, edge_loss, feature_correlation_loss, sample_correlation_loss
from ._zinb import ZINBDecoder, zinb_nll

__all__ = [
    "AnchorAttention",
    "AnchorBlock",
    "BGFormerNet",
    "EarlyStopping",
    "LossOutput",
    "SiameseNet",
    "TargetSnapshot",
    "ZINBDecoder",
    "dec_target",
    "edge_loss",
    "feature_correlation_loss",
    "kl_clustering_loss",
    "log_student_t",
    "sample_correlation_loss",
    "vector_quantize",
    "zinb_nll",
]
