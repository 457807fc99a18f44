"""brainnet.training"""
