# mmdeploy's ncnn backend converts ONNX with its own mmdeploy_onnx2ncnn tool and custom ops, which come with an
# mmdeploy source build (not with the PyPI wheel). Without that build, use tools/deploy/export_ncnn.py (pnnx).
backend_config = dict(type='ncnn', precision='FP32', use_vulkan=False)
