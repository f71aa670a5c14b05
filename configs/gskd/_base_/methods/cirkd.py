# CIRKD (Cross-Image Relational KD) with CIRKD's own weights: per-pixel
# logits KD 1.0 (T 1), mini-batch pixel-to-pixel 1.0 (T 0.1), memory
# pixel-to-pixel and pixel-to-region 0.1 each (T 0.1, KD T 1; 16 pixels per
# class and image enqueued; 4096 and 1024 keys contrasted over all
# classes). The memory here is Cityscapes' at the authors' sizes (19
# classes, 20000 pixels and 2000 regions per class, 512-channel teachers);
# every recipe states its dataset's `num_classes` and `memory_size`.
_base_ = ['../distill_pieces.py']
distiller = dict(
    type='ConfigurableDistiller',
    student_recorders=_base_.student_recorders,
    teacher_recorders=_base_.teacher_recorders,
    distill_losses=dict(
        loss_kd=dict(type='PixelWiseKDLoss', tau=1.0, loss_weight=1.0),
        loss_minibatch_p2p=dict(
            type='CIRKDMiniBatchPixelLoss', tau=0.1, loss_weight=1.0),
        loss_memory_p2p=dict(
            type='CIRKDMemoryPixelLoss',
            num_classes=19,
            channels=512,
            memory_size=20000,
            contrast_size=4096,
            update_size=16,
            tau=0.1,
            kd_tau=1.0,
            loss_weight=0.1),
        loss_memory_p2r=dict(
            type='CIRKDMemoryRegionLoss',
            num_classes=19,
            channels=512,
            memory_size=2000,
            contrast_size=1024,
            tau=0.1,
            kd_tau=1.0,
            loss_weight=0.1)),
    loss_forward_mappings=dict(
        loss_kd=_base_.logits_forward_mapping,
        loss_minibatch_p2p=_base_.cirkd_minibatch_forward_mapping,
        loss_memory_p2p=_base_.cirkd_memory_forward_mapping,
        loss_memory_p2r=_base_.cirkd_memory_forward_mapping))
