"""brainnet.plotting"""
