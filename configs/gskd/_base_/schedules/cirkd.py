# The optimizer of the authors' CIRKD + GSKD trainer
# (code/CIRKD/train_cirkd_gskd.py in MaryAhn/GSKD, as CIRKD's own
# train_cirkd.py; file and line of each value in configs/gskd/README.md,
# "Fidelity"): SGD, lr 0.02, momentum 0.9, weight decay 1e-4, one rate for
# all parameters (projectors included); poly decay, power 0.9, to 0.
protocol_optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=None)
protocol_poly = dict(
    type='PolyLR', power=0.9, eta_min=0.0, begin=0, by_epoch=False)
