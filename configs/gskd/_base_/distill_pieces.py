# Recorders and loss inputs shared by every GSKD-mm distiller.
#
# Features are the input of the decode head's classifier `conv_seg`, which
# every MMSeg decode head has (ASPPHead's and PSPHead's `bottleneck`,
# SegformerHead's `fusion_conv`, ... after the head's dropout), so any MMSeg
# model can be student or teacher. Its width is the head's `channels`. The
# teacher runs in eval mode (EvalTeacherDistill), where dropout is the
# identity: its features are exactly its last layer's output. The student's
# are taken after its dropout in training, as the GSKD authors' DeepLabV3
# returns them (its head's features come after its Dropout(0.1)).
# Logits are `conv_seg`'s output, and the labels are the second input of the
# student's decode loss, i.e. exactly the (N, H, W) ground truth, ignore
# index included, that the student trains on.
#
# The losses set `resize_teacher=True`: when the networks work at different
# strides (SegFormer heads at 4, dilated CNNs at 8), teacher features and
# logits are resized bilinearly to the student's height x width; maps of
# the same size are used as they are.
custom_imports = dict(imports=['gskd_mm'], allow_failed_imports=False)
# Every recipe sets `default_hooks = _base_.resume_hooks`: a resumed run gets
# the random states of every rank back, so it ends at the weights of the run
# it interrupted (gskd_mm.engine.ExactResumeHook), and checkpoints are written
# whole or not at all, and saved when a signal stops training
# (AtomicCheckpointHook; docs/en/advanced_guides/exact_resume.md). MMEngine
# merges `default_hooks` key by key, so a config's own `custom_hooks` or
# `default_hooks` keep them. (They cannot be set here: `default_hooks` comes
# with the student's base, and a key may come from one base only.)
resume_hooks = dict(
    exact_resume=dict(type='ExactResumeHook'),
    checkpoint=dict(type='AtomicCheckpointHook'))
# Nothing of the recipes' own: `[..., *_base_.custom_hooks]` adds nothing.
custom_hooks = []

student_recorders = dict(
    feat=dict(type='ModuleInputs', source='decode_head.conv_seg'),
    logits=dict(type='ModuleOutputs', source='decode_head.conv_seg'),
    gt=dict(type='ModuleInputs', source='decode_head.loss_decode'))
teacher_recorders = dict(
    feat=dict(type='ModuleInputs', source='decode_head.conv_seg'),
    logits=dict(type='ModuleOutputs', source='decode_head.conv_seg'))

# Student features go through a connector named `gskd_projector` (GSKD) or
# `cwd_projector` (CWD on features); recipes define them with the widths of
# the bases they inherit (the student's `decode_head.channels`, the teacher
# base's `teacher_channels`).
gskd_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat', data_idx=0,
                 connector='gskd_projector'),
    preds_T=dict(from_student=False, recorder='feat', data_idx=0),
    logits_T=dict(from_student=False, recorder='logits'),
    gt_labels=dict(from_student=True, recorder='gt', data_idx=1))
logits_forward_mapping = dict(
    logits_S=dict(from_student=True, recorder='logits'),
    logits_T=dict(from_student=False, recorder='logits'))
cwd_logits_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='logits'),
    preds_T=dict(from_student=False, recorder='logits'))
cwd_feat_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat', data_idx=0,
                 connector='cwd_projector'),
    preds_T=dict(from_student=False, recorder='feat', data_idx=0))
# CIRKD: the mini-batch pixel-to-pixel term compares similarity maps within
# each network, so the student's own features go in (no projector, as in
# the authors' code); the memory terms contrast student pixels with teacher
# keys, through one projector `cirkd_projector` that both terms train.
cirkd_minibatch_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat', data_idx=0),
    preds_T=dict(from_student=False, recorder='feat', data_idx=0))
cirkd_memory_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat', data_idx=0,
                 connector='cirkd_projector'),
    preds_T=dict(from_student=False, recorder='feat', data_idx=0),
    gt_labels=dict(from_student=True, recorder='gt', data_idx=1))
