# CWD, the baseline of cwd_gskd, as the authors train it (CIRKD's CWD
# recipe, which their CWD + GSKD trainer extends): channel-wise divergence
# with temperature 4 on features (50, student through a 1x1 conv, no BN)
# and on logits (3), normalised by N x C and times T^2 (MMRazor's formula,
# which equals theirs: tests/test_authors_losses.py), in float32 under
# mixed precision; per-pixel logits KD (1.0, T 1); and adversarial
# distillation of the logits (hinge; student 0.001, discriminator 0.1):
# recipes use AdversarialEvalTeacherDistill with the pieces below.
_base_ = ['../distill_pieces.py']
distiller = dict(
    type='ConfigurableDistiller',
    student_recorders=_base_.student_recorders,
    teacher_recorders=_base_.teacher_recorders,
    distill_losses=dict(
        loss_kd=dict(
            type='PixelWiseKDLoss',
            tau=1.0,
            loss_weight=1.0,
            resize_teacher=True),
        loss_cwd_feat=dict(
            type='Float32ChannelWiseDivergence',
            tau=4.0,
            loss_weight=50.0,
            resize_teacher=True),
        loss_cwd_logits=dict(
            type='Float32ChannelWiseDivergence',
            tau=4.0,
            loss_weight=3.0,
            resize_teacher=True)),
    loss_forward_mappings=dict(
        loss_kd=_base_.logits_forward_mapping,
        loss_cwd_feat=_base_.cwd_feat_forward_mapping,
        loss_cwd_logits=_base_.cwd_logits_forward_mapping))
# The discriminator of the logits (its in_channels: the student's classes)
# and the hinge losses of student and discriminator.
discriminator = dict(type='SAGANDiscriminator', norm_cfg=dict(type='SyncBN'))
generator_loss = dict(type='HingeGeneratorLoss', loss_weight=0.001)
discriminator_loss = dict(type='HingeDiscriminatorLoss', loss_weight=0.1)
