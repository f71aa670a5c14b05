# CIRKD's memory sized for the demo, for both of its CIRKD configs: 7
# classes, the teacher's 32 channels, 1000 pixels and 100 regions per class
# (filled within a few dozen steps of 8 images), 512 and 64 keys contrasted
# per step over all classes.
cirkd_memory_demo = dict(
    loss_memory_p2p=dict(
        num_classes=7, channels=32, memory_size=1000, contrast_size=512),
    loss_memory_p2r=dict(
        num_classes=7, channels=32, memory_size=100, contrast_size=64))
