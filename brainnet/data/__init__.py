"""brainnet.data"""
