"""Distillation: base + residual -> a compact, base-free student (DAgger, ONNX fp32 / int8, onboard runtime).

Modules: ``student`` (the torch network), ``dagger`` (teacher, rollouts, training), ``export`` (ONNX,
int8, safetensors, parity), ``runtime`` (numpy + onnxruntime only: what runs on the robot),
``evaluate`` (paired episodes), ``scoring`` (the student scorecard), ``build`` (``env distill``).

This package's ``__init__`` imports nothing, so ``import cadenza.distill.runtime`` never pulls torch.
"""
