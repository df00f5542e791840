"""Real data that ships inside this package: training never downloads anything.

`garfield.data.mnist` is the main set (5,000 real MNIST digits, `mnist5k.npz`); the torch helpers
live in `garfield.data.torchdata` so that importing the arrays never imports torch.
"""
