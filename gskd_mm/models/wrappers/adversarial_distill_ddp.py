# Copyright (c) gskd-mm contributors. All rights reserved.
from typing import Dict, Union

from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapperDict
from mmrazor.registry import MODEL_WRAPPERS
from torch import Tensor


@MODEL_WRAPPERS.register_module()
class AdversarialDistillDataParallel(MMDistributedDataParallel):
    """DDP for :class:`AdversarialEvalTeacherDistill`.

    MMEngine's ``MMDistributedDataParallel.train_step`` updates one
    optimizer; this one runs the algorithm's two steps
    (:meth:`AdversarialEvalTeacherDistill.adversarial_train_step`): the
    student step through DDP's forward, so that the gradients of the
    student and its connectors are averaged across processes as usual,
    then the discriminator step, which averages the discriminator's
    gradients itself. The CWD recipes set it as ``model_wrapper_cfg``;
    arguments are those of ``MMDistributedDataParallel``.
    """

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """A student step, then a discriminator step.

        Args:
            data (dict | tuple | list): A batch from the dataloader.
            optim_wrapper (OptimWrapperDict): ``architecture`` and
                ``discriminator``.

        Returns:
            dict[str, Tensor]: The logged losses.
        """
        return self.module.adversarial_train_step(self, data, optim_wrapper)
