# Channel-wise distillation on features (50) and logits (3): the baseline of
# cwd_gskd, with the authors' weights. MMRazor's ChannelWiseDivergence,
# computed in float32 under mixed precision.
_base_ = ['../distill_pieces.py']
distiller = dict(
    type='ConfigurableDistiller',
    student_recorders=_base_.student_recorders,
    teacher_recorders=_base_.teacher_recorders,
    distill_losses=dict(
        loss_cwd_feat=dict(
            type='Float32ChannelWiseDivergence',
            tau=1.0,
            loss_weight=50.0,
            resize_teacher=True),
        loss_cwd_logits=dict(
            type='Float32ChannelWiseDivergence',
            tau=1.0,
            loss_weight=3.0,
            resize_teacher=True)),
    loss_forward_mappings=dict(
        loss_cwd_feat=_base_.cwd_feat_forward_mapping,
        loss_cwd_logits=_base_.cwd_logits_forward_mapping))
