# GSKD alone, with the weight of the authors' DIST + GSKD recipe.
_base_ = ['../distill_pieces.py']
distiller = dict(
    type='ConfigurableDistiller',
    student_recorders=_base_.student_recorders,
    teacher_recorders=_base_.teacher_recorders,
    distill_losses=dict(
        loss_gskd=dict(
            type='GSKDLoss',
            num_samples=8,
            group_size=-1,
            tau=1.0,
            loss_weight=10.0,
            resize_teacher=True)),
    loss_forward_mappings=dict(loss_gskd=_base_.gskd_forward_mapping))
