# The optimizer of the authors' DIST and DIST + GSKD trainers
# (code/DIST_KD/segmentation/train_kd.py and train_gskd.py in MaryAhn/GSKD;
# file and line of each value in configs/gskd/README.md, "Fidelity"):
# SGD, lr 0.02, momentum 0.9, weight decay 5e-4, one rate for all
# parameters (projector included); poly decay, power 0.9, to a floor of
# 1e-4 (their adjust_lr). GSKD alone follows it too.
protocol_optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=5e-4),
    clip_grad=None)
protocol_poly = dict(
    type='PolyLR', power=0.9, eta_min=1e-4, begin=0, by_epoch=False)
