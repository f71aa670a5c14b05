# CWD + GSKD: the authors' recipe: cwd.py (CWD features 50, logits 3, T 4;
# KD 1.0; adversarial 0.001 / 0.1) plus GSKD 2.0, N = 8, S = -1, T = 1.
_base_ = ['./cwd.py']
distiller = dict(
    distill_losses=dict(
        loss_gskd=dict(
            type='GSKDLoss',
            num_samples=8,
            group_size=-1,
            tau=1.0,
            loss_weight=2.0,
            resize_teacher=True)),
    loss_forward_mappings=dict(loss_gskd=_base_.gskd_forward_mapping))
