"""``python -m shufflenet_det.runtime {ncnn,onnx} MODEL ...`` - the board runners (:mod:`.cli`); with the folder
copied alone to a board as ``runtime/``: ``python -m runtime {ncnn,onnx} MODEL ...``."""
import sys

from .cli import main
from .errors import run_main

if __name__ == '__main__':
    sys.exit(run_main(main))
