# Teacher: MMSeg model-zoo weights of `mmseg::pspnet/pspnet_r101-d8_4xb4-80k_ade20k-512x512.py`
# (the `Weights` of that config in MMSeg's metafile).
teacher = dict(
    cfg_path='mmseg::pspnet/pspnet_r101-d8_4xb4-80k_ade20k-512x512.py',
    pretrained=False)
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x512_80k_ade20k/pspnet_r101-d8_512x512_80k_ade20k_20200614_031423-b6e782f0.pth'  # noqa: E501
# Width of the features the distillers read (the input of the teacher's
# decode_head.conv_seg, i.e. its decode_head.channels): the projectors'
# out_channels.
teacher_channels = 512
