"""brainnet.backbones"""
