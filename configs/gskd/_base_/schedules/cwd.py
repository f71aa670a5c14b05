# The optimizers of the authors' CWD + GSKD trainer
# (code/CIRKD/train_cwd_gskd.py in MaryAhn/GSKD, as CIRKD's own train_kd.py
# for CWD; file and line of each value in configs/gskd/README.md,
# "Fidelity"): SGD, lr 0.02, momentum 0.9, weight decay 1e-4 for the student
# and its connectors, poly decay (power 0.9) to 0; the discriminator has
# its own Adam, lr 4e-4, betas (0.9, 0.99), at a constant rate.
protocol_optim_wrapper = dict(
    _delete_=True,
    constructor='mmrazor.DiscriminatorOptimWrapperConstructor',
    architecture=dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
        clip_grad=None),
    discriminator=dict(
        type='OptimWrapper',
        optimizer=dict(type='Adam', lr=4e-4, betas=(0.9, 0.99)),
        clip_grad=None))
protocol_poly = dict(
    type='PolyLR', power=0.9, eta_min=0.0, begin=0, by_epoch=False)
# Distributed training runs both steps (MMEngine's default wrapper updates
# one optimizer).
model_wrapper_cfg = dict(
    type='mmrazor.AdversarialDistillDataParallel',
    broadcast_buffers=False,
    find_unused_parameters=False)
