# CIRKD + GSKD: the authors' recipe (train_cirkd_gskd.py and its script):
# CIRKD's terms with the memory terms at 0.01 each; GSKD 5.0, N = 8,
# S = -1, T = 4 (the trainer's default, which the script does not set).
_base_ = ['./cirkd.py']
distiller = dict(
    distill_losses=dict(
        loss_memory_p2p=dict(loss_weight=0.01),
        loss_memory_p2r=dict(loss_weight=0.01),
        loss_gskd=dict(
            type='GSKDLoss',
            num_samples=8,
            group_size=-1,
            tau=4.0,
            loss_weight=5.0)),
    loss_forward_mappings=dict(loss_gskd=_base_.gskd_forward_mapping))
