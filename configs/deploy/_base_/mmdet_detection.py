# mmdeploy 1.x codebase settings for MMDetection detectors (RetinaNet-ShuffleNetV2 and friends).
# post_processing mirrors the RetinaNet test_cfg: score_thr 0.05, NMS IoU 0.5, 100 boxes per image.
_base_ = ['./onnx_config.py']
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    # imported by mmdeploy before the export: the rewriters of the lite detectors' head (LiteGFLHead.predict_by_feat)
    # and of PP-PicoDet's head (PicoHead.predict_by_feat)
    module=['shufflenet_det.deploy.mmdeploy_lite', 'shufflenet_det.deploy.mmdeploy_pico'],
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,  # only for YOLOv3-style heads
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1))
