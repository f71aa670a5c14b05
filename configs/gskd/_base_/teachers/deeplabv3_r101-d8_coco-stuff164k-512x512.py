# Teacher: MMSeg model-zoo weights of `mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-80k_coco-stuff164k-512x512.py`
# (the `Weights` of that config in MMSeg's metafile).
teacher = dict(
    cfg_path='mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-80k_coco-stuff164k-512x512.py',
    pretrained=False)
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x512_4x4_80k_coco-stuff164k/deeplabv3_r101-d8_512x512_4x4_80k_coco-stuff164k_20210709_201252-13600dc2.pth'  # noqa: E501
# Width of the features the distillers read (the input of the teacher's
# decode_head.conv_seg, i.e. its decode_head.channels): the projectors'
# out_channels.
teacher_channels = 512
