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

# ResNet students (with an auxiliary head) also distil their auxiliary
# logits from the teacher's, as the authors' DIST trainers do: 0.4 x their
# DIST weight (1.0), on the logits of the auxiliary heads
# (`kd_loss += 0.4 * lambda_kd * criterion_kd(s_outputs[1], t_outputs[1])`
# in train_kd.py and train_gskd.py). ./dist_aux.py and ./dist_gskd_aux.py
# add these to the distiller and set `teacher_auxiliary`, which makes
# EvalTeacherDistill run the teacher's auxiliary head (eval mode, no_grad).
auxiliary_logits_forward_mapping = dict(
    logits_S=dict(from_student=True, recorder='aux_logits'),
    logits_T=dict(from_student=False, recorder='aux_logits'))
auxiliary_distiller = dict(
    student_recorders=dict(
        aux_logits=dict(
            type='ModuleOutputs', source='auxiliary_head.conv_seg')),
    teacher_recorders=dict(
        aux_logits=dict(
            type='ModuleOutputs', source='auxiliary_head.conv_seg')),
    distill_losses=dict(
        loss_dist_aux=dict(
            type='PixelWiseDISTLoss',
            tau=1.0,
            loss_weight=0.4,
            resize_teacher=True)),
    loss_forward_mappings=dict(
        loss_dist_aux=auxiliary_logits_forward_mapping))
