# DIST on the logits, every pixel an instance (the baseline of dist_gskd).
_base_ = ['../distill_pieces.py']
distiller = dict(
    type='ConfigurableDistiller',
    student_recorders=_base_.student_recorders,
    teacher_recorders=_base_.teacher_recorders,
    distill_losses=dict(
        loss_dist=dict(type='PixelWiseDISTLoss',
            tau=1.0,
            loss_weight=1.0,
            resize_teacher=True)),
    loss_forward_mappings=dict(loss_dist=_base_.logits_forward_mapping))
