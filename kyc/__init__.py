"""Vigil KYC library: face matching, liveness, document OCR/MRZ, document checks and KYC risk.

Pure Python and ONNX/dlib/OpenCV; no Ray. ``kyc.pipeline.KycEngine`` loads models once and
``KycEngine.verify`` (or ``kyc.pipeline.verify``) runs one submission.
"""
