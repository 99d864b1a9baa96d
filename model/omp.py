"""OpenMP threads that sleep while they wait. Import this module before `import torch` in every entry point.

OpenMP threads that spin while they wait steal the cores from the DALI and decoder threads on a busy machine
(measured: 5x slower CPU training on 2 shared cores); sleeping costs nothing on a GPU run. The setting must be
in the environment before torch starts its thread pool, which is why it is an import side effect: the
entry points (model/train.py, model/evaluate.py, tools/demo.py) import this first. A user's own
``OMP_WAIT_POLICY`` wins.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
