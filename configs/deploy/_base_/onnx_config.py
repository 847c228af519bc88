# mmdeploy 1.x IR settings shared by every deploy config here (mmdeploy's config schema: onnx_config).
# optimize=False: mmdeploy's TorchScript graph optimizer is a compiled extension that the PyPI wheel does not ship.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels'],
    input_shape=None,
    optimize=False)
