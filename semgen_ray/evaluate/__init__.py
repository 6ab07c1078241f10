"""Target-task evaluation (docs/method.md §6): the metrics and the statistics of the ten-trial protocol.

Modules:
    :mod:`semgen_ray.evaluate.metrics`: AUC (NCC), Dice and foreground IoU, the reference's
        background-inclusive threshold-averaged IoU (NCS/LCS/BMS, docs/method.md §6.2) and the soft Dice loss;
        numpy only.
    :mod:`semgen_ray.evaluate.statistics`: two-arm comparisons over trials (Student and Welch t-tests,
        Mann-Whitney U, Cohen's d, confidence intervals, the paper's significance stars) and Holm's
        adjustment; numpy and scipy.stats.

Importing this package loads nothing heavy (no torch, no Ray); import the submodules directly.
"""
