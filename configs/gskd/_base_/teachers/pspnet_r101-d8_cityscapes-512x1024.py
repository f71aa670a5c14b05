# Teacher: MMSeg model-zoo weights of `mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py`
# (the `Weights` of that config in MMSeg's metafile).
teacher = dict(
    cfg_path='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
    pretrained=False)
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x1024_80k_cityscapes/pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'  # noqa: E501
# Width of the features the distillers read (the input of the teacher's
# decode_head.conv_seg, i.e. its decode_head.channels): the projectors'
# out_channels.
teacher_channels = 512
