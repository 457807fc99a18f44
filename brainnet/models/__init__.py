"""brainnet.models"""
