"""Re-ID networks, their backbones and a registry.

>>> import attnreid
>>> model = attnreid.build_model("resnet50", num_classes=751, pretrained="none")
"""

from attnreid.models import (
    baseline,  # noqa: F401  (registers the baseline names)
    ccan,  # noqa: F401  (registers the CCAN names)
    duatm,  # noqa: F401  (registers duatm, duatm_video)
    osnet,  # noqa: F401  (registers osnet_x1_0 .. osnet_x0_25)
    sa_resnet,  # noqa: F401  (registers the SA-ResNet names)
    sona_net,  # noqa: F401  (registers the SONA-Net names)
)
from attnreid.models.registry import (
    ReIDModel,
    build_model,
    list_models,
    model_options,
    register_model,
)

__all__ = ["ReIDModel", "build_model", "list_models", "model_options", "register_model"]
