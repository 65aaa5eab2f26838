"""Small helpers every stage shares: words, files, processes, batches, the garbage collector.

Imports nothing from the rest of the package (the bottom layer, beside
``errors`` and ``settings``); one of each helper lives here.
"""
