# Recorders and loss inputs shared by every GSKD-mm distiller.
#
# Features are the decode head's last layer before the classifier
# (`bottleneck` of ASPPHead/PSPHead), logits are `conv_seg`'s output, and the
# labels are the second input of the student's decode loss, i.e. exactly the
# (N, H, W) ground truth, ignore index included, that the student trains on.
custom_imports = dict(imports=['gskd_mm'], allow_failed_imports=False)

student_recorders = dict(
    feat=dict(type='ModuleOutputs', source='decode_head.bottleneck'),
    logits=dict(type='ModuleOutputs', source='decode_head.conv_seg'),
    gt=dict(type='ModuleInputs', source='decode_head.loss_decode'))
teacher_recorders = dict(
    feat=dict(type='ModuleOutputs', source='decode_head.bottleneck'),
    logits=dict(type='ModuleOutputs', source='decode_head.conv_seg'))

# Student features go through a connector named `gskd_projector` (GSKD) or
# `cwd_projector` (CWD on features); recipes define them for their widths.
gskd_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat',
                 connector='gskd_projector'),
    preds_T=dict(from_student=False, recorder='feat'),
    logits_T=dict(from_student=False, recorder='logits'),
    gt_labels=dict(from_student=True, recorder='gt', data_idx=1))
logits_forward_mapping = dict(
    logits_S=dict(from_student=True, recorder='logits'),
    logits_T=dict(from_student=False, recorder='logits'))
cwd_logits_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='logits'),
    preds_T=dict(from_student=False, recorder='logits'))
cwd_feat_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat',
                 connector='cwd_projector'),
    preds_T=dict(from_student=False, recorder='feat'))
# CIRKD: the mini-batch pixel-to-pixel term compares similarity maps within
# each network, so the student's own features go in (no projector, as in
# the authors' code); the memory terms contrast student pixels with teacher
# keys, through one projector `cirkd_projector` that both terms train.
cirkd_minibatch_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat'),
    preds_T=dict(from_student=False, recorder='feat'))
cirkd_memory_forward_mapping = dict(
    preds_S=dict(from_student=True, recorder='feat',
                 connector='cirkd_projector'),
    preds_T=dict(from_student=False, recorder='feat'),
    gt_labels=dict(from_student=True, recorder='gt', data_idx=1))
