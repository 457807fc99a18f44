"""brainnet.analysis"""
